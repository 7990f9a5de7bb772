//! ACPI: finding the CPUs in the MADT (Multiple APIC Description Table), with the `acpi` crate.
//!
//! The bootloader hands over the physical address of the RSDP (the root of the ACPI tables),
//! under BIOS (RSDT) and UEFI (XSDT) alike. The MADT lists one entry per processor with its
//! local APIC id; an entry counts as a CPU if it is enabled or can be brought online.

use core::pin::Pin;
use core::ptr::NonNull;

use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use x86_64::PhysAddr;

use crate::arch::MAX_CPUS;

/// Gives the `acpi` crate access to physical memory through the bootloader's window.
#[derive(Clone, Copy)]
struct WindowHandler;

impl AcpiHandler for WindowHandler {
    unsafe fn map_physical_region<T>(&self, physical_address: usize, size: usize) -> PhysicalMapping<Self, T> {
        let virt = crate::arch::phys::phys_to_virt(PhysAddr::new(physical_address as u64));
        // SAFETY: the window maps all physical memory, so `virt` is valid for `size` bytes.
        unsafe {
            PhysicalMapping::new(
                physical_address,
                NonNull::new(virt.as_mut_ptr()).expect("window address is not null"),
                size,
                size,
                *self,
            )
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// The local APIC ids of the CPUs, bootstrap processor first.
pub struct CpuList {
    pub apic_ids: [u32; MAX_CPUS],
    pub count: usize,
    /// CPUs listed beyond `MAX_CPUS` (not used).
    pub ignored: usize,
}

/// Reads the MADT at the RSDP `rsdp_addr`; `bsp_apic_id` is put first.
pub fn cpus(rsdp_addr: u64, bsp_apic_id: u32) -> Result<CpuList, acpi::AcpiError> {
    // SAFETY: the bootloader's RSDP address points at a valid RSDP.
    let tables = unsafe { AcpiTables::from_rsdp(WindowHandler, rsdp_addr as usize)? };
    let madt = tables.find_table::<Madt>()?;
    // SAFETY: the mapping stays in place (the window is never unmapped).
    let madt: Pin<&Madt> = unsafe { Pin::new_unchecked(madt.virtual_start().as_ref()) };
    let mut list = CpuList { apic_ids: [0; MAX_CPUS], count: 1, ignored: 0 };
    list.apic_ids[0] = bsp_apic_id;
    for entry in madt.entries() {
        let (apic_id, flags) = match entry {
            MadtEntry::LocalApic(e) => (u32::from(e.apic_id), e.flags),
            MadtEntry::LocalX2Apic(e) => (e.x2apic_id, e.flags),
            _ => continue,
        };
        let usable = flags & 0b11 != 0; // enabled, or online capable
        if !usable || apic_id == bsp_apic_id {
            continue;
        }
        if list.count < MAX_CPUS {
            list.apic_ids[list.count] = apic_id;
            list.count += 1;
        } else {
            list.ignored += 1;
        }
    }
    Ok(list)
}

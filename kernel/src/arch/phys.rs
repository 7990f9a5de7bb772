//! The direct map: the bootloader maps all of physical memory at one offset in the kernel's
//! address space (chosen at boot and passed in the boot information), so physical address `p`
//! is readable at virtual `offset + p`. Page tables, the frame bitmap and device registers
//! (the local APIC, the ACPI tables) are all reached this way.
//!
//! Invariant: the offset is set once, by `mm::paging::init`, before anything reads through it.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::{PhysAddr, VirtAddr};

/// Virtual address of physical address 0.
static OFFSET: AtomicU64 = AtomicU64::new(0);

/// Records where the bootloader put the direct map.
pub fn set_offset(offset: u64) {
    OFFSET.store(offset, Ordering::Relaxed);
}

/// The virtual address at which physical address `phys` is visible.
pub fn phys_to_virt(phys: PhysAddr) -> VirtAddr {
    VirtAddr::new(OFFSET.load(Ordering::Relaxed) + phys.as_u64())
}

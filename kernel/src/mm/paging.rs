//! Page tables: mapping and unmapping kernel pages.
//!
//! The bootloader maps all physical memory at `phys_offset`, so any page table (a physical
//! frame) can be read and written at `phys_offset + frame address`. Walking the four levels
//! (PML4 -> PDPT -> PD -> PT) with the `x86_64` crate's `PageTable` types is all it takes.
//!
//! Locking: `TABLES` serialises changes to the table *structure* (creating intermediate
//! tables) and ordinary map/unmap. One exception keeps stack growth free of locks: the
//! intermediate tables of a stack slot are all created when the slot is first carved out
//! (`ensure_tables`) and never freed, so the growth path can walk to a leaf entry of its own
//! stack and write it without the lock (`leaf_entry`); no one else writes those entries.
//!
//! Kernel mappings are not marked global, so reloading CR3 flushes them (used by `mm::tlb`).

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::registers::control::Cr3;
use x86_64::structures::paging::page_table::PageTableEntry;
use x86_64::structures::paging::{PageTable, PageTableFlags, PhysFrame};
use x86_64::{PhysAddr, VirtAddr};

use crate::mm::frame::{self, OutOfFrames};
use crate::mm::layout::PAGE_SIZE;
use crate::sync::spin::{Rank, SpinLock};

/// Virtual address of physical address 0.
static PHYS_OFFSET: AtomicU64 = AtomicU64::new(0);

/// Frames holding page tables that this module allocated (statistics and test baselines).
static TABLE_FRAMES: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Frames holding page tables allocated by the kernel (not the bootloader's).
pub fn table_frames() -> usize {
    TABLE_FRAMES.load(Ordering::Relaxed)
}

/// Serialises structural page-table changes (see the module comment).
static TABLES: SpinLock<()> = SpinLock::new(Rank::PageTables, ());

/// Flags of kernel data pages.
pub const KERNEL_DATA: PageTableFlags =
    PageTableFlags::PRESENT.union(PageTableFlags::WRITABLE).union(PageTableFlags::NO_EXECUTE);

pub fn init(phys_offset: u64) {
    PHYS_OFFSET.store(phys_offset, Ordering::Relaxed);
    // SAFETY: EFER.NXE lets us use NO_EXECUTE; the bootloader already uses it for the kernel
    // image, but enabling it again is harmless.
    unsafe {
        x86_64::registers::model_specific::Efer::update(|efer| {
            efer.insert(x86_64::registers::model_specific::EferFlags::NO_EXECUTE_ENABLE)
        });
    }
}

/// The virtual address at which physical address `phys` is visible.
pub fn phys_to_virt(phys: PhysAddr) -> VirtAddr {
    VirtAddr::new(PHYS_OFFSET.load(Ordering::Relaxed) + phys.as_u64())
}

/// The table stored in `frame`.
///
/// # Safety
/// `frame` must hold a page table that the caller may access as the locking rules allow.
unsafe fn table_at(frame: PhysFrame) -> &'static mut PageTable {
    // SAFETY: by the contract, and the physical window maps every frame.
    unsafe { &mut *phys_to_virt(frame.start_address()).as_mut_ptr::<PageTable>() }
}

/// The leaf (level 1) entry for `addr`, creating missing intermediate tables if `create`.
///
/// # Safety
/// The caller holds `TABLES` if `create`, or knows the tables exist and never go away.
unsafe fn walk(addr: VirtAddr, create: bool) -> Result<Option<&'static mut PageTableEntry>, OutOfFrames> {
    let (l4_frame, _) = Cr3::read();
    // SAFETY: CR3 holds the active PML4.
    let mut table = unsafe { table_at(l4_frame) };
    let indexes = [addr.p4_index(), addr.p3_index(), addr.p2_index()];
    for index in indexes {
        let entry = &mut table[index];
        if entry.is_unused() {
            if !create {
                return Ok(None);
            }
            let new = frame::alloc_zeroed()?;
            TABLE_FRAMES.fetch_add(1, Ordering::Relaxed);
            entry.set_frame(new, PageTableFlags::PRESENT | PageTableFlags::WRITABLE);
        }
        assert!(
            !entry.flags().contains(PageTableFlags::HUGE_PAGE),
            "huge page found while walking to {addr:?}: kernel regions use 4 KiB pages"
        );
        // SAFETY: a present non-huge entry points at the next-level table.
        table = unsafe { table_at(entry.frame().expect("present entry")) };
    }
    Ok(Some(&mut table[addr.p1_index()]))
}

/// Maps the page at `addr` to `frame` with `flags`. The page must not be mapped.
pub fn map(addr: VirtAddr, frame: PhysFrame, flags: PageTableFlags) -> Result<(), OutOfFrames> {
    let _tables = TABLES.lock();
    // SAFETY: we hold TABLES.
    let entry = unsafe { walk(addr, true)? }.expect("walk with create returns an entry");
    assert!(entry.is_unused(), "map: {addr:?} is already mapped");
    entry.set_frame(frame, flags);
    Ok(())
}

/// Unmaps the page at `addr` on this CPU and returns its frame (the caller frees it, after
/// flushing other CPUs' TLBs if they may cache the page: `mm::tlb`).
pub fn unmap(addr: VirtAddr) -> Option<PhysFrame> {
    let _tables = TABLES.lock();
    // SAFETY: we hold TABLES.
    let entry = unsafe { walk(addr, false).ok()? }?;
    let frame = entry.frame().ok()?;
    entry.set_unused();
    x86_64::instructions::tlb::flush(addr);
    Some(frame)
}

/// Creates every intermediate table needed to map `start..end`, without mapping pages.
pub fn ensure_tables(start: usize, end: usize) -> Result<(), OutOfFrames> {
    let _tables = TABLES.lock();
    // One walk per 2 MiB (one leaf table covers 2 MiB).
    let mut addr = start & !((512 * PAGE_SIZE) - 1);
    while addr < end {
        // SAFETY: we hold TABLES.
        unsafe { walk(VirtAddr::new(addr as u64), true)? };
        addr += 512 * PAGE_SIZE;
    }
    Ok(())
}

/// The leaf entry of `addr`, whose intermediate tables were created by `ensure_tables`.
///
/// # Safety
/// The tables for `addr` exist and are never freed, and the caller is the only writer of this
/// entry (the owner of the stack slot it belongs to).
pub unsafe fn leaf_entry(addr: usize) -> &'static mut PageTableEntry {
    // SAFETY: the tables exist (contract), so the walk neither creates nor fails.
    unsafe { walk(VirtAddr::new(addr as u64), false) }
        .ok()
        .flatten()
        .expect("leaf_entry: tables were not created by ensure_tables")
}

/// Is the page at `addr` mapped?
pub fn is_mapped(addr: usize) -> bool {
    let _tables = TABLES.lock();
    // SAFETY: we hold TABLES.
    matches!(unsafe { walk(VirtAddr::new(addr as u64), false) }, Ok(Some(e)) if !e.is_unused())
}

/// Unhooks the page tables of the 2 MiB chunk at `chunk` that map nothing any more, walking up:
/// its leaf table, then the directories left empty. Returns their frames (at most three, in a
/// fixed array: nothing may allocate while the page-table lock is held, because growing the heap
/// takes that lock under the heap's), which the caller frees only after flushing every CPU's TLB
/// (a CPU may still cache the unhooked tables).
///
/// The caller guarantees no one maps pages or walks lock-free in the chunk meanwhile.
pub fn detach_empty_tables(chunk: usize) -> [Option<PhysFrame>; 3] {
    let _tables = TABLES.lock();
    let mut detached = [None; 3];
    let (l4_frame, _) = Cr3::read();
    // SAFETY: CR3 holds the active PML4; we hold TABLES.
    let l4 = unsafe { table_at(l4_frame) };
    let va = VirtAddr::new(chunk as u64);
    let l4e = &mut l4[va.p4_index()];
    if l4e.is_unused() {
        return detached;
    }
    // SAFETY: present entries point at tables; we hold TABLES.
    let l3 = unsafe { table_at(l4e.frame().expect("present")) };
    let l3e = &mut l3[va.p3_index()];
    if !l3e.is_unused() {
        // SAFETY: as above.
        let l2 = unsafe { table_at(l3e.frame().expect("present")) };
        let l2e = &mut l2[va.p2_index()];
        if !l2e.is_unused() {
            let l1_frame = l2e.frame().expect("present");
            // SAFETY: as above.
            if unsafe { table_at(l1_frame) }.iter().all(|e| e.is_unused()) {
                l2e.set_unused();
                detached[0] = Some(l1_frame);
            }
        }
        if l2.iter().all(|e| e.is_unused()) {
            detached[1] = Some(l3e.frame().expect("present"));
            l3e.set_unused();
        }
    }
    if l3.iter().all(|e| e.is_unused()) {
        detached[2] = Some(l4e.frame().expect("present"));
        l4e.set_unused();
    }
    TABLE_FRAMES.fetch_sub(detached.iter().flatten().count(), Ordering::Relaxed);
    detached
}

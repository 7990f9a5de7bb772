//! Page tables: mapping and unmapping kernel pages.
//!
//! The bootloader maps all physical memory at `phys_offset`, so any page table (a physical
//! frame) can be read and written at `phys_offset + frame address`. Walking the four levels
//! (PML4 -> PDPT -> PD -> PT) is all it takes; the `x86_64` crate's `PageTableEntry` and
//! `PageTableFlags` decode the entries.
//!
//! Locking: `TABLES` serialises changes to the table *structure* (creating and freeing
//! intermediate tables) and ordinary map/unmap. One exception keeps stack growth free of locks:
//! the intermediate tables of a stack slot are all created when the slot is first carved out
//! (`ensure_tables`) and freed only when no slot of their chunk is in use, so the growth path can
//! walk to a leaf entry of its own stack and write it without the lock (`leaf_entry`); no one else
//! writes those entries.
//!
//! Because of that exception several CPUs may walk and write the same table at once, so a table
//! is never handed out as `&mut PageTable` (two of those to one table would be undefined
//! behaviour even if they touched different entries): each entry is an `AtomicU64`, seen through
//! `Entry`, and reads and writes of different entries never conflict.
//!
//! Kernel mappings are not marked global, so reloading CR3 flushes them (used by `mm::tlb`).

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use x86_64::registers::control::Cr3;
use x86_64::structures::paging::page_table::PageTableEntry;
use x86_64::structures::paging::{PageTableFlags, PhysFrame};
use x86_64::{PhysAddr, VirtAddr};

use crate::mm::frame::{self, OutOfFrames};
use crate::mm::layout::{HEAP_LIMIT, HEAP_START, PAGE_SIZE};
use crate::records::spin::{Rank, SpinLock};

/// Frames holding page tables that this module allocated: all of them, and those that map the
/// heap (which never shrinks, so its tables stay; test baselines leave them out, and count the
/// others).
static TABLE_FRAMES: AtomicUsize = AtomicUsize::new(0);
static HEAP_TABLE_FRAMES: AtomicUsize = AtomicUsize::new(0);

/// Frames holding page tables allocated by the kernel (not the bootloader's).
pub fn table_frames() -> usize {
    TABLE_FRAMES.load(Ordering::Relaxed)
}

/// Of those, the frames holding tables of the heap's region.
pub fn heap_table_frames() -> usize {
    HEAP_TABLE_FRAMES.load(Ordering::Relaxed)
}

/// Serialises structural page-table changes (see the module comment).
static TABLES: SpinLock<()> = SpinLock::new(Rank::PageTables, ());

/// The present bit of a page-table entry.
pub const PRESENT: PageTableFlags = PageTableFlags::PRESENT;

/// Flags of kernel data pages.
pub const KERNEL_DATA: PageTableFlags =
    PageTableFlags::PRESENT.union(PageTableFlags::WRITABLE).union(PageTableFlags::NO_EXECUTE);

/// Flags of the intermediate tables the kernel creates.
const TABLE_FLAGS: PageTableFlags = PageTableFlags::PRESENT.union(PageTableFlags::WRITABLE);

pub fn init(phys_offset: u64) {
    crate::arch::phys::set_offset(phys_offset);
    // SAFETY: EFER.NXE lets us use NO_EXECUTE; the bootloader already uses it for the kernel
    // image, but enabling it again is harmless.
    unsafe {
        x86_64::registers::model_specific::Efer::update(|efer| {
            efer.insert(x86_64::registers::model_specific::EferFlags::NO_EXECUTE_ENABLE)
        });
    }
}

/// One entry of a page table, read and written atomically.
#[derive(Clone, Copy)]
pub struct Entry(&'static AtomicU64);

impl Entry {
    /// The entry's value, decoded by the `x86_64` crate.
    pub fn get(self) -> PageTableEntry {
        let raw = self.0.load(Ordering::Acquire);
        // SAFETY: `PageTableEntry` is a `repr(transparent)` wrapper of the entry's `u64`.
        unsafe { core::mem::transmute::<u64, PageTableEntry>(raw) }
    }

    fn set(self, entry: &PageTableEntry) {
        // SAFETY: as in `get`.
        let raw = unsafe { core::mem::transmute::<PageTableEntry, u64>(entry.clone()) };
        self.0.store(raw, Ordering::Release);
    }

    pub fn is_unused(self) -> bool {
        self.get().is_unused()
    }

    pub fn flags(self) -> PageTableFlags {
        self.get().flags()
    }

    /// The frame it points to (present or not: a stack page being unmapped keeps its address).
    pub fn addr(self) -> PhysAddr {
        self.get().addr()
    }

    /// The frame of a present entry.
    pub fn frame(self) -> Option<PhysFrame> {
        self.get().frame().ok()
    }

    pub fn set_frame(self, frame: PhysFrame, flags: PageTableFlags) {
        let mut entry = PageTableEntry::new();
        entry.set_frame(frame, flags);
        self.set(&entry);
    }

    pub fn set_flags(self, flags: PageTableFlags) {
        let mut entry = self.get();
        entry.set_flags(flags);
        self.set(&entry);
    }

    pub fn set_unused(self) {
        self.0.store(0, Ordering::Release);
    }
}

/// The 512 entries of the table stored in `frame`.
///
/// # Safety
/// `frame` must hold a page table (which stays one while the entries are used).
unsafe fn entries_at(frame: PhysFrame) -> &'static [AtomicU64; 512] {
    // SAFETY: by the contract; the physical window maps every frame, and atomics may be shared.
    unsafe { &*crate::arch::phys::phys_to_virt(frame.start_address()).as_ptr::<[AtomicU64; 512]>() }
}

/// The entry of `table` at `index`.
fn entry_of(table: &'static [AtomicU64; 512], index: impl Into<usize>) -> Entry {
    Entry(&table[index.into()])
}

/// The table an intermediate entry points to.
///
/// # Safety
/// The entry is present and points at a table that stays one while it is used.
unsafe fn next_table(entry: Entry) -> &'static [AtomicU64; 512] {
    let e = entry.get();
    assert!(
        !e.flags().contains(PageTableFlags::HUGE_PAGE),
        "huge page found in a walk: kernel regions use 4 KiB pages"
    );
    // SAFETY: by the contract.
    unsafe { entries_at(e.frame().expect("a present intermediate entry")) }
}

/// The top-level table (PML4) of the active address space.
fn pml4() -> &'static [AtomicU64; 512] {
    let (l4_frame, _) = Cr3::read();
    // SAFETY: CR3 holds the active PML4, which is never freed.
    unsafe { entries_at(l4_frame) }
}

/// The leaf (level 1) entry for `addr`, creating missing intermediate tables if `create`.
///
/// # Safety
/// The caller holds `TABLES` if `create`, or knows the tables exist and stay.
unsafe fn walk(addr: VirtAddr, create: bool) -> Result<Option<Entry>, OutOfFrames> {
    let mut table = pml4();
    for index in [usize::from(addr.p4_index()), usize::from(addr.p3_index()), usize::from(addr.p2_index())] {
        let entry = entry_of(table, index);
        if entry.is_unused() {
            if !create {
                return Ok(None);
            }
            let new = frame::alloc_zeroed()?;
            TABLE_FRAMES.fetch_add(1, Ordering::Relaxed);
            if (HEAP_START..HEAP_START + HEAP_LIMIT).contains(&(addr.as_u64() as usize)) {
                HEAP_TABLE_FRAMES.fetch_add(1, Ordering::Relaxed);
            }
            entry.set_frame(new, TABLE_FLAGS);
        }
        // SAFETY: present now; by the caller's contract it stays.
        table = unsafe { next_table(entry) };
    }
    Ok(Some(entry_of(table, addr.p1_index())))
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
    let frame = entry.frame()?;
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
/// The tables for `addr` exist and stay while the entry is used, and the caller is the only writer
/// of this entry (the owner of the stack slot it belongs to).
pub unsafe fn leaf_entry(addr: usize) -> Entry {
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

/// Is every entry of `table` unused?
fn all_unused(table: &'static [AtomicU64; 512]) -> bool {
    table.iter().all(|e| e.load(Ordering::Acquire) == 0)
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
    let va = VirtAddr::new(chunk as u64);
    let l4e = entry_of(pml4(), va.p4_index());
    if l4e.is_unused() {
        return detached;
    }
    // SAFETY: present entries point at tables; we hold TABLES, and nobody walks this chunk.
    let l3 = unsafe { next_table(l4e) };
    let l3e = entry_of(l3, va.p3_index());
    if !l3e.is_unused() {
        // SAFETY: as above.
        let l2 = unsafe { next_table(l3e) };
        let l2e = entry_of(l2, va.p2_index());
        if !l2e.is_unused() {
            // SAFETY: as above.
            if all_unused(unsafe { next_table(l2e) }) {
                detached[0] = l2e.frame();
                l2e.set_unused();
            }
        }
        if all_unused(l2) {
            detached[1] = l3e.frame();
            l3e.set_unused();
        }
    }
    if all_unused(l3) {
        detached[2] = l4e.frame();
        l4e.set_unused();
    }
    TABLE_FRAMES.fetch_sub(detached.iter().flatten().count(), Ordering::Relaxed);
    detached
}

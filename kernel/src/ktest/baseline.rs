//! Resource baselines for tests: "frames and heap are back where they were".
//!
//! Caches hold memory on purpose (the stack pool, recycled thread records, timer heaps), so a
//! baseline is taken and checked after releasing them (`release_caches`). A test takes a
//! `Baseline` before its work and calls `assert_restored` after joining its threads.
//!
//! Frames are counted without the heap's own pages and the page tables that map them (the heap
//! grows but never unmaps; its use is compared separately, byte for byte), and without the
//! measuring thread's stack (which may grow while it measures). Every other page table is
//! counted: those of idle stack chunks are freed by `release_caches`, so a page-table leak shows.

use crate::mm::layout::PAGE_SIZE;
use crate::mm::{frame, heap};

/// Frames in use and heap bytes in use at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Baseline {
    pub frames_used: usize,
    pub heap_used: usize,
}

/// Gives back memory that caches hold: pooled stacks, recycled thread records, and spare
/// capacity of internal tables.
pub fn release_caches() {
    crate::sched::thread::release_cached();
    crate::mm::stack::release_cached();
    crate::sched::timer::release_cached();
}

impl Baseline {
    /// Releases caches and records the current use.
    pub fn take() -> Baseline {
        release_caches();
        let heap = heap::stats();
        let own_stack = crate::records::percpu::current().stack.get().map_or(0, |s| s.mapped_size());
        Baseline {
            frames_used: frame::stats().used()
                - (heap.mapped + own_stack) / PAGE_SIZE
                - crate::mm::paging::heap_table_frames(),
            heap_used: heap.used,
        }
    }

    /// Releases caches and asserts that use is back to this baseline.
    pub fn assert_restored(&self) {
        let now = Baseline::take();
        assert_eq!(
            now.frames_used, self.frames_used,
            "frames in use: {} now, {} before",
            now.frames_used, self.frames_used
        );
        assert_eq!(
            now.heap_used, self.heap_used,
            "heap bytes in use: {} now, {} before",
            now.heap_used, self.heap_used
        );
    }
}

/// Bytes of memory in use, for measuring what objects cost: every frame in use except the
/// heap's own pages (counted instead by the heap bytes in use), page tables included.
pub fn memory_in_use() -> usize {
    let heap = heap::stats();
    (frame::stats().used() - heap.mapped / PAGE_SIZE) * PAGE_SIZE + heap.used
}

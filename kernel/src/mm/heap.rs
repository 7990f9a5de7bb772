//! The kernel heap: `linked_list_allocator` as the global allocator, growing on demand.
//!
//! The heap lives at `layout::HEAP_START`. It starts with `INITIAL_SIZE` mapped bytes; when an
//! allocation does not fit, the heap maps more pages at its top (at least `GROW_STEP`, at most
//! up to `heap_max_mib` from the command line) and retries. If that fails (limit reached or no
//! frames), the allocator prints a report -- size, alignment, heap use, limit -- and returns
//! null; Rust's allocation-failure path then panics, which kills the allocating thread alone
//! (or stops the kernel, outside a thread).
//!
//! The heap lock is a `SpinLock`: holding it makes the thread non-preemptible (a preempted
//! holder would leave every other allocating thread spinning). Interrupt handlers never
//! allocate. Lock order: heap before frames (growth allocates frames under the heap lock).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use linked_list_allocator::Heap;
use x86_64::VirtAddr;

use crate::mm::layout::{HEAP_LIMIT, HEAP_START, PAGE_SIZE, page_round_up};
use crate::mm::{frame, paging};
use crate::records::spin::{Rank, SpinLock};

/// Bytes mapped when the heap is created.
const INITIAL_SIZE: usize = 1 << 20;
/// Least number of bytes added by one growth.
const GROW_STEP: usize = 1 << 20;

struct KernelHeap {
    heap: Heap,
    /// Bytes mapped so far (the heap's size).
    mapped: usize,
    /// The most the heap may map.
    max: usize,
    stats: HeapStats,
}

/// Heap statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes in live allocations (as the allocator counts them: rounded up to its minimum).
    pub used: usize,
    /// Most bytes ever in use at once.
    pub peak: usize,
    /// Bytes mapped for the heap.
    pub mapped: usize,
    /// The growth limit.
    pub max: usize,
    /// Allocations and frees so far.
    pub allocs: u64,
    pub frees: u64,
    /// Allocation requests that failed.
    pub failures: u64,
}

static HEAP: SpinLock<Option<KernelHeap>> = SpinLock::new(Rank::Heap, None);

/// Creates the heap with a growth limit of `max` bytes.
pub fn init(max: usize) {
    let max = page_round_up(max.clamp(INITIAL_SIZE, HEAP_LIMIT));
    map_range(HEAP_START, INITIAL_SIZE).expect("no memory for the initial kernel heap");
    let mut heap = Heap::empty();
    // SAFETY: `HEAP_START..+INITIAL_SIZE` was just mapped and is used by nothing else.
    unsafe { heap.init(HEAP_START as *mut u8, INITIAL_SIZE) };
    *HEAP.lock() = Some(KernelHeap {
        heap,
        mapped: INITIAL_SIZE,
        max,
        stats: HeapStats { mapped: INITIAL_SIZE, max, ..HeapStats::default() },
    });
}

/// Maps fresh zeroed frames at `start..start+len`; on failure unmaps what it mapped.
fn map_range(start: usize, len: usize) -> Result<(), frame::OutOfFrames> {
    for offset in (0..len).step_by(PAGE_SIZE) {
        let result = frame::alloc().and_then(|f| {
            paging::map(VirtAddr::new((start + offset) as u64), f, paging::KERNEL_DATA).inspect_err(|_| frame::free(f))
        });
        if let Err(e) = result {
            for undo in (0..offset).step_by(PAGE_SIZE) {
                if let Some(f) = paging::unmap(VirtAddr::new((start + undo) as u64)) {
                    frame::free(f);
                }
            }
            return Err(e);
        }
    }
    Ok(())
}

impl KernelHeap {
    /// Maps at least `needed` more bytes at the top of the heap, within the limit.
    fn grow(&mut self, needed: usize) -> bool {
        let room = self.max - self.mapped;
        let want = page_round_up(needed.max(GROW_STEP).max(self.mapped / 4)).min(room);
        if want < needed || want == 0 {
            return false;
        }
        if map_range(HEAP_START + self.mapped, want).is_err() {
            return false;
        }
        // SAFETY: the pages just mapped follow the heap's top directly.
        unsafe { self.heap.extend(want) };
        self.mapped += want;
        self.stats.mapped = self.mapped;
        true
    }

    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        let ptr = match self.heap.allocate_first_fit(layout) {
            Ok(ptr) => ptr,
            Err(()) => {
                // Room for the block plus its alignment padding and the allocator's header.
                if !self.grow(layout.size() + layout.align() + 64) {
                    self.stats.failures += 1;
                    return None;
                }
                self.heap.allocate_first_fit(layout).ok()?
            }
        };
        self.stats.allocs += 1;
        self.stats.used = self.heap.used();
        self.stats.peak = self.stats.peak.max(self.stats.used);
        Some(ptr)
    }
}

/// Sets the most the heap may map (never below what it maps now), and returns the previous limit:
/// for tests that exhaust the heap without exhausting the machine.
pub fn set_limit(max: usize) -> usize {
    let mut guard = HEAP.lock();
    let heap = guard.as_mut().expect("the heap exists");
    let previous = heap.max;
    heap.max = page_round_up(max).clamp(heap.mapped, HEAP_LIMIT);
    heap.stats.max = heap.max;
    previous
}

/// Current statistics.
pub fn stats() -> HeapStats {
    HEAP.lock().as_ref().map(|h| h.stats).unwrap_or_default()
}

struct GlobalHeap;

#[global_allocator]
static GLOBAL: GlobalHeap = GlobalHeap;

// SAFETY: `alloc` returns blocks of at least `layout.size()` bytes aligned to `layout.align()`
// that do not overlap any live block (linked_list_allocator's guarantee), or null; `dealloc`
// returns a block to the same heap it came from.
unsafe impl GlobalAlloc for GlobalHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        debug_assert_heap_allowed();
        let result = HEAP.lock().as_mut().and_then(|h| h.alloc(layout));
        match result {
            Some(ptr) => ptr.as_ptr(),
            None => {
                report_failure(layout);
                core::ptr::null_mut()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        debug_assert_heap_allowed();
        let mut guard = HEAP.lock();
        let heap = guard.as_mut().expect("dealloc before the heap exists");
        // SAFETY: `ptr` was returned by `alloc` with this `layout` (GlobalAlloc contract).
        unsafe { heap.heap.deallocate(NonNull::new_unchecked(ptr), layout) };
        heap.stats.frees += 1;
        heap.stats.used = heap.heap.used();
    }
}

/// Debug builds: stops the kernel where the heap is used by code that runs on behalf of a thread
/// that may be holding the heap's lock -- an interrupt or exception handler, or a stack growth --
/// which would spin on that lock for ever.
#[inline(always)]
fn debug_assert_heap_allowed() {
    if cfg!(debug_assertions) {
        let g = crate::records::percpu::current();
        assert!(
            matches!(g.kind, crate::records::g::GKind::Thread | crate::records::g::GKind::Scheduler),
            "the heap used in an interrupt or exception handler"
        );
        assert!(!crate::records::percpu::growing_stack_here(), "the heap used while growing a stack");
    }
}

/// Prints the allocation-failure report (the heap lock is released by now).
fn report_failure(layout: Layout) {
    let s = stats();
    crate::println!(
        "heap: out of memory: allocation of {} bytes (align {}) failed; {} bytes in use, {} mapped, limit {} (heap_max_mib), {} frames free",
        layout.size(),
        layout.align(),
        s.used,
        s.mapped,
        s.max,
        frame::stats().free
    );
}

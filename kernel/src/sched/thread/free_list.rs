//! The thread records: every one ever allocated (`ALL`, for listing threads), and those of exited
//! threads, kept for reuse (`FREE`, Go's `gfget`/`gfput`). Records are never freed while listed:
//! only `release_cached` frees them, after taking them out of `ALL` under its lock, which
//! `for_each_thread` holds while it reads them.

use alloc::vec::Vec;
use core::alloc::Layout;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::records::g::{G, GState};
use crate::records::spin::{Rank, SpinLock};

/// Every allocated thread record (Go's `allgs`), for listing threads. Records are recycled through
/// `FREE`; only `release_cached` frees them, after taking them out of this list under its lock,
/// which `for_each_thread` holds while it reads them.
static ALL: SpinLock<Vec<&'static G>> = SpinLock::new(Rank::Threads, Vec::new());
/// Records of exited threads, ready for reuse, linked through `sched_link`.
static FREE: SpinLock<FreeList> = SpinLock::new(Rank::Threads, FreeList { head: core::ptr::null_mut() });
pub(super) static NEXT_ID: AtomicU64 = AtomicU64::new(1);

struct FreeList {
    head: *mut G,
}

// SAFETY: the list only holds records no thread uses; the lock serialises access.
unsafe impl Send for FreeList {}

/// A thread record: recycled, or newly allocated (Go's `gfget`).
#[inline]
pub(super) fn gfget() -> Option<&'static G> {
    {
        let mut free = FREE.lock();
        if !free.head.is_null() {
            // SAFETY: records on the free list are valid and owned by the list.
            let g = unsafe { &*free.head };
            free.head = g.sched_link.replace(core::ptr::null_mut());
            return Some(g);
        }
    }
    let layout = Layout::new::<G>();
    // SAFETY: G has a non-zero size.
    let ptr = unsafe { alloc::alloc::alloc(layout) }.cast::<G>();
    if ptr.is_null() {
        return None;
    }
    // SAFETY: `ptr` is a fresh allocation for a G; we initialize it and never free it.
    let g: &'static G = unsafe {
        ptr.write(G::new_thread());
        &*ptr
    };
    ALL.lock().push(g);
    Some(g)
}

/// Returns a record to the free list (Go's `gfput`).
#[inline]
fn gfput(g: &'static G) {
    debug_assert!(g.exit.drop_result.get().is_none(), "a thread record recycled with its result");
    g.set_state(GState::Idle);
    let mut free = FREE.lock();
    g.sched_link.set(free.head);
    free.head = g as *const G as *mut G;
}

/// Drops one reference to `g`; the last one recycles it.
#[inline(always)]
pub(super) fn release(g: &'static G) {
    if g.exit.refs.fetch_sub(1, Ordering::AcqRel) == 1 {
        gfput(g);
    }
}

/// Calls `f` for every live thread, holding the list's lock (so no record can be freed
/// meanwhile): `f` must not block (it may print and allocate).
pub fn for_each_thread(mut f: impl FnMut(&'static G)) {
    let all = ALL.lock();
    for &g in all.iter() {
        debug_assert!(g.is_live_record(), "for_each_thread: record {:p} was freed while listed", g);
        if !matches!(g.state(), GState::Idle) {
            f(g);
        }
    }
}

/// `for_each_thread` without the list's lock, for a fatal report: the other CPUs are stopped,
/// and one of them may have stopped holding the lock. `f` must not block.
///
/// # Safety
/// Every other CPU is stopped (nothing can free or add a record meanwhile).
pub unsafe fn for_each_thread_stopped(mut f: impl FnMut(&'static G)) {
    // SAFETY: by the contract nobody else touches the list now.
    let all = unsafe { ALL.data_raw() };
    for &g in all.iter() {
        if g.is_live_record() && !matches!(g.state(), GState::Idle) {
            f(g);
        }
    }
}

/// Number of live (not recycled) threads.
pub fn live_threads() -> usize {
    let mut n = 0;
    for_each_thread(|_| n += 1);
    n
}

/// Frees the recycled thread records (memory pressure, and tests comparing heap use with a
/// baseline).
pub fn release_cached() {
    let mut freed: Vec<*mut G> = Vec::new();
    {
        let mut free = FREE.lock();
        while !free.head.is_null() {
            let g = free.head;
            // SAFETY: records on the free list are valid and owned by the list.
            free.head = unsafe { (*g).sched_link.replace(core::ptr::null_mut()) };
            freed.push(g);
        }
    }
    // Sorted, so that unlisting them costs O(n log n), not one scan of the list per record.
    freed.sort_unstable();
    let mut all = ALL.lock();
    all.retain(|g| freed.binary_search(&(*g as *const G as *mut G)).is_err());
    all.shrink_to_fit();
    drop(all);
    for g in freed {
        // SAFETY: the record came from `alloc` in `gfget`, is on no list any more, and no
        // thread uses it.
        unsafe {
            (*g).live.store(0, Ordering::Release);
            core::ptr::drop_in_place(g);
            alloc::alloc::dealloc(g.cast(), Layout::new::<G>());
        }
    }
}

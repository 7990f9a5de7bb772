//! The kernel's lock order, written once (`Rank`), and its check (Go's `lockrank`, in the small).
//!
//! Two spin locks taken in opposite orders by two CPUs deadlock (ABBA); on one CPU, a lock taken
//! again by code that interrupted or called back into its holder spins for ever. So every spin
//! lock has a rank, and a context may take a lock only if every lock it already holds has a
//! lower rank. Equal ranks nest only for `Rank::Object`, in increasing address order (`select!`
//! locks its channels that way).
//!
//! Debug builds check the rule at every acquisition: each context (`G::held_ranks`) counts the
//! ranks it holds, and a violation is a panic naming both locks -- with a lock held, so a fatal
//! report that stops the kernel at the line that broke the rule. Release builds keep the counts
//! but never check them (`rank_acquire` / `rank_release` compile to nothing).
//!
//! Invariant: a context's counts are changed only by that context, except when `park` hands the
//! lock of a parked thread to g0, which releases it and the thread's count on its behalf.

use core::cell::Cell;

use crate::records::g::G;

/// The lock order, outer first. Where each lock lives, and why it sits where it does:
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Rank {
    /// What threads wait on: a channel, the wait queue of a `Mutex`, `WaitGroup` or `Once`, a
    /// thread's exit state, test data. Waiters are readied with it held, so it comes before the
    /// run queues. Only `select!` holds several, in address order.
    Object = 0,
    /// A CPU's timer heap (taken by `sleep` and `sync::after`, and on g0 to fire timers).
    Timers,
    /// The global run queue and the CPUs' inboxes of pinned threads (taken by `ready`).
    RunQueue,
    /// The thread-record lists: the free list and the list of every record.
    Threads,
    /// The stack pool and the stack sizes.
    Stacks,
    /// A region of stack slots: its bookkeeping allocates from the heap, and the page tables of
    /// its idle chunks are detached while it is held.
    SlotRegion,
    /// The kernel heap: growing it maps pages, which takes the page tables, then frames.
    Heap,
    /// The structure of the page tables (creating and freeing intermediate tables).
    PageTables,
    /// The physical frame allocator.
    Frames,
    /// The serial console: anything may print, so it comes last.
    Console,
}

/// Number of ranks.
const RANKS: usize = Rank::Console as usize + 1;

/// Every rank, by number.
const ALL: [Rank; RANKS] = [
    Rank::Object,
    Rank::Timers,
    Rank::RunQueue,
    Rank::Threads,
    Rank::Stacks,
    Rank::SlotRegion,
    Rank::Heap,
    Rank::PageTables,
    Rank::Frames,
    Rank::Console,
];

/// The ranks one context holds, counted per rank.
pub struct HeldRanks {
    counts: [Cell<u8>; RANKS],
    /// Address of the `Object` lock taken last, for the address order of nested ones.
    last_object: Cell<usize>,
}

impl Default for HeldRanks {
    fn default() -> Self {
        Self::new()
    }
}

impl HeldRanks {
    pub const fn new() -> HeldRanks {
        HeldRanks { counts: [const { Cell::new(0) }; RANKS], last_object: Cell::new(0) }
    }

    /// The innermost rank held, if any.
    fn innermost(&self) -> Option<Rank> {
        (0..RANKS).rev().find(|&r| self.counts[r].get() > 0).map(|r| ALL[r])
    }

    /// Records that the context takes lock `addr` of `rank`; panics if that breaks the order.
    fn acquire(&self, rank: Rank, addr: usize) {
        if let Some(held) = self.innermost() {
            let nested_object = held == Rank::Object && rank == Rank::Object && addr > self.last_object.get();
            if held >= rank && !nested_object {
                order_violation(rank, held);
            }
        }
        let count = &self.counts[rank as usize];
        count.set(count.get() + 1);
        if rank == Rank::Object {
            self.last_object.set(addr);
        }
    }

    /// Locks held, of any rank.
    pub fn total(&self) -> u32 {
        self.counts.iter().map(|c| u32::from(c.get())).sum()
    }

    /// Records that the context released a lock of `rank`.
    fn release(&self, rank: Rank) {
        let count = &self.counts[rank as usize];
        assert!(count.get() > 0, "released a {rank:?} lock that was not held");
        count.set(count.get() - 1);
    }
}

#[cold]
#[inline(never)]
fn order_violation(taking: Rank, held: Rank) -> ! {
    panic!("lock order: taking a {taking:?} lock while holding a {held:?} lock (the order is records::lockrank::Rank)")
}

/// Records that `g` takes lock `addr` of `rank`, checking the order (debug builds only).
#[inline(always)]
pub fn rank_acquire(g: &G, rank: Rank, addr: usize) {
    if cfg!(debug_assertions) {
        g.held_ranks.acquire(rank, addr);
    }
}

/// Records that `g` released a lock of `rank` (debug builds only).
#[inline(always)]
pub fn rank_release(g: &G, rank: Rank) {
    if cfg!(debug_assertions) {
        g.held_ranks.release(rank);
    }
}

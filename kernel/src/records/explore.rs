//! The schedule explorer's records: what the prologue hook counts per thread, and what each CPU
//! remembers of the schedule it ran (its digest). The policy that reads them lives in
//! `sched::explore`; these are only the fields, next to `G` and `PerCpu` because the hook's
//! assembly reads two of them.
//!
//! Invariants:
//! - `ThreadExplore::prologues` is written only by the thread itself (the hook, on its own
//!   stack); `next_forced` is written by the thread or by g0 while the thread is switched out.
//!   The hook takes a forced preemption point when `prologues >= next_forced`; `u64::MAX` means
//!   "never" (the normal build, and strategies that do not preempt at prologues).
//! - A thread's `key` is fixed at spawn from its parent's key and the parent's spawn count, so
//!   that it names "the same thread" in two runs whose schedules differ (a thread id does not:
//!   ids follow the global order of spawns).
//! - `CpuExplore` is touched only by its own CPU, on g0 or with interrupts off.

use core::cell::Cell;
use core::sync::atomic::{AtomicU64, Ordering};

/// Per-thread explorer state.
pub struct ThreadExplore {
    /// Prologues this thread has executed (counted by the always-preempt hook).
    pub prologues: AtomicU64,
    /// The prologue ordinal at which the next forced preemption point falls.
    pub next_forced: AtomicU64,
    /// Stable name of the thread across runs (see the module invariants).
    pub key: Cell<u64>,
    /// Threads this one has spawned (the next child's index).
    pub children: Cell<u64>,
    /// PCT priority (higher runs first); 0 outside the PCT strategy.
    pub priority: Cell<u64>,
    /// Forced preemptions this thread took (tests read it).
    pub forced: AtomicU64,
}

impl ThreadExplore {
    pub const fn new() -> ThreadExplore {
        ThreadExplore {
            prologues: AtomicU64::new(0),
            next_forced: AtomicU64::new(u64::MAX),
            key: Cell::new(0),
            children: Cell::new(0),
            priority: Cell::new(0),
            forced: AtomicU64::new(0),
        }
    }

    /// Resets the record for a new thread (records are reused from the free list).
    pub fn reset(&self, key: u64, next_forced: u64, priority: u64) {
        self.prologues.store(0, Ordering::Relaxed);
        self.next_forced.store(next_forced, Ordering::Relaxed);
        self.key.set(key);
        self.children.set(0);
        self.priority.set(priority);
        self.forced.store(0, Ordering::Relaxed);
    }
}

impl Default for ThreadExplore {
    fn default() -> Self {
        ThreadExplore::new()
    }
}

/// Per-CPU explorer state.
pub struct CpuExplore {
    /// The schedule digest of this CPU so far: a hash of its sequence of (thread, stop) events.
    pub digest: Cell<u64>,
    /// Events mixed into `digest`.
    pub events: Cell<u64>,
    /// This CPU's random-number state for the explorer's draws (seeded from `seed=`).
    pub rand: Cell<u64>,
    /// The `sched::explore::configure` epoch `rand` was seeded in (0: not yet).
    pub epoch: Cell<u64>,
    /// `async:N`: TSC value of the next periodic tick, and of the next injection.
    pub next_tick_tsc: Cell<u64>,
    pub next_inject_tsc: Cell<u64>,
}

impl CpuExplore {
    pub const fn new() -> CpuExplore {
        CpuExplore {
            digest: Cell::new(0xcbf2_9ce4_8422_2325),
            events: Cell::new(0),
            rand: Cell::new(0),
            epoch: Cell::new(0),
            next_tick_tsc: Cell::new(0),
            next_inject_tsc: Cell::new(u64::MAX),
        }
    }
}

impl Default for CpuExplore {
    fn default() -> Self {
        CpuExplore::new()
    }
}

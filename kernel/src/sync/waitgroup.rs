//! `WaitGroup` (Go's `sync.WaitGroup`): wait until a counter of outstanding tasks is zero.
//!
//! `add(n)` before starting tasks, `done()` as each finishes, `wait()` parks until zero. The
//! waiters' queue is checked and the count tested under one lock; `done` takes that lock to
//! wake them after the count reached zero, so a wake-up cannot slip between test and park.

use core::sync::atomic::{AtomicI64, Ordering};

use crate::sched::g::WaitReason;
use crate::sched::percpu::current;
use crate::sync::spin::{Rank, SpinLock};
use crate::sync::waitq::{WaitNode, WaitQueue};

pub struct WaitGroup {
    count: AtomicI64,
    waiters: SpinLock<WaitQueue>,
}

impl Default for WaitGroup {
    fn default() -> Self {
        Self::new()
    }
}

impl WaitGroup {
    pub const fn new() -> WaitGroup {
        WaitGroup { count: AtomicI64::new(0), waiters: SpinLock::new(Rank::Object, WaitQueue::new()) }
    }

    /// Adds `n` outstanding tasks (may be negative). Panics if the count goes below zero.
    pub fn add(&self, n: i64) {
        let now = self.count.fetch_add(n, Ordering::AcqRel) + n;
        assert!(now >= 0, "WaitGroup counter went negative");
        if now == 0 {
            let mut waiters = self.waiters.lock();
            while let Some(g) = waiters.pop() {
                crate::sched::ready(g);
            }
        }
    }

    /// One task finished.
    pub fn done(&self) {
        self.add(-1);
    }

    /// Parks until the count is zero.
    pub fn wait(&self) {
        let mut waiters = self.waiters.lock();
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let node = WaitNode::new(current());
        waiters.push(&node);
        crate::sched::park(WaitReason::WaitGroup, waiters.into_parked());
    }
}

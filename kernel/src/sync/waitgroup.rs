//! `WaitGroup` (Go's `sync.WaitGroup`): wait until a counter of outstanding tasks is zero.
//!
//! `add(n)` before starting tasks, `done()` as each finishes, `wait()` parks until zero. The count
//! changes and is tested under the wait-queue lock, and the change that brings it to zero readies
//! the waiters before that lock is released: a wake-up cannot slip between test and park, and the
//! last `done` cannot stop between the count and the wake-ups.

use core::sync::atomic::{AtomicI64, Ordering};

use crate::records::g::WaitReason;
use crate::records::percpu::current;
use crate::records::spin::{Rank, SpinLock};
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
        let mut waiters = self.waiters.lock();
        let now = self.count.load(Ordering::Relaxed) + n;
        if now < 0 {
            drop(waiters);
            panic!("WaitGroup counter went negative");
        }
        self.count.store(now, Ordering::Release);
        if now == 0 {
            while let Some(g) = waiters.pop() {
                crate::sched::ready(g);
            }
        }
    }

    /// One task finished.
    pub fn done(&self) {
        self.add(-1);
    }

    /// The number of outstanding tasks.
    pub fn count(&self) -> i64 {
        self.count.load(Ordering::Acquire)
    }

    /// Are threads parked in `wait`? (For tests.)
    pub fn has_waiters(&self) -> bool {
        !self.waiters.lock().is_empty()
    }

    /// Parks until the count is zero.
    pub fn wait(&self) {
        // Planted bug `waitgroup-wait-unlocked`: the counter is checked before the lock is taken.
        let checked_unlocked = crate::planted::is(crate::planted::Bug::WaitGroupWaitUnlocked);
        if checked_unlocked && self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut waiters = self.waiters.lock();
        if !checked_unlocked && self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let node = WaitNode::new(current());
        waiters.push(&node);
        crate::sched::park(WaitReason::WaitGroup, waiters.into_parked());
    }
}

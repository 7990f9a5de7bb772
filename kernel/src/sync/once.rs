//! `Once` (Go's `sync.Once`): run a function exactly once, however many threads ask at once;
//! the others park until it has finished. As in Go, a function that does not return (here: its
//! thread dies, of a panic or anything else) counts as done: a death hook completes the `Once`,
//! so its waiters return and it never runs again.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::records::g::WaitReason;
use crate::records::percpu::current;
use crate::records::spin::{Rank, SpinLock};
use crate::sync::waitq::{WaitNode, WaitQueue};

const NEW: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;

pub struct Once {
    state: AtomicU8,
    waiters: SpinLock<WaitQueue>,
}

impl Default for Once {
    fn default() -> Self {
        Self::new()
    }
}

impl Once {
    pub const fn new() -> Once {
        Once { state: AtomicU8::new(NEW), waiters: SpinLock::new(Rank::Object, WaitQueue::new()) }
    }

    /// Are threads parked waiting for the function to finish? (For tests.)
    pub fn has_waiters(&self) -> bool {
        !self.waiters.lock().is_empty()
    }

    /// Runs `f` if no call ran it yet; returns once it has run (here or elsewhere).
    pub fn call_once(&self, f: impl FnOnce()) {
        if self.state.load(Ordering::Acquire) == DONE {
            return;
        }
        if self.state.compare_exchange(NEW, RUNNING, Ordering::Acquire, Ordering::Acquire).is_ok() {
            if crate::planted::is(crate::planted::Bug::OnceDoneEarly) {
                self.state.store(DONE, Ordering::Release); // planted: done before `f` has run
            }
            // SAFETY: `self` outlives the call of `f`, during which the hook may run.
            unsafe { crate::sched::death::on_death(complete_on_death, self as *const Once as *const (), f) };
            self.complete();
            return;
        }
        let mut waiters = self.waiters.lock();
        if self.state.load(Ordering::Acquire) == DONE {
            return;
        }
        let node = WaitNode::new(current());
        waiters.push(&node);
        crate::sched::park(WaitReason::Once, waiters.into_parked());
    }

    /// Marks the function done and readies every waiter, under the wait-queue lock.
    fn complete(&self) {
        let mut waiters = self.waiters.lock();
        self.state.store(DONE, Ordering::Release);
        while let Some(g) = waiters.pop() {
            crate::sched::ready(g);
        }
    }
}

/// The death hook of a running `Once` (`arg` points at it): the function did not return.
///
/// # Safety
/// `arg` is the `Once` whose function was running.
unsafe fn complete_on_death(arg: *const ()) {
    // SAFETY: by the contract.
    unsafe { &*(arg as *const Once) }.complete();
}

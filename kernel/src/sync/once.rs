//! `Once` (Go's `sync.Once`): run a function exactly once, however many threads ask at once;
//! the others park until it has finished.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::sched::g::WaitReason;
use crate::sched::percpu::current;
use crate::sync::spin::{Rank, SpinLock};
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

    /// Runs `f` if no call ran it yet; returns once it has run (here or elsewhere).
    pub fn call_once(&self, f: impl FnOnce()) {
        if self.state.load(Ordering::Acquire) == DONE {
            return;
        }
        if self.state.compare_exchange(NEW, RUNNING, Ordering::Acquire, Ordering::Acquire).is_ok() {
            f();
            let mut waiters = self.waiters.lock();
            self.state.store(DONE, Ordering::Release);
            while let Some(g) = waiters.pop() {
                crate::sched::ready(g);
            }
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
}

//! A CPU's timer heap: the timers it holds, ordered by deadline (in TSC ticks), and what each
//! does when it fires. The data only: `sched::timer` adds timers and fires them.
//!
//! Invariant: timers with equal deadlines fire in the order they were added (`seq`).

use alloc::collections::BinaryHeap;
use core::cmp::{Ordering as CmpOrdering, Reverse};

use crate::records::g::G;

/// What happens when a timer fires.
pub enum Action {
    /// Ready a thread parked in `sleep_until`.
    Wake(&'static G),
    /// Call `f(arg)` on g0 (`f` must not block or panic).
    Call { f: fn(usize), arg: usize },
}

pub struct Timer {
    /// Deadline, in TSC ticks.
    when: u64,
    seq: u64,
    action: Action,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        (self.when, self.seq) == (other.when, other.seq)
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timer {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.when, self.seq).cmp(&(other.when, other.seq))
    }
}

pub struct TimerHeap {
    heap: BinaryHeap<Reverse<Timer>>,
    seq: u64,
}

// SAFETY: timers only hold thread records (shared safely) and the words of their callbacks (whose
// registrants make them valid on any CPU).
unsafe impl Send for TimerHeap {}

impl TimerHeap {
    pub const fn new() -> TimerHeap {
        TimerHeap { heap: BinaryHeap::new(), seq: 0 }
    }

    /// Adds a timer firing at TSC `when`.
    pub fn push(&mut self, when: u64, action: Action) {
        self.seq += 1;
        self.heap.push(Reverse(Timer { when, seq: self.seq, action }));
    }

    /// The earliest deadline, or `u64::MAX`.
    pub fn next_due(&self) -> u64 {
        self.heap.peek().map_or(u64::MAX, |t| t.0.when)
    }

    /// Takes the earliest timer if it is due at TSC `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<Action> {
        if self.next_due() <= now { self.heap.pop().map(|t| t.0.action) } else { None }
    }

    /// Gives back the heap's spare capacity.
    pub fn shrink_to_fit(&mut self) {
        self.heap.shrink_to_fit();
    }
}

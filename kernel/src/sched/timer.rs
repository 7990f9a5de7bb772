//! Per-CPU timers: `sleep`, and channels that receive after a delay (`time::after`).
//!
//! Each CPU keeps a binary heap of timers ordered by expiry time. Timers are added by threads
//! running on that CPU and fired by the scheduler on g0 (`run_expired`, called on every pass
//! through `find_runnable`, including the idle loop that the timer interrupt wakes once per
//! tick). The timer interrupt itself only notices that a timer is due and asks the running
//! thread to yield, so callbacks never run in interrupt context and may take ordinary locks.
//!
//! The heap is under an `IrqSpinLock` because the timer interrupt peeks at it (`due`).

use alloc::collections::BinaryHeap;
use core::cmp::{Ordering as CmpOrdering, Reverse};
use core::time::Duration;

use crate::sched::g::{G, WaitReason};
use crate::sched::percpu::{PerCpu, current};
use crate::sync::Chan;

/// What happens when a timer fires.
pub enum Action {
    /// Ready a thread parked in `sleep_until`.
    Wake(&'static G),
    /// Send the current time on a channel (without blocking).
    Send(Chan<Duration>),
}

pub struct Timer {
    when: Duration,
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

// SAFETY: timers only hold thread records and channels, which are shared safely.
unsafe impl Send for TimerHeap {}

impl TimerHeap {
    pub const fn new() -> TimerHeap {
        TimerHeap { heap: BinaryHeap::new(), seq: 0 }
    }

    fn push(&mut self, when: Duration, action: Action) {
        self.seq += 1;
        self.heap.push(Reverse(Timer { when, seq: self.seq, action }));
    }

    fn next_due(&self) -> Option<Duration> {
        self.heap.peek().map(|t| t.0.when)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

/// Is a timer due on `cpu`?
pub fn due(cpu: &PerCpu) -> bool {
    let next = cpu.timers.lock().next_due();
    next.is_some_and(|when| when <= crate::time::now())
}

/// Fires the due timers of `cpu`. On g0, interrupts off.
pub fn run_expired(cpu: &PerCpu) {
    let now = crate::time::now();
    loop {
        let timer = {
            let mut timers = cpu.timers.lock();
            match timers.next_due() {
                Some(when) if when <= now => timers.heap.pop().map(|t| t.0),
                _ => None,
            }
        };
        let Some(timer) = timer else { return };
        match timer.action {
            Action::Wake(g) => crate::sched::ready(g),
            Action::Send(chan) => {
                let _ = chan.try_send(now);
            }
        }
    }
}

/// Parks the current thread until `when` (time since boot).
pub fn sleep_until(when: Duration) {
    let g = current();
    // If the thread migrates between reading the CPU and taking the lock, the timer simply
    // lives on the CPU it left: it fires there and readies the thread wherever it is parked.
    let mut heap = crate::sched::percpu::this_cpu_unchecked().timers.lock();
    heap.push(when, Action::Wake(g));
    let (lock, interrupts_were_on) = heap.into_parked();
    crate::sched::park(WaitReason::Sleep, Some(lock));
    if interrupts_were_on {
        x86_64::instructions::interrupts::enable();
    }
}

/// Arranges for `chan` to receive the time at `when`, on this CPU.
pub fn send_at(when: Duration, chan: Chan<Duration>) {
    // As in `sleep_until`, a migration here only changes which CPU fires the timer.
    crate::sched::percpu::this_cpu_unchecked().timers.lock().push(when, Action::Send(chan));
}

/// Gives back the spare capacity of every CPU's timer heap (tests comparing heap use).
pub fn release_cached() {
    for cpu in crate::sched::percpu::online_cpus() {
        cpu.timers.lock().heap.shrink_to_fit();
    }
}

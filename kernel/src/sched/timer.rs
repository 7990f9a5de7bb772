//! Per-CPU timers: `sleep`, and callbacks after a delay (`call_at`, which `sync::after` uses for
//! its channels).
//!
//! Each CPU keeps a binary heap of timers ordered by expiry time, in TSC units. Timers are added
//! by threads running on that CPU and fired by the scheduler on g0 (`run_expired`, on every pass
//! through `find_runnable` that finds one due, including the idle loop that the timer interrupt
//! wakes once per tick). The timer interrupt itself only notices that a timer is due and asks
//! the running thread to yield, so timers never fire in interrupt context.
//!
//! A timer either readies a sleeping thread or calls a function registered by a higher layer
//! (the scheduler knows nothing of what the function does). The function runs on g0, so it must
//! never block or panic: it may take ordinary spin locks and ready threads.
//!
//! `PerCpu::next_timer_tsc` mirrors the earliest deadline (updated under the heap's lock), so
//! the scheduler's check -- and the timer interrupt's -- is one `rdtsc` and one comparison,
//! without the lock. The heap itself is under a `SpinLock`: threads add to it and g0 fires it;
//! no interrupt handler touches it.

use alloc::collections::BinaryHeap;
use core::cmp::{Ordering as CmpOrdering, Reverse};
use core::sync::atomic::Ordering;
use core::time::Duration;

use crate::sched::g::{G, WaitReason};
use crate::sched::percpu::{PerCpu, current};

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

    fn push(&mut self, when: u64, action: Action) {
        self.seq += 1;
        self.heap.push(Reverse(Timer { when, seq: self.seq, action }));
    }

    /// The earliest deadline, or `u64::MAX`.
    fn next_due(&self) -> u64 {
        self.heap.peek().map_or(u64::MAX, |t| t.0.when)
    }
}

/// Is a timer due on `cpu`?
#[inline(always)]
pub fn due(cpu: &PerCpu) -> bool {
    let next = cpu.next_timer_tsc.load(Ordering::Relaxed);
    next != u64::MAX && crate::arch::cpu::rdtsc() >= next
}

/// Adds a timer to `cpu`'s heap.
fn add(cpu: &PerCpu, heap: &mut TimerHeap, when: Duration, action: Action) {
    heap.push(crate::time::tsc_at(when), action);
    cpu.next_timer_tsc.store(heap.next_due(), Ordering::Relaxed);
}

/// Fires the due timers of `cpu`. On g0, interrupts off.
pub fn run_expired(cpu: &PerCpu) {
    let now = crate::arch::cpu::rdtsc();
    loop {
        let timer = {
            let mut timers = cpu.timers.lock();
            let timer = if timers.next_due() <= now { timers.heap.pop().map(|t| t.0) } else { None };
            cpu.next_timer_tsc.store(timers.next_due(), Ordering::Relaxed);
            timer
        };
        let Some(timer) = timer else { return };
        match timer.action {
            Action::Wake(g) => crate::sched::ready(g),
            Action::Call { f, arg } => f(arg),
        }
    }
}

/// Parks the current thread until `when` (time since boot).
pub fn sleep_until(when: Duration) {
    let g = current();
    // If the thread migrates between reading the CPU and taking the lock, the timer simply
    // lives on the CPU it left: it fires there and readies the thread wherever it is parked.
    let cpu = crate::sched::percpu::this_cpu_unchecked();
    let mut heap = cpu.timers.lock();
    add(cpu, &mut heap, when, Action::Wake(g));
    crate::sched::park(WaitReason::Sleep, heap.into_parked());
}

/// Arranges for `f(arg)` to be called on g0 at `when` (time since boot), on this CPU. `f` must not
/// block or panic.
pub fn call_at(when: Duration, f: fn(usize), arg: usize) {
    // As in `sleep_until`, a migration here only changes which CPU fires the timer.
    let cpu = crate::sched::percpu::this_cpu_unchecked();
    add(cpu, &mut cpu.timers.lock(), when, Action::Call { f, arg });
}

/// Gives back the spare capacity of every CPU's timer heap (tests comparing heap use).
pub fn release_cached() {
    for cpu in crate::sched::percpu::online_cpus() {
        cpu.timers.lock().heap.shrink_to_fit();
    }
}

//! Per-CPU timers: the wake-up of a sleeping thread (`sched::sleep`), and callbacks after a delay (`call_at`, which `sync::after` uses for
//! its channels).
//!
//! Each CPU keeps a binary heap of timers ordered by expiry time, in TSC units. Timers are added
//! by threads running on that CPU and fired by the scheduler on g0 (`sched::schedule`, which
//! takes them with `take_due` on every pass through its loop that finds one due, including the
//! idle loop that the timer interrupt wakes once per tick). The timer interrupt itself only
//! notices that a timer is due and asks the running thread to yield, so timers never fire in
//! interrupt context.
//!
//! A timer either readies a sleeping thread or calls a function registered by a higher layer
//! (the scheduler knows nothing of what the function does). The function runs on g0, so it must
//! never block or panic: it may take ordinary spin locks and ready threads.
//!
//! `PerCpu::next_timer_tsc` mirrors the earliest deadline (updated under the heap's lock), so
//! the scheduler's check -- and the timer interrupt's -- is one `rdtsc` and one comparison,
//! without the lock. The heap itself is under a `SpinLock`: threads add to it and g0 fires it;
//! no interrupt handler touches it.

use core::sync::atomic::Ordering;
use core::time::Duration;

use crate::records::percpu::PerCpu;
use crate::records::timer_heap::{Action, TimerHeap};

/// Is a timer due on `cpu`?
#[inline(always)]
pub fn due(cpu: &PerCpu) -> bool {
    let next = cpu.next_timer_tsc.load(Ordering::Relaxed);
    next != u64::MAX && crate::arch::cpu::rdtsc() >= next
}

/// Adds a timer to `cpu`'s heap (held by the caller: `heap` is its contents).
pub fn add(cpu: &PerCpu, heap: &mut TimerHeap, when: Duration, action: Action) {
    heap.push(crate::time::tsc_at(when), action);
    cpu.next_timer_tsc.store(heap.next_due(), Ordering::Relaxed);
}

/// Takes the earliest due timer of `cpu`, if any (the scheduler fires it). On g0, interrupts
/// off.
pub fn take_due(cpu: &PerCpu) -> Option<Action> {
    let now = crate::arch::cpu::rdtsc();
    let mut timers = cpu.timers.lock();
    let action = timers.pop_due(now);
    cpu.next_timer_tsc.store(timers.next_due(), Ordering::Relaxed);
    match &action {
        Some(Action::Wake(g)) => crate::trace::timer_fired(Some(g)),
        Some(Action::Call { .. }) => crate::trace::timer_fired(None),
        None => {}
    }
    action
}

/// Arranges for `f(arg)` to be called on g0 at `when` (time since boot), on this CPU. `f` must not
/// block or panic.
pub fn call_at(when: Duration, f: fn(usize), arg: usize) {
    // As in `park::sleep_until`, a migration here only changes which CPU fires the timer.
    let cpu = crate::records::percpu::this_cpu_unchecked();
    add(cpu, &mut cpu.timers.lock(), when, Action::Call { f, arg });
}

/// Gives back the spare capacity of every CPU's timer heap (tests comparing heap use).
pub fn release_cached() {
    for cpu in crate::records::percpu::online_cpus() {
        cpu.timers.lock().shrink_to_fit();
    }
}

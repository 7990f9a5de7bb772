//! Making a thread runnable: `ready` (Go's `ready`, into this CPU's `runnext`) and `runq_put`
//! (onto a CPU's ring, a pinned thread into its CPU's inbox), waking an idle CPU to take it.
//! Under the PCT strategy every runnable thread goes to PCT's priority list instead.

use core::sync::atomic::Ordering;

use crate::arch::cpu::IrqGuard;
use crate::records::g::{G, GState, WaitReason};
use crate::records::percpu::{PerCpu, this_cpu};

/// Queues `g` on `cpu` (whose owner we are, interrupts off), spilling to the global queue if
/// the local ring is full, and wakes an idle CPU to take it if there is one.
#[inline(always)]
pub fn runq_put(cpu: &PerCpu, g: &'static G, next: bool) {
    if crate::sched::explore::pct_active() {
        crate::sched::explore::pct::put(g);
        return;
    }
    if g.pinned.load(Ordering::Relaxed) != crate::records::g::NOT_PINNED {
        put_pinned(cpu, g);
        return;
    }
    cpu.runq.put(g, next);
    crate::sched::balance::wake_idle_cpu(cpu);
}

/// Queues pinned thread `g` in its CPU's inbox, waking that CPU if it is idle.
#[cold]
fn put_pinned(cpu: &PerCpu, g: &'static G) {
    let target = crate::records::percpu::cpu(g.pinned.load(Ordering::Relaxed) as usize);
    target.inbox.push(g);
    if target.id != cpu.id {
        crate::sched::balance::wake_cpu(cpu, target);
    }
}

/// Makes waiting thread `g` runnable, in this CPU's `runnext` slot (Go's `ready`).
#[inline(always)]
pub fn ready(g: &'static G) {
    g.transition(GState::Waiting, GState::Runnable);
    g.wait_reason.set(WaitReason::None);
    g.wait_owner.store(core::ptr::null_mut(), Ordering::Relaxed);
    let _irq = IrqGuard::new();
    crate::trace::readied(g);
    runq_put(this_cpu(), g, true);
}

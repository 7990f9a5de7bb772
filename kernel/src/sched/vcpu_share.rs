//! Sharing one host thread fairly between the virtual CPUs (`vcpu_share=on`, which the runner
//! sets with `--icount`).
//!
//! Under `-icount`, QEMU runs every virtual CPU on one host thread, round-robin: each round it
//! gives the first vCPU a budget of instructions up to the next timer deadline, then the next vCPU
//! what is left of it, and so on. QEMU 7.2 (Debian 12's) does not split the budget: a vCPU that
//! never stops runs the whole round, and the vCPUs after it get nothing, round after round. A vCPU
//! stops early only when it halts, or executes `pause` (TCG ends its turn there: "just let another
//! CPU run"). So in a busy run the first CPU runs and the others starve -- and a thread queued on
//! a starving CPU (the stress test's coordinator, say) never runs: the run never ends. Newer QEMU
//! splits the budget between the vCPUs (since 8.1).
//!
//! The fix from inside the guest: virtual time is cut into 1 ms slots, owned by the CPUs in turn
//! (slot number modulo the CPU count). At a scheduling point -- every pass through the
//! scheduler and every timer tick -- a CPU that is not the slot's owner, while the owner has work,
//! executes `pause`: its turn ends, and the round goes on to the next vCPU, until the owner runs
//! the rest of it. Every CPU thus gets the host thread at least one slot in every `CPUs`. The
//! decisions depend only on the instruction-counted clock, so they do not add nondeterminism.
//!
//! On real hardware (or without icount) the rule is off: a `pause` there is only a hint to the
//! core, but nothing needs sharing.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::records::percpu::{self, PerCpu};

static ENABLED: AtomicBool = AtomicBool::new(false);
/// TSC ticks per slot.
static SLOT_TSC: AtomicU64 = AtomicU64::new(u64::MAX);

/// Turns the rule on or off (`vcpu_share=`, and more than one CPU online: alone, a CPU has
/// nothing to share); `tsc_hz` gives the slot length (1 ms). Before the CPUs run the scheduler.
pub fn configure(enabled: bool, tsc_hz: u64) {
    SLOT_TSC.store((tsc_hz / 1000).max(1), Ordering::Relaxed);
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// A scheduling point of `cpu` (on g0 or in its timer interrupt): gives the host thread to the
/// other virtual CPUs if this slot is another's, and that CPU has work.
#[inline(always)]
pub fn at_scheduling_point(cpu: &PerCpu) {
    if ENABLED.load(Ordering::Relaxed) {
        share(cpu);
    }
}

#[inline(never)]
fn share(cpu: &PerCpu) {
    let cpus = u64::from(percpu::CPUS_ONLINE.load(Ordering::Relaxed));
    if cpus <= 1 {
        return;
    }
    let owner = (crate::arch::cpu::rdtsc() / SLOT_TSC.load(Ordering::Relaxed) % cpus) as usize;
    if owner != cpu.id as usize && !percpu::cpu(owner).idle.load(Ordering::Relaxed) {
        crate::arch::cpu::end_host_turn();
    }
}

//! Spreading threads over the CPUs: waking idle CPUs and stealing work. (Starting the other
//! CPUs at boot lives in `smp_boot`.)
//!
//! Wake-ups (Go's `wakep`): after queueing a thread, the queuing CPU looks for a CPU halted
//! in the idle loop and sends it a `WAKEUP` IPI. The idle CPU announces itself (`idle = true`)
//! before its final check for work, and the waker queues before it looks for idle CPUs
//! (both sequentially consistent), so one of the two always sees the other: no thread waits
//! in a queue while every CPU sleeps.
//!
//! Stealing (Go's `findRunnable`/`stealWork`): a CPU with nothing local and nothing global
//! steals half of another CPU's ring, trying the others in a random order, up to four rounds;
//! only in the last round may it take another CPU's `runnext`.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::records::g::G;
use crate::records::percpu::{self, MAX_CPUS, PerCpu};

/// CPUs halted in their idle loop, one bit each (a hint; `PerCpu::idle` decides).
pub static IDLE_CPUS: AtomicU64 = AtomicU64::new(0);

/// Marks `cpu` idle (before its last look for work) or busy.
pub fn set_idle(cpu: &PerCpu, idle: bool) {
    if idle {
        crate::trace::idle();
    }
    // LAB 3 BEGIN: announce (or withdraw) this CPU as idle: its flag, then its bit in IDLE_CPUS
    // LAB 3 STUB: let _ = (cpu, idle); // lab 3: no CPU is ever seen idle yet
    cpu.idle.store(idle, Ordering::SeqCst);
    if idle {
        IDLE_CPUS.fetch_or(1 << cpu.id, Ordering::SeqCst);
    } else {
        IDLE_CPUS.fetch_and(!(1 << cpu.id), Ordering::SeqCst);
    }
    // LAB 3 END
}

/// Wakes one idle CPU other than `from`, if any is halted (Go's `wakep`).
#[inline]
pub fn wake_idle_cpu(from: &PerCpu) {
    if percpu::CPUS_ONLINE.load(Ordering::Relaxed) == 1 {
        return; // nobody else to wake
    }
    // LAB 3 BEGIN: look for an idle CPU other than `from` (after a fence) and wake one of them
    // LAB 3 STUB: let _ = from; // lab 3: no idle CPU is woken yet
    // The fence orders the caller's queueing before the look at the idle CPUs (pairs with
    // the idle CPU's store of its bit before its last look for work).
    core::sync::atomic::fence(Ordering::SeqCst);
    let others = IDLE_CPUS.load(Ordering::SeqCst) & !(1 << from.id);
    if others != 0 {
        wake_one_of(from, others);
    }
    // LAB 3 END
}

// LAB 3 BEGIN: the helper your wake_idle_cpu may use (write your own, or none)
// LAB 3 STUB: // lab 3: (no helper yet)
/// Wakes one CPU of the `candidates` bit set that is still idle: the CPU whose `idle` flag this
/// call turns off gets the IPI (two wakers never wake the same CPU twice).
#[cold]
fn wake_one_of(from: &PerCpu, mut candidates: u64) {
    while candidates != 0 {
        let id = candidates.trailing_zeros() as usize;
        candidates &= candidates - 1;
        let cpu = percpu::cpu(id);
        if cpu.idle.compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            from.counters.wakeups.fetch_add(1, Ordering::Relaxed);
            crate::arch::apic::send_wakeup(cpu.apic_id.load(Ordering::Relaxed));
            return;
        }
    }
}
// LAB 3 END

/// Wakes `target` (from `from`) if it is halted in its idle loop.
pub fn wake_cpu(from: &PerCpu, target: &PerCpu) {
    // LAB 3 BEGIN: wake `target` if it is idle (after a fence), and only once
    // LAB 3 STUB: let _ = (from, target); // lab 3: the target is not woken yet
    core::sync::atomic::fence(Ordering::SeqCst);
    if target.idle.load(Ordering::SeqCst)
        && target.idle.compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    {
        from.counters.wakeups.fetch_add(1, Ordering::Relaxed);
        crate::arch::apic::send_wakeup(target.apic_id.load(Ordering::Relaxed));
    }
    // LAB 3 END
}

/// Steals work for `cpu` from the other CPUs' run queues.
pub fn steal(cpu: &PerCpu) -> Option<&'static G> {
    let n = percpu::CPUS_ONLINE.load(Ordering::Relaxed) as usize;
    if n <= 1 {
        return None;
    }
    const ROUNDS: usize = 4;
    for round in 0..ROUNDS {
        let start = cpu.fastrand() as usize % MAX_CPUS;
        for k in 0..MAX_CPUS {
            let victim = percpu::cpu((start + k) % MAX_CPUS);
            if victim.id == cpu.id || !victim.online.load(Ordering::Acquire) {
                continue;
            }
            if let Some(g) = victim.runq.steal_into(&cpu.runq, round == ROUNDS - 1) {
                crate::trace::stolen(g, victim.id);
                return Some(g);
            }
        }
    }
    None
}

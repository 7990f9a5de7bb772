//! Deadlock detection, in two forms (Go has the first: "all goroutines are asleep - deadlock!").
//!
//! **All threads asleep** (`at_idle`): every online CPU is halted in its idle loop, no timer is
//! armed on any CPU, every run queue, inbox and the global queue are empty, and every live
//! thread is parked on something only another thread can end (a channel, a `select!`, a mutex, a
//! wait group, a `Once`, a join). Interrupt handlers never ready threads, and timers are the only
//! other source of wake-ups, so nothing can ever run again: the run is failed with every thread's
//! traceback. The checks read other CPUs' state without locks, so a verdict needs the same answer
//! for `STABLE_MS` in a row with no context switch anywhere in between; CPU 0 alone decides (one
//! report).
//!
//! **A cycle of mutex waits** (`check_mutex_cycle`), found while other threads still run: a
//! thread about to park on a `Mutex` follows the wait-for graph -- the mutex's holder, the mutex
//! that holder is parked on (`G::wait_owner`), its holder, and so on -- and if the chain comes
//! back to itself, no thread on the cycle can ever wake. Each waiter publishes `wait_owner`
//! before it looks (sequentially consistent), so of two threads closing a cycle at once at
//! least one sees the other. The mutex records its holder only once it has it and forgets it
//! before it lets go, so a holder read is the holder or nothing.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::records::g::{G, GState, WaitReason};
use crate::records::percpu::{PerCpu, online_cpus};
use crate::records::runq::GLOBAL;
use crate::sched::thread::free_list;

/// How long every CPU must stay idle, with no switch, before the verdict.
const STABLE_MS: u64 = 100;

/// When (TSC) the all-asleep conditions were first seen to hold, and the switch count then
/// (0: they do not hold).
static ASLEEP_SINCE: AtomicU64 = AtomicU64::new(0);
static SWITCHES_THEN: AtomicU64 = AtomicU64::new(0);

/// Called by every CPU's idle loop before it halts (on g0, interrupts off): CPU 0 checks whether
/// all threads are asleep for good, and if so stops the kernel with the report.
pub fn at_idle(cpu: &PerCpu) {
    if cpu.id != 0 {
        return;
    }
    if !machine_asleep() {
        ASLEEP_SINCE.store(0, Ordering::Relaxed);
        return;
    }
    let now = crate::arch::cpu::rdtsc();
    let switches = crate::records::percpu::totals().switches;
    let since = ASLEEP_SINCE.load(Ordering::Relaxed);
    if since == 0 || switches != SWITCHES_THEN.load(Ordering::Relaxed) {
        ASLEEP_SINCE.store(now, Ordering::Relaxed);
        SWITCHES_THEN.store(switches, Ordering::Relaxed);
        return;
    }
    if now.wrapping_sub(since) < crate::time::tsc_hz() / 1000 * STABLE_MS {
        return;
    }
    let mut parked = 0usize;
    let mut all_parked = true;
    free_list::for_each_thread(|g| match g.state() {
        GState::Waiting if woken_only_by_threads(g.wait_reason.get()) => parked += 1,
        GState::Dead => {}
        _ => all_parked = false,
    });
    if all_parked && parked > 0 {
        crate::fatal::fatal(format_args!("all threads are asleep: deadlock ({parked} threads parked, no timer armed)"));
    }
    ASLEEP_SINCE.store(0, Ordering::Relaxed);
}

/// Is every online CPU halted with nothing queued and no timer armed (a lock-free snapshot)?
fn machine_asleep() -> bool {
    let idle = crate::sched::balance::IDLE_CPUS.load(Ordering::SeqCst);
    GLOBAL.len_hint() == 0
        && online_cpus().all(|c| {
            (c.id == 0 || idle & (1 << c.id) != 0)
                && c.runq.is_empty()
                && c.inbox.len_hint() == 0
                && c.next_timer_tsc.load(Ordering::Relaxed) == u64::MAX
        })
}

/// Can only another thread end a wait for `reason`? (A sleep ends by a timer.)
fn woken_only_by_threads(reason: WaitReason) -> bool {
    !matches!(reason, WaitReason::None | WaitReason::Sleep)
}

/// Most links followed in the wait-for graph (a longer chain is not judged).
const MAX_CHAIN: usize = 1024;

/// Called by thread `me` about to park on a mutex, its `wait_owner` already published: stops the
/// kernel with a report if the wait-for graph leads from that mutex's holder back to `me`.
pub fn check_mutex_cycle(me: &'static G) {
    core::sync::atomic::fence(Ordering::SeqCst);
    let mut g: &'static G = me;
    for _ in 0..MAX_CHAIN {
        let Some(holder) = crate::sched::traceback::mutex_holder(g) else { return };
        if core::ptr::eq(holder, me) {
            report_cycle(me);
        }
        g = holder;
    }
}

#[cold]
fn report_cycle(me: &'static G) -> ! {
    crate::fatal::fatal(format_args!("deadlock: a cycle of mutex waits: {}", Cycle(me)))
}

/// The cycle through `me`, for the report's first line: `thread 3 waits for thread 4, which
/// waits for thread 3`.
struct Cycle(&'static G);

impl core::fmt::Display for Cycle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let me = self.0;
        write!(f, "thread {}", me.id.get())?;
        let mut g = me;
        for i in 0..MAX_CHAIN {
            let Some(holder) = crate::sched::traceback::mutex_holder(g) else { break };
            let link = if i == 0 { " waits for" } else { ", which waits for" };
            write!(f, "{link} thread {}", holder.id.get())?;
            if core::ptr::eq(holder, me) {
                break;
            }
            g = holder;
        }
        Ok(())
    }
}

//! The scheduler proper, on g0: `schedule` picks the next thread for this CPU (Go's
//! `findRunnable`: timers due, the global queue every 61st pass, the inbox of pinned threads and
//! the local ring in turn, the global queue, stealing, else idle) and `execute`s it. Also the two
//! checks every switch makes (`check_locks_at_switch`, and `switch_refused` for a switch asked for
//! off a thread), and whether the scheduler runs yet. Under the PCT strategy the one CPU takes
//! the highest-priority runnable thread first (`explore::pct`), and every switch is mixed into
//! the schedule digest (`explore::digest`).

use core::sync::atomic::{AtomicBool, Ordering};

use crate::records::g::{G, GState};
use crate::records::percpu::{PerCpu, current, this_cpu};
use crate::records::runq::GLOBAL;
use crate::records::switch::gogo;
use crate::records::timer_heap::Action;
use crate::sched::timer;

/// Set once CPU 0 runs the scheduler: from then on threads exist and may die alone.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Does the scheduler run yet?
pub fn is_running() -> bool {
    RUNNING.load(Ordering::Acquire)
}

/// Turns this CPU into a scheduler: its g0 record describes the current stack from now on,
/// and it starts picking threads. Never returns.
///
/// Must be called on the CPU's g0 stack with interrupts disabled.
pub fn run_scheduler(cpu: &'static PerCpu) -> ! {
    cpu.online.store(true, Ordering::Release);
    RUNNING.store(true, Ordering::Release);
    schedule()
}

/// Stops the kernel unless switched-out thread `g` holds exactly the `parked` spin locks that
/// `park` is about to release for it: a thread that switches away holding any other would leave
/// everyone who waits for that lock spinning for a thread that does not run.
#[inline(always)]
pub fn check_locks_at_switch(g: &G, parked: u32, what: &str) {
    let held = g.locks.load(Ordering::Relaxed);
    if held != parked {
        switched_holding_locks(g, held.wrapping_sub(parked), what);
    }
    if cfg!(debug_assertions) && g.held_ranks.total() != parked {
        switched_holding_locks(g, g.held_ranks.total().wrapping_sub(parked), what);
    }
}

/// `mcall` called by a context that is not a thread (only a thread can park, yield or exit):
/// called by `mcall` by name, the door up from the records floor.
#[unsafe(no_mangle)]
extern "C" fn switch_refused(g: &G, return_address: usize) -> ! {
    let (lo, hi) = g.stack_bounds();
    crate::fatal::fatal_with_trace(
        format_args!("a thread switch was asked for on {}: only a thread can park, yield or exit", g),
        &crate::fatal::backtrace::Backtrace::from_frame(return_address - 1, crate::arch::cpu::read_rbp(), lo, hi),
    )
}

#[cold]
#[inline(never)]
fn switched_holding_locks(g: &G, extra: u32, what: &str) -> ! {
    // SAFETY: `g` is switched out (its context saved) and we are on its CPU's g0.
    let ctx = unsafe { g.context() };
    let (lo, hi) = g.stack_bounds();
    // SAFETY: the saved `rsp` points at the return address into the thread's code.
    let rip = unsafe { *(ctx.rsp as *const usize) };
    crate::fatal::fatal_with_trace(
        format_args!(
            "{} switched holding {extra} spin lock(s) ({what}): whoever waits for them would spin for a thread that does not run",
            g
        ),
        &crate::fatal::backtrace::Backtrace::from_frame(rip - 1, ctx.rbp, lo, hi),
    )
}

/// Picks the next thread for this CPU and switches to it. Runs on g0 with interrupts off.
/// (Inlined into the few places that end in it: it is the hot path of every switch.)
#[inline(always)]
pub fn schedule() -> ! {
    let cpu = this_cpu();
    debug_assert!(cpu.is_g0(current()), "schedule() called off g0");
    debug_assert!(!crate::arch::cpu::interrupts_enabled(), "schedule() with interrupts on");
    let (g, inherit) = find_runnable(cpu);
    execute(cpu, g, inherit)
}

/// Runs `g` on `cpu`. With `inherit` it keeps the current time slice (it came from `runnext`).
#[inline(always)]
fn execute(cpu: &PerCpu, g: &'static G, inherit: bool) -> ! {
    g.transition(GState::Runnable, GState::Running);
    // A fresh start: any request from before the thread was switched out is void (Go's
    // `execute` does the same).
    g.preempt.store(false, Ordering::Relaxed);
    g.stackguard0.store(g.real_guard(), Ordering::Relaxed);
    if !inherit {
        // A new time slice (the timer's quantum counts from here).
        cpu.slice_start.store(cpu.ticks.load(Ordering::Relaxed), Ordering::Relaxed);
    }
    cpu.counters.switches.fetch_add(1, Ordering::Relaxed);
    if g.last_cpu.swap(cpu.id, Ordering::Relaxed) != cpu.id {
        cpu.counters.migrations.fetch_add(1, Ordering::Relaxed);
    }
    crate::sched::explore::digest::started(cpu, g, inherit);
    // SAFETY: `g` is Running with its context saved, and we are on g0 with interrupts off.
    unsafe { gogo(g) }
}

/// Finds a runnable thread, halting until one appears (Go's `findRunnable`).
#[inline(always)]
fn find_runnable(cpu: &PerCpu) -> (&'static G, bool) {
    loop {
        crate::sched::vcpu_share::at_scheduling_point(cpu);
        let tick = cpu.schedtick.fetch_add(1, Ordering::Relaxed) + 1;
        if timer::due(cpu) {
            fire_timers(cpu);
        }
        if crate::sched::explore::pct_active()
            && let Some(g) = crate::sched::explore::pct::take()
        {
            return (g, false);
        }

        // Fairness: every 61st pass, the global queue first.
        if GLOBAL.len_hint() > 0
            && tick % 61 == 0
            && let Some(g) = GLOBAL.pop()
        {
            cpu.counters.global_gets.fetch_add(1, Ordering::Relaxed);
            return (g, false);
        }
        // The inbox of pinned threads and the local queue take turns when both have work: a
        // pinned thread that yields goes back to the inbox, and served first every time it would
        // starve the threads of the local queue (and they it, the other way round).
        if tick % 2 == 0 {
            if let Some(g) = take_pinned(cpu) {
                return (g, false);
            }
            if let Some(found) = cpu.runq.get() {
                return found;
            }
        } else {
            if let Some(found) = cpu.runq.get() {
                return found;
            }
            if let Some(g) = take_pinned(cpu) {
                return (g, false);
            }
        }
        if GLOBAL.len_hint() > 0
            && let Some(g) = take_from_global(cpu)
        {
            return (g, false);
        }
        if let Some(g) = crate::sched::balance::steal(cpu) {
            cpu.counters.steals.fetch_add(1, Ordering::Relaxed);
            return (g, false);
        }
        idle(cpu);
    }
}

/// The next thread pinned to `cpu`, if any (the length is read without the lock first).
#[inline(always)]
fn take_pinned(cpu: &PerCpu) -> Option<&'static G> {
    if cpu.inbox.len_hint() > 0 { cpu.inbox.pop() } else { None }
}

/// Takes one thread from the global queue, plus a fair share into the local ring.
fn take_from_global(cpu: &PerCpu) -> Option<&'static G> {
    GLOBAL.with(|global| {
        let first = global.pop()?;
        cpu.counters.global_gets.fetch_add(1, Ordering::Relaxed);
        let cpus = crate::records::percpu::CPUS_ONLINE.load(Ordering::Relaxed).max(1) as usize;
        let share = (global.len() / cpus).min(crate::records::runq::LOCAL_CAPACITY / 2);
        for _ in 0..share {
            match global.pop() {
                Some(g) => cpu.runq.put(g, false),
                None => break,
            }
        }
        Some(first)
    })
}

/// Nothing to run: halt until an interrupt (a timer tick or a wake-up IPI).
fn idle(cpu: &PerCpu) {
    cpu.counters.idles.fetch_add(1, Ordering::Relaxed);
    crate::sched::balance::set_idle(cpu, true);
    // Re-check after announcing that we are idle: work queued before the store was visible
    // would otherwise wait for the next tick (store-load ordering pairs with `wake_idle_cpu`).
    let work = !cpu.runq.is_empty()
        || cpu.inbox.len_hint() > 0
        || GLOBAL.len_hint() > 0
        || timer::due(cpu)
        || crate::sched::explore::pct::has_ready();
    if !work {
        crate::sched::deadlock::at_idle(cpu);
        crate::arch::cpu::enable_and_halt_then_disable();
    }
    crate::sched::balance::set_idle(cpu, false);
}

/// Fires the due timers of `cpu`: a sleeping thread is readied, a callback called. On g0,
/// interrupts off.
fn fire_timers(cpu: &PerCpu) {
    while let Some(action) = timer::take_due(cpu) {
        match action {
            Action::Wake(g) => crate::sched::queue::ready(g),
            Action::Call { f, arg } => f(arg),
        }
    }
}

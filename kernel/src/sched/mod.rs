//! The scheduler: Go's design in a kernel.
//!
//! Concepts (see docs/scheduler.md for diagrams):
//! - A **thread** (`G`) is a kernel thread as cheap as a goroutine: a small record and a small
//!   growable stack. Its states are Runnable -> Running -> (Waiting -> Runnable | Dead).
//! - Each CPU has a **g0**: the scheduler's own context on its own stack. Every switch between
//!   two threads goes through g0 (`mcall` from the thread, `gogo` to the next), and g0 is
//!   never preempted.
//! - Each CPU has a local run queue with a `runnext` slot; one global queue is shared; idle
//!   CPUs steal (`runq`).
//! - **park/ready** is the one way to block: every blocking operation (channels, mutexes,
//!   sleep, join) parks the thread under the lock of the thing it waits on, and whoever makes
//!   the condition true readies it. `park` releases that lock only on g0, after the thread is
//!   marked Waiting, so a concurrent `ready` can never be lost.
//! - **Preemption** is requested by poisoning `stackguard0` (`preempt`, `stackguard`); it
//!   happens at the thread's next prologue, or, for a thread in a tight loop, from the timer
//!   interrupt.
//!
//! Rejected designs: per-thread kernel stacks switched directly thread-to-thread (simpler, but
//! the scheduler would run on the outgoing thread's stack, and a stack overflow there could
//! not be reported); a single global run queue (simple, but every switch would contend for
//! one lock -- the per-CPU rings keep the common case lock-free).
//!
//! Interrupt handlers never ready threads: they only request preemption. So run-queue and
//! timer operations run either on g0 (interrupts off) or in a thread with interrupts off.

pub mod balance;
pub mod death;
pub mod preempt;
mod preempt_tests;
mod smp_tests;
pub mod stackguard;
mod tests;
pub mod thread;
pub mod timer;
pub mod vcpu_share;

use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::cpu::IrqGuard;
use crate::records::g::{G, GState, WaitReason};
use crate::records::percpu::{PerCpu, current, this_cpu};
use crate::records::runq::GLOBAL;
use crate::records::spin::ParkUnlock;
use crate::records::switch::{gogo, mcall};

pub use thread::{JoinHandle, spawn, spawn_on, try_spawn};

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

/// Queues `g` on `cpu` (whose owner we are, interrupts off), spilling to the global queue if
/// the local ring is full, and wakes an idle CPU to take it if there is one.
#[inline(always)]
pub fn runq_put(cpu: &PerCpu, g: &'static G, next: bool) {
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
    let _irq = IrqGuard::new();
    runq_put(this_cpu(), g, true);
}

/// Parks the current thread until someone calls `ready` on it (Go's `gopark`).
///
/// The caller holds `lock` (through a guard given up with `into_parked`, or `lock_raw`): the
/// lock of whatever the thread waits on. It is released on g0 after the thread is marked
/// Waiting, so whoever readies the thread (under that lock) finds it parked. The thread must
/// hold no other lock.
#[inline]
pub fn park<L: ParkUnlock>(reason: WaitReason, lock: &L) {
    let g = current();
    g.wait_reason.set(reason);
    // SAFETY: only `park_m::<L>`, for this same thread, reads the slot, while the caller still
    // holds the lock object alive (it is parked inside this call).
    unsafe { *g.park_lock.get() = lock as *const L as *const () };
    // SAFETY: called by a thread; it resumes here when readied.
    unsafe { mcall(park_m::<L>) };
}

extern "C" fn park_m<L: ParkUnlock>(g: &'static G) -> ! {
    // SAFETY: `park::<L>` stored a pointer to a live `L` for this thread just before the switch.
    let lock = unsafe { &*(*g.park_lock.get() as *const L) };
    // Settle the thread's lock count first: once the lock is released, another CPU may ready
    // and run the thread, which then owns its own count again. It held exactly the locks
    // being released here.
    check_locks_at_switch(g, lock.lock_count(), "park");
    g.locks.store(0, Ordering::Relaxed);
    g.parks.fetch_add(1, Ordering::Relaxed);
    g.transition(GState::Running, GState::Waiting);
    // SAFETY: the thread holds the lock through a forgotten guard, and it is parked now.
    unsafe { lock.unlock_parked(g) };
    schedule()
}

/// Lets other threads run; the current one goes to the back of this CPU's queue (Go's
/// `Gosched`).
pub fn yield_now() {
    // SAFETY: called by a thread.
    unsafe { mcall(yield_m) };
}

extern "C" fn yield_m(g: &'static G) -> ! {
    check_locks_at_switch(g, 0, "yield_now");
    g.transition(GState::Running, GState::Runnable);
    let cpu = this_cpu();
    runq_put(cpu, g, false);
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
        preempt::start_slice(cpu);
    }
    cpu.counters.switches.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `g` is Running with its context saved, and we are on g0 with interrupts off.
    unsafe { gogo(g) }
}

/// Finds a runnable thread, halting until one appears (Go's `findRunnable`).
#[inline(always)]
fn find_runnable(cpu: &PerCpu) -> (&'static G, bool) {
    loop {
        vcpu_share::at_scheduling_point(cpu);
        let tick = cpu.schedtick.fetch_add(1, Ordering::Relaxed) + 1;
        if timer::due(cpu) {
            timer::run_expired(cpu);
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
    let work = !cpu.runq.is_empty() || cpu.inbox.len_hint() > 0 || GLOBAL.len_hint() > 0 || timer::due(cpu);
    if !work {
        crate::arch::cpu::enable_and_halt_then_disable();
    }
    crate::sched::balance::set_idle(cpu, false);
}

/// Puts the current thread to sleep for at least `duration`.
pub fn sleep(duration: core::time::Duration) {
    timer::sleep_until(crate::time::now().saturating_add(duration));
}

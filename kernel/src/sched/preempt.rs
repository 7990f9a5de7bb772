//! Preemption: the timer's requests, the decision at a prologue (preempt or defer), and
//! asynchronous preemption.
//!
//! Cooperative preemption (Go's sysmon + `stackPreempt`): on each timer tick, if the running
//! thread has used its quantum (`quantum_ms=`, default 10), or a timer is due, the tick sets
//! the thread's `preempt` flag and poisons its `stackguard0`; the thread yields at its next
//! prologue (`stackguard::newstack`, which asks `at_prologue`).
//!
//! Asynchronous preemption (Go 1.14's answer to tight loops without calls): if a request is
//! still pending a further quantum later and the thread is preemptible, the tick makes the
//! interrupted thread "call" `async_preempt_entry` (below) by pushing its `rip` on its
//! stack; that routine saves every register and yields.
//!
//! Modes (`preempt=`): `off` (no requests at all), `coop` (requests only), `async` (default:
//! requests, then injection). g0 and interrupt contexts are never asked, in any mode.
//!
//! The non-preemptible depth (`G::locks`, Go's `m.locks`) is raised by spin locks
//! (`G::raise_lock_depth`); a request that finds it non-zero is deferred (`at_prologue`), and
//! `G::lower_lock_depth` re-arms it when the depth returns to zero, so no request is lost.

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::records::g::{G, STACK_PREEMPT};
use crate::records::percpu::{PerCpu, current, this_cpu};
use crate::records::switch::mcall;
use crate::records::trap_entry::TrapFrame;
use crate::trace::Stop;

/// How the timer preempts (`preempt=` on the command line).
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Off = 0,
    Coop = 1,
    Async = 2,
}

static MODE: AtomicU8 = AtomicU8::new(Mode::Async as u8);
/// Quantum in timer ticks.
static QUANTUM_TICKS: AtomicU64 = AtomicU64::new(10);

pub fn configure(mode: Mode, quantum_ms: u64) {
    MODE.store(mode as u8, Ordering::Relaxed);
    let ticks = (quantum_ms * crate::arch::apic::HZ / 1000).max(1);
    QUANTUM_TICKS.store(ticks, Ordering::Relaxed);
}

/// Changes the mode alone (tests that compare strategies switch the timer's injections off).
pub fn set_mode(mode: Mode) {
    MODE.store(mode as u8, Ordering::Relaxed);
}

pub fn mode() -> Mode {
    match MODE.load(Ordering::Relaxed) {
        0 => Mode::Off,
        1 => Mode::Coop,
        _ => Mode::Async,
    }
}

/// The timer interrupt: the periodic tick, or under the `async:N` strategy whichever of the
/// tick and the next random injection is due.
pub fn timer_interrupt(frame: &mut TrapFrame) {
    if crate::sched::explore::async_active() {
        explore_timer(frame);
        return;
    }
    let cpu = this_cpu();
    if cpu.explore.next_tick_tsc.get() != 0 {
        // The `async:N` strategy was switched off (a test's trial ended): this is the last of its
        // one-shot interrupts (each was armed at most one tick ahead); the timer is periodic again.
        cpu.explore.next_tick_tsc.set(0);
        cpu.explore.next_inject_tsc.set(u64::MAX);
        crate::arch::apic::start_timer();
    }
    timer_tick(frame);
}

/// `async:N`: the timer runs one-shot, armed for whichever comes first, the next periodic tick
/// (kept every 1/HZ of TSC time, so quanta and tick counts stay as they are) or the next
/// injection, a seeded random delay with mean N (TSC ticks; under `--icount shift=0` the TSC
/// counts instructions). An injection lands on whatever instruction the thread was at.
fn explore_timer(frame: &mut TrapFrame) {
    let cpu = this_cpu();
    let now = crate::arch::cpu::rdtsc();
    let period = (crate::time::tsc_hz() / crate::arch::apic::HZ).max(1);
    let mean = match crate::sched::explore::strategy() {
        crate::sched::explore::Strategy::Async { mean_instructions } => {
            (mean_instructions.saturating_mul(crate::time::tsc_hz()) / 1_000_000_000).max(1)
        }
        _ => u64::MAX / 4,
    };
    let state = &cpu.explore;
    if state.next_tick_tsc.get() == 0 {
        state.next_tick_tsc.set(now);
        state.next_inject_tsc.set(now + crate::sched::explore::seeded::uniform_around(cpu, mean));
    }
    if now >= state.next_tick_tsc.get() {
        state.next_tick_tsc.set(state.next_tick_tsc.get().max(now - period) + period);
        timer_tick(frame);
    }
    if now >= state.next_inject_tsc.get() {
        state.next_inject_tsc.set(now + crate::sched::explore::seeded::uniform_around(cpu, mean));
        let g = frame.interrupted();
        let already = frame.rip == async_preempt_entry as *const () as u64;
        if g.is_thread() && !already && g.preemptible(frame.interrupts_were_enabled()) {
            g.request_preempt(cpu.ticks.load(Ordering::Relaxed));
            if inject_async_preemption(frame) {
                cpu.counters.explore_injections.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let next = state.next_tick_tsc.get().min(state.next_inject_tsc.get());
    let ticks = u128::from(next.saturating_sub(now).max(1)) * u128::from(crate::arch::apic::ticks_per_period())
        / u128::from(period);
    crate::arch::apic::arm_oneshot(ticks as u64);
}

/// The periodic tick: count it, and request or force preemption of the running thread.
fn timer_tick(frame: &mut TrapFrame) {
    let cpu = this_cpu();
    crate::sched::vcpu_share::at_scheduling_point(cpu);
    cpu.counters.ticks.fetch_add(1, Ordering::Relaxed);
    let now = cpu.ticks.fetch_add(1, Ordering::Relaxed) + 1;
    crate::sched::monitor::at_tick(cpu, frame);
    let mode = mode();
    let g = frame.interrupted();
    if !g.is_thread() {
        return;
    }
    if g.overflow_pending.load(Ordering::Relaxed) {
        // Re-arm a deferred overflow (interrupts are on again, or a deferral restored the guard).
        g.stackguard0.store(STACK_PREEMPT, Ordering::Relaxed);
    }
    if mode == Mode::Off {
        return;
    }
    if !g.preempt.load(Ordering::Relaxed) {
        let used = now - cpu.slice_start.load(Ordering::Relaxed);
        // Planted bug `timer-lock-in-tick`: the heap itself, under its plain spin lock, instead
        // of the lock-free mirror.
        let due = if crate::planted::is(crate::planted::Bug::TimerLockInTick) {
            cpu.timers.lock().next_due() <= crate::arch::cpu::rdtsc()
        } else {
            crate::sched::timer::due(cpu)
        };
        if used >= QUANTUM_TICKS.load(Ordering::Relaxed) || due {
            g.request_preempt(now);
            cpu.counters.preempt_requests.fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    // A request is pending. Re-arm it (a deferral may have restored the real guard) and, in
    // async mode, force it if it has waited a whole further quantum.
    g.stackguard0.store(STACK_PREEMPT, Ordering::Relaxed);
    let waited = now - g.preempt_tick.load(Ordering::Relaxed);
    if mode == Mode::Async && waited >= QUANTUM_TICKS.load(Ordering::Relaxed) {
        inject_async_preemption(frame);
    }
}

/// A prologue found a request (the slow path, on g0, `g` switched out): preempt `g` now if it is
/// preemptible (Go's `gopreempt_m` from `newstack`); otherwise restore its real guard and keep
/// the request pending -- the deferral: `G::lower_lock_depth` re-arms it when the last spin lock
/// goes, and the next tick when interrupts are back on. Returns only if deferred.
pub fn at_prologue(cpu: &PerCpu, g: &'static G, interrupts_were_enabled: bool, rip: usize) {
    g.stackguard0.store(g.real_guard(), Ordering::Relaxed);
    let preemptible = if crate::planted::is(crate::planted::Bug::CoopPreemptSpinlock) {
        g.is_thread() && interrupts_were_enabled // planted: the lock depth is not asked
    } else {
        g.preemptible(interrupts_were_enabled)
    };
    if preemptible {
        preempt_at_prologue(cpu, g, rip, Stop::PreemptCoop);
    }
    cpu.counters.preempt_deferred.fetch_add(1, Ordering::Relaxed);
    crate::trace::deferred(g, false);
}

/// Preempts switched-out thread `g` at the prologue whose hook returns to `rip`: a timer
/// request (`at_prologue`) or a forced point of the explorer (`why` says which). Both count as
/// cooperative preemptions and as a preemption site for `--coverage`.
pub fn preempt_at_prologue(cpu: &PerCpu, g: &'static G, rip: usize, why: Stop) -> ! {
    g.preempt.store(false, Ordering::Relaxed);
    cpu.counters.preempt_coop.fetch_add(1, Ordering::Relaxed);
    crate::sched::explore::replay::cover(rip);
    preempt_m(g, why)
}

/// Preempts switched-out thread `g` (`why`: which kind of preemption): it goes to the global
/// queue (Go's `gopreempt_m`; under PCT, back among the runnable threads by priority).
pub fn preempt_m(g: &'static G, why: Stop) -> ! {
    // A preempted thread holds no spin lock (whoever waits for it would spin for a thread that
    // does not run): every preemption path asks `G::preemptible` first; this says so if one did not.
    crate::sched::schedule::check_locks_at_switch(g, 0, "preemption");
    g.transition(crate::records::g::GState::Running, crate::records::g::GState::Runnable);
    crate::sched::explore::digest::stopped(this_cpu(), g, why);
    if crate::sched::explore::pct_active() {
        crate::sched::explore::pct::put(g);
    } else if g.pinned.load(Ordering::Relaxed) == crate::records::g::NOT_PINNED {
        crate::records::runq::GLOBAL.push(g);
        crate::sched::balance::wake_idle_cpu(this_cpu());
    } else {
        crate::sched::queue::runq_put(this_cpu(), g, false);
    }
    crate::sched::schedule::schedule()
}

/// Makes the interrupted thread call `async_preempt_entry` when the interrupt returns, if it
/// is preemptible and has room on its stack; says whether it did.
fn inject_async_preemption(frame: &mut TrapFrame) -> bool {
    let g = frame.interrupted();
    let (lo, _) = g.stack_bounds();
    let rsp = frame.rsp as usize;
    let preemptible = if crate::planted::is(crate::planted::Bug::AsyncPreemptSpinlock) {
        g.is_thread() && frame.interrupts_were_enabled() // planted: the lock depth is not asked
    } else {
        g.preemptible(frame.interrupts_were_enabled())
    };
    if !preemptible || rsp < lo + ASYNC_PREEMPT_STACK {
        this_cpu().counters.preempt_deferred.fetch_add(1, Ordering::Relaxed);
        crate::trace::deferred(g, true);
        return false;
    }
    let new_rsp = rsp - 8;
    // SAFETY: `new_rsp` is inside the thread's mapped stack (checked above), below its live
    // data (no red zone in the kernel ABI).
    unsafe { (new_rsp as *mut u64).write(frame.rip) };
    frame.rsp = new_rsp as u64;
    crate::sched::explore::replay::cover(frame.rip as usize);
    frame.rip = async_preempt_entry as *const () as u64;
    // The routine yields explicitly: keep its own prologue from taking the request first.
    g.stackguard0.store(g.real_guard(), Ordering::Relaxed);
    this_cpu().counters.preempt_async.fetch_add(1, Ordering::Relaxed);
    crate::trace::async_injected(g);
    true
}

/// Where an asynchronously preempted thread "calls" into the scheduler. The timer interrupt
/// pushed the interrupted `rip` onto the thread's stack and made the interrupt return here, so
/// this runs as the thread, on its stack, as if the interrupted instruction had called it.
///
/// Register contract: every register, including RFLAGS, holds the interrupted code's value and
/// is restored before returning to it; `[rsp]` = the interrupted `rip`. Builds a normal frame
/// (so backtraces pass through), saves everything, and calls `async_preempted`.
#[unsafe(naked)]
unsafe extern "C" fn async_preempt_entry() {
    core::arch::naked_asm!(
        "push rbp",
        "mov rbp, rsp",
        "pushfq",
        "push rax",
        "push rbx",
        "push rcx",
        "push rdx",
        "push rsi",
        "push rdi",
        "push r8",
        "push r9",
        "push r10",
        "push r11",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "and rsp, -16",
        "cld",
        "call {preempted}",
        "lea rsp, [rbp - 8 - 14 * 8]",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop r11",
        "pop r10",
        "pop r9",
        "pop r8",
        "pop rdi",
        "pop rsi",
        "pop rdx",
        "pop rcx",
        "pop rbx",
        "pop rax",
        "popfq",
        "pop rbp",
        "ret",
        preempted = sym async_preempted,
    )
}

/// Bytes an injected asynchronous preemption needs below the interrupted stack pointer
/// (return address, frame, flags, 14 registers, alignment, and the Rust call beyond).
pub const ASYNC_PREEMPT_STACK: usize = 512;

/// Called (as the thread) by `async_preempt_entry`: yield to the global queue if the request
/// is still pending.
///
/// Not instrumented: it runs wherever the timer interrupted the thread, possibly a few bytes above
/// its guard, so it must not take the prologue check (which would call that a stack overflow).
/// It needs only the `ASYNC_PREEMPT_STACK` bytes the injection checked for: everything it calls
/// is inlined, up to `mcall`, which switches to g0.
#[instrument_fn = "off"]
pub extern "C" fn async_preempted() {
    let g = current();
    if g.preempt.swap(false, Ordering::Relaxed) {
        g.stackguard0.store(g.real_guard(), Ordering::Relaxed);
        // SAFETY: called by a thread, which resumes here.
        unsafe { mcall(async_preempt_m) };
    }
}

extern "C" fn async_preempt_m(g: &'static G) -> ! {
    preempt_m(g, Stop::PreemptAsync)
}

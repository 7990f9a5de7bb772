//! Watching the scheduler from the timer interrupt of CPU 0: `schedtrace=MS` (Go's
//! `GODEBUG=schedtrace`) prints every MS milliseconds one line per CPU and one for the global
//! queue; `watchdog=SECONDS` stops a run that is not over by then with every thread's traceback
//! (the runner sets it a little before its own watchdog kills QEMU, so a hung test is reported
//! with the stacks of all threads, not just named).
//!
//! Both run in the interrupt handler, which may print (the console's lock is an `IrqSpinLock`)
//! and may stop the kernel (`fatal` works from anywhere). A CPU stuck with interrupts disabled
//! is beyond them: the runner's own watchdog still ends that run.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::fatal::backtrace::Backtrace;
use crate::records::percpu::{PerCpu, online_cpus};
use crate::records::trap_entry::TrapFrame;

/// The schedtrace period and the watchdog's deadline, in TSC units (0: off), and when the next
/// schedtrace line is due.
static SCHEDTRACE_PERIOD: AtomicU64 = AtomicU64::new(0);
static SCHEDTRACE_NEXT: AtomicU64 = AtomicU64::new(u64::MAX);
static WATCHDOG_AT: AtomicU64 = AtomicU64::new(0);
static WATCHDOG_SECONDS: AtomicU64 = AtomicU64::new(0);

/// Sets the schedtrace period (`ms`, 0: off) and the watchdog (`seconds` from now, 0: off).
/// Called once at boot, after the clock is calibrated.
pub fn configure(schedtrace_ms: u64, watchdog_seconds: u64) {
    let hz = crate::time::tsc_hz();
    let now = crate::arch::cpu::rdtsc();
    if schedtrace_ms > 0 {
        let period = hz / 1000 * schedtrace_ms;
        SCHEDTRACE_PERIOD.store(period, Ordering::Relaxed);
        SCHEDTRACE_NEXT.store(now + period, Ordering::Relaxed);
    }
    if watchdog_seconds > 0 {
        WATCHDOG_SECONDS.store(watchdog_seconds, Ordering::Relaxed);
        WATCHDOG_AT.store(now + hz * watchdog_seconds, Ordering::Relaxed);
    }
}

/// Called by the timer interrupt (`sched::preempt::timer_tick`) on every CPU; only CPU 0 acts.
#[inline(always)]
pub fn at_tick(cpu: &PerCpu, frame: &TrapFrame) {
    if cpu.id != 0 {
        return;
    }
    let now = crate::arch::cpu::rdtsc();
    if now >= SCHEDTRACE_NEXT.load(Ordering::Relaxed) {
        SCHEDTRACE_NEXT.store(now + SCHEDTRACE_PERIOD.load(Ordering::Relaxed), Ordering::Relaxed);
        schedtrace();
    }
    let deadline = WATCHDOG_AT.load(Ordering::Relaxed);
    if deadline != 0 && now >= deadline {
        watchdog_fired(frame);
    }
}

/// One schedtrace block: `SCHED 1000ms: global queue 0, threads 5`, then per CPU
/// `SCHED   cpu 0: runq 2 runnext 1 idle 0 switches 812 preempt 3/1 steals 4`.
fn schedtrace() {
    let ms = crate::time::now().as_millis();
    crate::println!(
        "SCHED {ms}ms: global queue {}, cpus {}",
        crate::records::runq::GLOBAL.len_hint(),
        crate::records::percpu::CPUS_ONLINE.load(Ordering::Relaxed)
    );
    for c in online_cpus() {
        let t = c.counters.snapshot();
        crate::println!(
            "SCHED   cpu {}: runq {} runnext {} idle {} switches {} preempt {}/{} steals {}",
            c.id,
            c.runq.len() - usize::from(c.runq.has_runnext()),
            u8::from(c.runq.has_runnext()),
            u8::from(c.idle.load(Ordering::Relaxed)),
            t.switches,
            t.preempt_coop,
            t.preempt_async,
            t.steals
        );
    }
}

#[cold]
fn watchdog_fired(frame: &TrapFrame) -> ! {
    let g = frame.interrupted();
    let (lo, hi) = g.stack_bounds();
    crate::fatal::fatal_with_trace(
        format_args!(
            "watchdog: the run did not finish within {} s (CPU 0 was running {})",
            WATCHDOG_SECONDS.load(Ordering::Relaxed),
            g
        ),
        &Backtrace::from_frame(frame.rip as usize, frame.rbp as usize, lo, hi),
    )
}

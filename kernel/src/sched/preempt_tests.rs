//! Tests of preemption and the prologue hook: the hook runs in every prologue, requests wait
//! while a spin lock is held, tight loops are preempted asynchronously (also at the very end of a
//! stack), always-preempt preempts at every prologue and exposes a planted race.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;

use crate::arch::cpu::IrqGuard;
use crate::ktest;
use crate::records::percpu::totals;
use crate::records::percpu::{current, this_cpu};
use crate::sched::{spawn, yield_now};
use crate::sync::{Chan, chan};

/// Spins until `stop` without calling anything: no prologue, so only an asynchronous
/// preemption can take the CPU away.
fn spin_until(stop: &AtomicBool) -> u64 {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n = n.wrapping_add(1);
        core::hint::spin_loop();
    }
    n
}

ktest! {
    /// Tight loops without calls (one per CPU) do not starve a ping-pong pair: the timer
    /// preempts them asynchronously, and both make progress.
    fn tight_loops_are_preempted_asynchronously() {
        if crate::sched::preempt::mode() != crate::sched::preempt::Mode::Async {
            crate::ktest_skip!("needs asynchronous preemption (preempt=async, the default)");
        }
        static STOP: AtomicBool = AtomicBool::new(false);
        static SPINNING: AtomicU64 = AtomicU64::new(0);
        STOP.store(false, Ordering::SeqCst);
        SPINNING.store(0, Ordering::SeqCst);
        let before = totals();
        let cpus = crate::records::percpu::CPUS_ONLINE.load(Ordering::Relaxed);
        let spinners: Vec<_> = (0..cpus)
            .map(|_| {
                spawn("spinner", || {
                    SPINNING.fetch_add(1, Ordering::SeqCst);
                    spin_until(&STOP)
                })
            })
            .collect();
        // Every CPU is taken by a spinner once all have started: from here on this thread runs
        // only when the timer takes a CPU away from a spinner.
        while SPINNING.load(Ordering::SeqCst) < u64::from(cpus) {
            yield_now();
        }
        let (ping, pong): (Chan<u32>, Chan<u32>) = (chan(0), chan(0));
        let echo = {
            let (ping, pong) = (ping.clone(), pong.clone());
            spawn("echo", move || {
                while let Some(v) = ping.recv() {
                    pong.send(v);
                }
            })
        };
        for i in 0..200 {
            ping.send(i);
            assert_eq!(pong.recv(), Some(i));
        }
        ping.close();
        echo.join().expect("echo");
        STOP.store(true, Ordering::SeqCst);
        for s in spinners {
            s.join().expect("spinner");
        }
        let after = totals().since(&before);
        crate::println!("async preemptions: {}, cooperative: {}", after.preempt_async, after.preempt_coop);
        assert!(after.preempt_async > 0, "no asynchronous preemption happened");
    }
}

/// A chain of `n` calls. Each level calls the next through a function pointer the optimiser
/// cannot see through (`black_box`), so the release build cannot turn the recursion into a loop
/// (it did, with a plain recursive call: "a chain of 10 calls entered the hook 1 times").
#[inline(never)]
fn chain(n: u32) -> u32 {
    if n <= 1 { core::hint::black_box(n) } else { core::hint::black_box(chain as fn(u32) -> u32)(n - 1) + 1 }
}

/// Runs `chain(n)` in count mode and returns (its result, the prologues counted).
fn count_chain(n: u32) -> (u32, u64) {
    let _irq = IrqGuard::new(); // no timer request may replace the count poison
    let cpu = this_cpu();
    let before = cpu.counters.hook_counted.load(Ordering::Relaxed);
    crate::sched::stackguard::count_start();
    let r = chain(n);
    crate::sched::stackguard::count_stop();
    (r, cpu.counters.hook_counted.load(Ordering::Relaxed) - before)
}

ktest! {
    /// Hook coverage (like Go's test of its hook): a chain of N non-inlined calls enters the
    /// prologue hook exactly N times.
    fn hook_runs_in_every_prologue() {
        if cfg!(prologue_plain) {
            crate::ktest_skip!("the uninstrumented build has no prologue hook");
        }
        for n in [1u32, 10, 100] {
            // Counted with interrupts off, checked after (a failed check must not be fatal).
            let (r, counted) = count_chain(n);
            assert_eq!(r, n);
            assert_eq!(counted, u64::from(n), "a chain of {n} calls entered the hook {counted} times");
        }
    }
}

/// A non-inlined call that does nothing: a prologue, a check.
#[inline(never)]
fn opaque(x: u64) -> u64 {
    core::hint::black_box(x)
}

ktest! {
    /// A preemption request that arrives while a spin lock is held is deferred at every
    /// prologue (the deferred counter rises), then taken right after the lock is released,
    /// and nothing deadlocks.
    fn spin_lock_defers_preemption() {
        static LOCK: crate::records::spin::SpinLock<u64> =
            crate::records::spin::SpinLock::new(crate::records::spin::Rank::Object, 0);
        let before = totals();
        let (deferred, still_pending) = {
            let mut guard = LOCK.lock();
            let cpu = this_cpu(); // pinned: we hold a spin lock
            // Stamped now: an asynchronous injection is due only a quantum later, so the request is
            // still there, untouched, when the lock is released a few microseconds from here.
            current().request_preempt(cpu.ticks.load(Ordering::Relaxed));
            let d0 = cpu.counters.preempt_deferred.load(Ordering::Relaxed);
            for i in 0..100 {
                *guard += opaque(i);
            }
            let deferred = cpu.counters.preempt_deferred.load(Ordering::Relaxed) - d0;
            (deferred, current().preempt.load(Ordering::Relaxed))
        };
        // Each deferral restores the real guard; only always-preempt poisons it again at every
        // prologue. Either way the request must survive until the release.
        let expected = if cfg!(feature = "always-preempt") { 100 } else { 1 };
        assert!(deferred >= expected, "only {deferred} deferrals for 100 calls under the lock");
        assert!(still_pending, "the request was lost while the lock was held");
        opaque(1); // the re-armed request fires at this prologue
        assert!(!current().preempt.load(Ordering::Relaxed), "the request was not taken after release");
        let after = totals().since(&before);
        assert!(after.preempt_coop >= 1, "no cooperative preemption after the release");
    }
}

ktest! {
    /// Under always-preempt, every prologue of a preemptible thread is a preemption; g0 and
    /// the interrupt contexts are never poisoned.
    fn every_prologue_preempts_under_always_preempt() {
        if !cfg!(feature = "always-preempt") {
            crate::ktest_skip!("checks the always-preempt build (--features always-preempt)");
        }
        const CALLS: u64 = 1000;
        let before = totals();
        let mut sum = 0;
        for i in 0..CALLS {
            sum += opaque(i);
        }
        let after = totals().since(&before);
        assert_eq!(sum, CALLS * (CALLS - 1) / 2);
        assert!(after.preempt_coop >= CALLS, "{} preemptions for {CALLS} prologues", after.preempt_coop);
        for cpu in crate::records::percpu::online_cpus() {
            for g in [cpu.g0(), cpu.gintr()] {
                assert!(!g.guard_poisoned() && !g.preempt.load(Ordering::Relaxed), "a system context was asked to yield");
            }
        }
    }
}

/// The planted race: `load; call; store` on a shared counter, by two threads.
fn racy_increments(counter: &'static AtomicU64, n: u64) {
    for _ in 0..n {
        let v = counter.load(Ordering::Relaxed);
        let v = opaque(v); // a prologue: a preemption point under always-preempt
        counter.store(v + 1, Ordering::Relaxed);
    }
}

ktest! {
    /// A lost update planted between a load and a store across a call: always-preempt makes it
    /// appear in every run; the normal build reports how often it appears. (Only bounds hold in
    /// general: a thread that read an old value can overwrite many of the other's updates, so the
    /// total can be as low as 2, never above 2N.)
    fn planted_race_is_caught() {
        const N: u64 = 10_000;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        COUNTER.store(0, Ordering::SeqCst);
        let a = spawn("racer-a", || racy_increments(&COUNTER, N));
        let b = spawn("racer-b", || racy_increments(&COUNTER, N));
        a.join().expect("racer a");
        b.join().expect("racer b");
        let total = COUNTER.load(Ordering::SeqCst);
        let lost = 2 * N - total;
        crate::println!("planted race: {lost} of {} updates lost", 2 * N);
        assert!((2..=2 * N).contains(&total), "{total} after 2 x {N} increments: outside 2..=2N");
        if cfg!(feature = "always-preempt") {
            assert!(lost > 0, "always-preempt must expose the lost update");
        }
    }
}

ktest! {
    /// A thread spinning without calls just above the lowest stack pointer its prologue checks
    /// accept is preempted asynchronously and resumes: the injected routine needs a little room of
    /// its own, not the 2 KiB guard zone, so the thread is not mistaken for an overflow.
    fn async_preemption_near_the_end_of_the_stack() {
        if crate::sched::preempt::mode() != crate::sched::preempt::Mode::Async {
            crate::ktest_skip!("needs asynchronous preemption (preempt=async, the default)");
        }
        // Long enough for a request (one quantum) and then an injection (a quantum later), with
        // room for a slice that started before the spin and for TCG's uneven ticks (four quanta
        // were too few at --smp 2 in the release build).
        let spin = 10 * Duration::from_millis(10).as_nanos() as u64 * crate::time::tsc_hz() / 1_000_000_000;
        for depth in [96, 160] {
            let before = totals();
            let t = spawn("deep-spinner", move || {
                crate::ktest::helpers::at_stack_depth(depth, || {
                    let end = crate::arch::cpu::rdtsc() + spin;
                    while crate::arch::cpu::rdtsc() < end {
                        core::hint::spin_loop();
                    }
                })
            });
            if let Err(death) = t.join() {
                panic!("a healthy thread spinning {depth} bytes above the end of its stack died: {death}");
            }
            assert!(totals().since(&before).preempt_async > 0, "no asynchronous preemption happened");
        }
    }
}

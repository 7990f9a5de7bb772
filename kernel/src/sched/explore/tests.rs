//! Tests of the schedule explorer's strategies. Those that schedule by PCT need one CPU (the
//! `always-preempt-smp1` configuration runs this module); each test restores the strategy the
//! boot chose when it ends.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{Strategy, pct};
use crate::ktest::helpers::under_strategy;
use crate::records::percpu::{current, this_cpu_unchecked};
use crate::sched::preempt::{self, Mode};

/// A prologue and nothing else: one scheduling point per call.
#[inline(never)]
fn step(v: u64) -> u64 {
    core::hint::black_box(v) + 1
}

crate::ktest! {
    /// The words of `strategy=`, good and bad.
    fn strategy_words_parse() {
        assert_eq!(Strategy::parse("every"), Ok(Strategy::Every));
        assert_eq!(Strategy::parse("random:64"), Ok(Strategy::Random { one_in: 64 }));
        assert_eq!(Strategy::parse("async:50000"), Ok(Strategy::Async { mean_instructions: 50_000 }));
        assert_eq!(Strategy::parse("pct:3"), Ok(Strategy::Pct { depth: 3 }));
        for bad in ["random:0", "random:x", "pct:x", "pct:0", "pct:17", "async:10", "every:2", "sometimes", ""] {
            assert!(Strategy::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}

crate::ktest! {
    /// `random:N` preempts at a rate within 3 sigma of 1/N over 100,000 prologues of one thread.
    fn random_preempts_at_its_rate() {
        if !cfg!(feature = "always-preempt") {
            crate::ktest_skip!("checks the forced-preemption build (--features always-preempt)");
        }
        const N: u64 = 50;
        let g = current();
        let (prologues, forced) = under_strategy(Strategy::Random { one_in: N }, 7, || {
            let (p0, f0) = (g.explore.prologues.load(Ordering::Relaxed), g.explore.forced.load(Ordering::Relaxed));
            let mut v = 0;
            for _ in 0..100_000 {
                v = step(v);
            }
            core::hint::black_box(v);
            (g.explore.prologues.load(Ordering::Relaxed) - p0, g.explore.forced.load(Ordering::Relaxed) - f0)
        });
        let p = 1.0 / N as f64;
        let mean = prologues as f64 * p;
        let sigma = libm::sqrt(prologues as f64 * p * (1.0 - p));
        assert!(prologues >= 100_000, "only {prologues} prologues counted");
        assert!(
            libm::fabs(forced as f64 - mean) <= 3.0 * sigma + 1.0,
            "{forced} forced preemptions over {prologues} prologues; expected {mean:.0} +- {:.0}",
            3.0 * sigma
        );
    }
}

/// Load, a window of about 400 instructions with no call in it, store: a lost update needs a
/// preemption inside the window, which no prologue can give.
#[inline(never)]
fn racy_increment(counter: &AtomicU64) {
    let v = counter.load(Ordering::Relaxed);
    // SAFETY: a register-only countdown loop; touches nothing but rcx and the flags.
    unsafe { core::arch::asm!("mov ecx, 200", "2:", "dec ecx", "jnz 2b", out("ecx") _, options(nomem, nostack)) };
    counter.store(v + 1, Ordering::Relaxed);
}

/// Two threads pinned to CPU 0 each do `rounds` racy increments; returns the updates lost.
fn lost_updates(rounds: u64) -> u64 {
    let counter = Arc::new(AtomicU64::new(0));
    let workers: alloc::vec::Vec<_> = (0..2)
        .map(|_| {
            let counter = Arc::clone(&counter);
            crate::sched::spawn_on(0, "racy", move || {
                for _ in 0..rounds {
                    racy_increment(&counter);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("racy worker");
    }
    2 * rounds - counter.load(Ordering::Relaxed)
}

crate::ktest! {
    /// `async:N` lands inside a call-free window; the prologue strategies cannot, however often
    /// they preempt (the timer's own injections are switched off for the comparison).
    fn async_reaches_a_window_without_calls() {
        if !cfg!(feature = "always-preempt") {
            crate::ktest_skip!("checks the forced-preemption build (--features always-preempt)");
        }
        let mode = preempt::mode();
        preempt::set_mode(Mode::Coop);
        let before = crate::records::percpu::totals();
        let every = under_strategy(Strategy::Every, 3, || lost_updates(5_000));
        let random = under_strategy(Strategy::Random { one_in: 3 }, 3, || lost_updates(5_000));
        let forced = crate::records::percpu::totals().since(&before).forced_preempts;
        let injections_before = crate::records::percpu::totals().explore_injections;
        let by_async = under_strategy(Strategy::Async { mean_instructions: 20_000 }, 3, || lost_updates(20_000));
        let injections = crate::records::percpu::totals().explore_injections - injections_before;
        preempt::set_mode(mode);
        assert!(forced > 1_000, "the prologue strategies preempted only {forced} times");
        assert_eq!((every, random), (0, 0), "a prologue strategy lost updates: it preempted inside the window");
        assert!(injections > 0, "async:N injected nothing");
        assert!(by_async > 0, "async:N never landed inside the window ({injections} injections)");
    }
}

/// Skips the running test unless PCT can run here (the forced-preemption build, one CPU).
macro_rules! needs_pct {
    () => {
        if !cfg!(feature = "always-preempt") {
            crate::ktest_skip!("checks the forced-preemption build (--features always-preempt)");
        }
        let online = crate::records::percpu::CPUS_ONLINE.load(Ordering::Relaxed);
        if online != 1 {
            crate::ktest_skip!("PCT schedules one CPU; this boot has {}", online);
        }
    };
}

/// Runs `trials` seeds of a scenario under `pct:depth` with change points over `horizon` steps;
/// returns the seeds that hit the bug and the largest (threads, steps) of a trial.
fn pct_trials(depth: u32, horizon: u64, trials: u64, scenario: fn() -> bool) -> (u64, u64, u64) {
    let (mut hits, mut threads, mut steps) = (0, 0, 0);
    for seed in 0..trials {
        under_strategy(Strategy::Pct { depth }, seed + 1, || {
            let spawns = crate::records::percpu::totals().spawns;
            pct::plan(this_cpu_unchecked(), depth, horizon, spawns, current());
            hits += scenario() as u64;
            let (k, n, _, _) = pct::run_figures(crate::records::percpu::totals().spawns);
            threads = threads.max(n);
            steps = steps.max(k);
        });
    }
    (hits, threads, steps)
}

/// Depth 1: `reader` must run after `writer` has written, but nothing orders them. The reader is
/// spawned first.
fn ordering_bug() -> bool {
    let written = Arc::new(AtomicBool::new(false));
    let seen_early = Arc::new(AtomicBool::new(false));
    let (w, s) = (Arc::clone(&written), Arc::clone(&seen_early));
    let reader = crate::sched::spawn("reader", move || {
        step(0);
        s.store(!w.load(Ordering::Relaxed), Ordering::Relaxed);
    });
    let w = Arc::clone(&written);
    let writer = crate::sched::spawn("writer", move || {
        step(0);
        w.store(true, Ordering::Relaxed);
    });
    reader.join().expect("reader");
    writer.join().expect("writer");
    seen_early.load(Ordering::Relaxed)
}

/// Depth 2: the writer sets 1, does 100 steps, sets 2; the bug is a reader that sees 1, which
/// needs the writer preempted inside its window (a change point) after it wrote 1.
fn atomicity_bug() -> bool {
    let value = Arc::new(AtomicU64::new(0));
    let (v, r) = (Arc::clone(&value), Arc::clone(&value));
    let writer = crate::sched::spawn("writer", move || {
        v.store(1, Ordering::Relaxed);
        let mut x = 0;
        for _ in 0..100 {
            x = step(x);
        }
        v.store(1 + x / 100, Ordering::Relaxed);
    });
    let reader = crate::sched::spawn("reader", move || r.load(Ordering::Relaxed) == 1);
    writer.join().expect("writer");
    reader.join().expect("reader")
}

crate::ktest! {
    /// `pct:1` hits a depth-1 ordering bug and `pct:2` a depth-2 one, over 200 seeds each, at
    /// least as often as PCT's bound 1/(n*k^(D-1)) promises.
    fn pct_meets_its_bound() {
        needs_pct!();
        let (hits, n, _) = pct_trials(1, 1, 200, ordering_bug);
        let bound = pct::bound(n, 1, 1);
        assert!(hits as f64 / 200.0 >= bound, "depth 1: {hits}/200 hits, below the bound {bound:.3} (n = {n})");
        // Depth 2: the change point is drawn over the steps a trial takes (measured once).
        let (_, _, k) = pct_trials(1, 1, 1, atomicity_bug);
        let (hits2, n2, k2) = pct_trials(2, k, 200, atomicity_bug);
        let bound2 = pct::bound(n2, k2.max(k), 2);
        assert!(hits2 > 0, "depth 2: no seed of 200 hit the bug (n = {n2}, k = {k2})");
        assert!(hits2 as f64 / 200.0 >= bound2, "depth 2: {hits2}/200 hits, below the bound {bound2:.2e} (n = {n2}, k = {k2})");
    }
}

crate::ktest! {
    /// A planted race for the replay and shrink tests: two threads on one CPU increment a counter
    /// with its load and store on either side of a call; a preemption at that call loses an
    /// update, and the test fails saying how many. It runs only when asked for with
    /// `inject=ktest-lost-update` (it fails by design).
    fn a_planted_lost_update() {
        if crate::cmdline().inject != "ktest-lost-update" {
            crate::ktest_skip!("a planted race that fails by design: run it with inject=ktest-lost-update");
        }
        let counter = Arc::new(AtomicU64::new(0));
        // Both start together (else the first may be done before the second is even spawned).
        let go = Arc::new(AtomicBool::new(false));
        const ROUNDS: u64 = 200;
        let workers: alloc::vec::Vec<_> = (0..2)
            .map(|_| {
                let (counter, go) = (Arc::clone(&counter), Arc::clone(&go));
                crate::sched::spawn_on(0, "incrementer", move || {
                    while !go.load(Ordering::Acquire) {
                        crate::sched::yield_now();
                    }
                    for _ in 0..ROUNDS {
                        let v = counter.load(Ordering::Relaxed);
                        counter.store(step(v), Ordering::Relaxed);
                    }
                })
            })
            .collect();
        go.store(true, Ordering::Release);
        for w in workers {
            w.join().expect("incrementer");
        }
        let lost = 2 * ROUNDS - counter.load(Ordering::Relaxed);
        assert_eq!(lost, 0, "{lost} update(s) lost: a preemption between the load and the store");
    }
}

crate::ktest! {
    /// The fixed-point logarithm behind `random:N`'s draws, against exact values.
    fn fixed_point_logarithm() {
        let one = 1u64 << super::LOG_BITS;
        assert_eq!(super::neg_log2(1 << 63), one, "-log2(1/2) = 1");
        assert_eq!(super::neg_log2(1 << 62), 2 * one, "-log2(1/4) = 2");
        // -log2(3/4) = 0.415037499...
        let got = super::neg_log2(3 << 62) as f64 / one as f64;
        assert!(libm::fabs(got - 0.415_037_499_278_843_8) < 1e-9, "{got}");
    }
}

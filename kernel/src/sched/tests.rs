//! Tests of threads, the scheduler, preemption and the stack guards.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::arch::cpu::IrqGuard;
use crate::ktest;
use crate::ktest::baseline::Baseline;
use crate::sched::counters::totals;
use crate::sched::percpu::{current, this_cpu};
use crate::sched::thread::Death;
use crate::sched::{spawn, yield_now};
use crate::sync::{Chan, chan};

ktest! {
    /// 10,000 threads, spawned and joined, each returning a value that is checked.
    fn ten_thousand_threads() {
        let base = Baseline::take();
        let threads: Vec<_> = (0..10_000u64).map(|i| spawn("worker", move || i * i + 1)).collect();
        for (i, t) in threads.into_iter().enumerate() {
            let i = i as u64;
            assert_eq!(t.join().expect("worker"), i * i + 1);
        }
        base.assert_restored();
    }
}

ktest! {
    /// A big result (over the inline slot) travels through the join handle intact.
    fn large_results_are_returned() {
        let t = spawn("big", || [7u64; 64]);
        assert_eq!(t.join().expect("big"), [7u64; 64]);
    }
}

ktest! {
    /// A panicking thread is reported, its join returns the panic, and the others finish.
    fn a_panicking_thread_dies_alone() {
        let threads: Vec<_> = (0..8u64)
            .map(|i| {
                spawn("maybe-panics", move || {
                    yield_now();
                    if i == 3 {
                        panic!("thread {i} gives up");
                    }
                    i
                })
            })
            .collect();
        for (i, t) in threads.into_iter().enumerate() {
            match (i, t.join()) {
                (3, Err(Death::Panic(msg))) => assert_eq!(msg, "thread 3 gives up"),
                (3, other) => panic!("thread 3 should have panicked: {other:?}"),
                (i, result) => assert_eq!(result, Ok(i as u64)),
            }
        }
    }
}

ktest! {
    /// yield_now goes through the scheduler every time (K yields of two threads cost at least
    /// 2K switches) and lets the other runnable thread run in between.
    fn yield_interleaves_threads() {
        const K: usize = 5;
        let before = totals();
        let log: Chan<u32> = chan(64);
        let threads: Vec<_> = (0..2u32)
            .map(|id| {
                let log = log.clone();
                spawn("yielder", move || {
                    for _ in 0..K {
                        log.send(id);
                        yield_now();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("yielder");
        }
        let mut seen = Vec::new();
        while let Ok(Some(v)) = log.try_recv() {
            seen.push(v);
        }
        assert_eq!(seen.len(), 2 * K);
        assert!(seen.windows(2).any(|w| w[0] != w[1]), "the yielding threads did not interleave: {seen:?}");
        let switches = totals().since(&before).switches;
        assert!(switches >= 2 * K as u64, "{switches} switches for {} yields", 2 * K);
    }
}

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
        let cpus = crate::sched::percpu::CPUS_ONLINE.load(Ordering::Relaxed);
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

/// Recurses until the stack overflows (the depth bound is never reached).
#[inline(never)]
fn recurse_forever(depth: u64) -> u64 {
    let pad = core::hint::black_box([depth; 16]);
    if depth == u64::MAX { 0 } else { recurse_forever(depth + 1).wrapping_add(pad[depth as usize % 16]) }
}

ktest! {
    /// The test framework's own expectation: a test may declare that its thread must overflow.
    #[expect(stack_overflow)]
    fn an_overflowing_test_is_an_expected_death() {
        core::hint::black_box(recurse_forever(0));
    }
}

ktest! {
    /// Deep recursion in a thread: it dies with a stack-overflow report (naming it and, after
    /// symbolization, the recursing function), other threads finish, memory comes back.
    fn deep_recursion_overflows_alone() {
        let base = Baseline::take();
        let others: Vec<_> = (0..3u64)
            .map(|i| {
                spawn("bystander", move || {
                    for _ in 0..20 {
                        yield_now();
                    }
                    i
                })
            })
            .collect();
        let recurser = spawn("recurser", || recurse_forever(0));
        match recurser.join() {
            Err(Death::StackOverflow { rsp, lo, .. }) => assert!(rsp >= lo, "caught inside the stack"),
            other => panic!("expected a stack overflow, got {other:?}"),
        }
        for (i, t) in others.into_iter().enumerate() {
            assert_eq!(t.join(), Ok(i as u64));
        }
        base.assert_restored();
    }
}

/// Recurses until the stack pointer is at or below `target`, then calls `then`.
#[inline(never)]
fn recurse_down_to(target: usize, then: fn() -> u64) -> u64 {
    let pad = core::hint::black_box([target as u64; 16]);
    if crate::arch::cpu::read_rsp() <= target { then() } else { recurse_down_to(target, then).wrapping_add(pad[3]) }
}

/// Uses `bytes` more of the stack by recursion, then calls `then`.
fn use_stack(bytes: usize, then: fn() -> u64) -> u64 {
    recurse_down_to(crate::arch::cpu::read_rsp() - bytes, then)
}

/// Touches a 64 KiB local array.
#[inline(never)]
fn big_frame() -> u64 {
    let mut big = [0u8; 64 * 1024];
    for (i, b) in big.iter_mut().enumerate().step_by(512) {
        *b = i as u8;
    }
    core::hint::black_box(&mut big);
    big.iter().map(|&b| u64::from(b)).sum()
}

ktest! {
    /// A 64 KiB local array in a fresh thread grows the stack through the page-fault path
    /// (the frame skips the prologue check's guard zone) and completes.
    fn large_frame_grows_the_stack() {
        let base = Baseline::take();
        let before = totals().fault_growths;
        let sum = spawn("big-frame", big_frame).join().expect("big frame completes");
        assert_eq!(sum, (0..64 * 1024usize).step_by(512).map(|i| (i as u8) as u64).sum());
        assert!(totals().fault_growths > before, "the page-fault path did not grow the stack");
        base.assert_restored();
    }
}

ktest! {
    /// A 64 KiB frame on a stack whose reservation is nearly used up jumps past the software
    /// check into the guard page: the same overflow report and outcome.
    fn large_frame_past_the_reservation_overflows() {
        let (reserve, _) = crate::mm::stack::thread_stack_sizes();
        let t = spawn("big-frame-deep", move || use_stack(reserve - 48 * 1024, big_frame));
        assert!(matches!(t.join(), Err(Death::StackOverflow { .. })), "expected a stack overflow");
    }
}

ktest! {
    /// Recursion to 200 KiB grows the stack step by step and returns; recursion past the
    /// reservation dies with an overflow; memory comes back after both.
    fn recursion_grows_the_stack_in_place() {
        let base = Baseline::take();
        let grower = spawn("grower", || {
            let r = use_stack(200 * 1024, || 1);
            (r, current().stack_growths.load(Ordering::Relaxed), current().stack_bounds())
        });
        let (_, growths, (lo, hi)) = grower.join().expect("the grower returns");
        assert!(growths >= 3, "only {growths} growth steps for 200 KiB");
        assert!(hi - lo >= 200 * 1024, "mapped only {} bytes", hi - lo);
        let (reserve, _) = crate::mm::stack::thread_stack_sizes();
        let too_deep = spawn("too-deep", move || use_stack(reserve + 4096, || 1));
        assert!(matches!(too_deep.join(), Err(Death::StackOverflow { .. })));
        base.assert_restored();
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
        static LOCK: crate::sync::spin::SpinLock<u64> =
            crate::sync::spin::SpinLock::new(crate::sync::spin::Rank::Object, 0);
        let before = totals();
        let (deferred, still_pending) = {
            let mut guard = LOCK.lock();
            let cpu = this_cpu(); // pinned: we hold a spin lock
            current().request_preempt(0);
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
        for cpu in crate::sched::percpu::online_cpus() {
            for g in [cpu.g0(), cpu.current_gintr()] {
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
    /// appear in every run; the normal build reports how often it appears.
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
        assert!((N..=2 * N).contains(&total));
        if cfg!(feature = "always-preempt") {
            assert!(lost > 0, "always-preempt must expose the lost update");
        }
    }
}

ktest! {
    /// 100,000 threads alive at once, each parked on a channel; all released and joined;
    /// memory comes back. Prints the memory cost of an idle thread.
    fn hundred_thousand_idle_threads() {
        const N: usize = 100_000;
        // About 5 KiB each: skip clearly rather than run out of memory half-way.
        let free = crate::mm::frame::stats().free * crate::mm::layout::PAGE_SIZE;
        if free < 700 << 20 {
            crate::ktest_skip!("needs a 1 GiB guest (--memory 1024): only {} MiB free", free >> 20);
        }
        let base = Baseline::take();
        let before = crate::ktest::baseline::memory_in_use();
        let gate: Chan<()> = chan(0);
        let mut threads = Vec::with_capacity(N);
        for _ in 0..N {
            let gate = gate.clone();
            threads.push(spawn("idle", move || gate.recv().is_none()));
        }
        while gate.waiting_receivers() < N {
            crate::sched::sleep(core::time::Duration::from_millis(10));
        }
        let bytes = crate::ktest::baseline::memory_in_use() - before;
        crate::println!("{N} idle threads: {} bytes per thread (stack pages, page tables, records)", bytes / N);
        gate.close();
        for t in threads {
            assert_eq!(t.join(), Ok(true));
        }
        drop(gate);
        base.assert_restored();
    }
}

//! Tests of threads, the scheduler, preemption and the stack guards.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::ktest;
use crate::ktest::baseline::Baseline;
use crate::ktest::helpers::{big_frame, use_stack, use_stack_then};
use crate::records::percpu::current;
use crate::records::percpu::totals;
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

/// Iterations each yielder makes.
const YIELDS: u64 = 50;
/// How far each of the two yielders got.
static YIELDER_PROGRESS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// What one yielder saw across its yields.
#[derive(Debug, PartialEq)]
struct YieldsSeen {
    /// Yields across which the other yielder was in progress (started, not finished).
    checked: u64,
    /// Checked yields after which the other had not moved.
    missed: u64,
}

/// How many yielders have started (the gate both pass before their loops).
static YIELDERS_STARTED: AtomicU64 = AtomicU64::new(0);

/// One of the two yielders: waits until both have started (else, with the spawner preempted
/// between its two spawns, the first could run all its yields alone), then counts its
/// iterations and, across each `yield_now`, checks that the other one (started, not finished) ran.
fn yielder(me: usize) -> YieldsSeen {
    YIELDERS_STARTED.fetch_add(1, Ordering::SeqCst);
    while YIELDERS_STARTED.load(Ordering::SeqCst) < 2 {
        yield_now();
    }
    let other = &YIELDER_PROGRESS[1 - me];
    let mut seen = YieldsSeen { checked: 0, missed: 0 };
    for _ in 0..YIELDS {
        YIELDER_PROGRESS[me].fetch_add(1, Ordering::SeqCst);
        let before = other.load(Ordering::SeqCst);
        yield_now();
        if before > 0 && before < YIELDS {
            seen.checked += 1;
            if other.load(Ordering::SeqCst) == before {
                seen.missed += 1;
            }
        }
    }
    seen
}

ktest! {
    /// yield_now goes through the scheduler every time (two threads' yields cost at least as
    /// many switches) and lets the other runnable thread run: two threads pinned to one CPU see
    /// each other make progress across every yield.
    fn yield_interleaves_threads() {
        for p in &YIELDER_PROGRESS {
            p.store(0, Ordering::SeqCst);
        }
        YIELDERS_STARTED.store(0, Ordering::SeqCst);
        let before = totals();
        let threads: Vec<_> = (0..2).map(|me| crate::sched::spawn_on(0, "yielder", move || yielder(me))).collect();
        for (me, t) in threads.into_iter().enumerate() {
            let seen = t.join().expect("yielder");
            // Alternating, each sees the other in progress across all but its first or last
            // yields; at least half of them even when forced preemptions (always-preempt) add
            // switches and let the other finish a few turns early. A yield that does not switch
            // leaves none: one thread runs to its end before the other starts.
            assert!(
                seen.checked >= YIELDS / 2,
                "yielder {me} saw the other in progress across only {} of its {YIELDS} yields: they did not alternate",
                seen.checked
            );
            assert_eq!(seen.missed, 0, "yielder {me}: yields after which the other (runnable) thread had not run");
        }
        let switches = totals().since(&before).switches;
        assert!(switches >= 2 * YIELDS, "{switches} switches for {} yields", 2 * YIELDS);
    }
}

ktest! {
    /// A pinned thread that polls with yield_now does not starve the other threads of its CPU:
    /// a thread it readies there runs and sets the flag the poller waits for.
    fn a_pinned_yielding_thread_does_not_starve_its_cpu() {
        const POLLS: u64 = 100_000;
        static FLAG: AtomicBool = AtomicBool::new(false);
        FLAG.store(false, Ordering::SeqCst);
        let poller = crate::sched::spawn_on(0, "pinned-poller", || {
            // Queued on this CPU (its runnext), not pinned.
            let setter = spawn("flag-setter", || FLAG.store(true, Ordering::SeqCst));
            let mut polls = 0;
            while !FLAG.load(Ordering::SeqCst) && polls < POLLS {
                yield_now();
                polls += 1;
            }
            let set = FLAG.load(Ordering::SeqCst);
            setter.join().expect("the setter");
            (set, polls)
        });
        let (set, polls) = poller.join().expect("the poller");
        assert!(set, "the flag was never set: {polls} yields of a pinned thread starved its CPU's other thread");
    }
}

ktest! {
    /// A detached thread's result is dropped by the thread itself, never on g0 (which must not
    /// block): a result whose drop sleeps and sends on a channel is dropped, and its drop ran.
    fn a_detached_threads_result_is_dropped_by_the_thread() {
        struct Parting(Chan<u64>);
        impl Drop for Parting {
            fn drop(&mut self) {
                crate::sched::sleep(core::time::Duration::from_millis(1));
                self.0.send(7);
            }
        }
        let done: Chan<u64> = chan(1);
        let gate: Chan<()> = chan(0);
        let t = {
            let (done, gate) = (done.clone(), gate.clone());
            spawn("detached", move || {
                gate.recv();
                Parting(done)
            })
        };
        drop(t); // detached before it finishes
        gate.send(());
        let got = crate::ktest::helpers::recv_within(&done, core::time::Duration::from_secs(2));
        assert_eq!(got, Some(7), "the detached result's drop did not run");
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
        let t = spawn("big-frame-deep", move || use_stack_then(reserve - 48 * 1024, big_frame));
        assert!(matches!(t.join(), Err(Death::StackOverflow { .. })), "expected a stack overflow");
    }
}

ktest! {
    /// Recursion to 200 KiB grows the stack step by step and returns; recursion past the
    /// reservation dies with an overflow; memory comes back after both.
    fn recursion_grows_the_stack_in_place() {
        let base = Baseline::take();
        let grower = spawn("grower", || {
            let r = use_stack(200 * 1024);
            (r, current().stack_growths.load(Ordering::Relaxed), current().stack_bounds())
        });
        let (_, growths, (lo, hi)) = grower.join().expect("the grower returns");
        assert!(growths >= 3, "only {growths} growth steps for 200 KiB");
        assert!(hi - lo >= 200 * 1024, "mapped only {} bytes", hi - lo);
        let (reserve, _) = crate::mm::stack::thread_stack_sizes();
        let too_deep = spawn("too-deep", move || use_stack(reserve + 4096));
        assert!(matches!(too_deep.join(), Err(Death::StackOverflow { .. })));
        base.assert_restored();
    }
}

/// A chain of `n` calls with a 128-byte pad in each frame: about 40 KiB of stack for 256 calls,
/// one prologue per call (the next call goes through a pointer the optimiser cannot follow).
#[inline(never)]
fn padded_chain(n: u32) -> u32 {
    let pad = core::hint::black_box([u64::from(n); 16]);
    if n <= 1 {
        return 1;
    }
    let r = core::hint::black_box(padded_chain as fn(u32) -> u32)(n - 1) + 1;
    core::hint::black_box(&pad);
    r
}

ktest! {
    /// A growth step keeps a poisoned guard: in count mode (the guard poisoned with
    /// `STACK_COUNT`, so that every prologue enters the slow path and is counted) a chain of calls
    /// whose stack grows under it still has every one of its prologues counted, after the
    /// growth as before it.
    fn a_growth_keeps_a_poisoned_guard() {
        const N: u32 = 256;
        let t = spawn("count-grower", || {
            let _irq = crate::arch::cpu::IrqGuard::new(); // no timer request may replace the poison
            let cpu = crate::records::percpu::this_cpu();
            let (counted, growths) = (cpu.counters.hook_counted.load(Ordering::Relaxed), current().stack_growths.load(Ordering::Relaxed));
            crate::sched::stackguard::count_start();
            let r = padded_chain(N);
            crate::sched::stackguard::count_stop();
            let counted = cpu.counters.hook_counted.load(Ordering::Relaxed) - counted;
            (r, counted, current().stack_growths.load(Ordering::Relaxed) - growths)
        });
        let (r, counted, growths) = t.join().expect("the counting thread");
        assert_eq!(r, N);
        if growths == 0 {
            crate::ktest_skip!("the chain did not grow the stack (stack_init_kib is too large for this test)");
        }
        assert_eq!(counted, u64::from(N), "{N} prologues, {growths} growth step(s) during them, but {counted} counted: a growth replaced the poison");
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

ktest! {
    /// A thread spawning a pinned thread at any depth of its stack never loses it: either the
    /// spawn did not happen (the spawner died before it) or the new thread runs. (A spawner that
    /// died with interrupts disabled, half-way through queueing, left it runnable on no queue.)
    fn a_spawn_at_any_depth_never_loses_the_thread() {
        for depth in (0..=1024).rev().step_by(16) {
            let before = crate::sched::thread::live_threads();
            let spawner = spawn("edge-spawner", move || {
                crate::ktest::helpers::at_stack_depth(depth, || drop(crate::sched::spawn_on(0, "spawned", || ())))
            });
            let _ = spawner.join();
            let deadline = crate::time::now() + core::time::Duration::from_secs(2);
            while crate::sched::thread::live_threads() != before && crate::time::now() < deadline {
                crate::sched::sleep(core::time::Duration::from_millis(5));
            }
            let after = crate::sched::thread::live_threads();
            assert_eq!(after, before, "depth {depth}: a spawned thread never ran (runnable on no queue)");
        }
    }
}

//! Benchmarks: what each primitive costs, in instructions.
//!
//! Run with `cargo run --release -- bench` (the runner adds QEMU's `-icount shift=0`, under
//! which the time-stamp counter counts executed instructions, so every figure is exact and the
//! same from run to run). Each benchmark repeats an operation `n` times between two `rdtsc`
//! reads and prints `bench NAME: X instructions/op` (or another unit), the line the runner
//! parses. The loop's own few instructions are included in X.
//!
//! Benchmarks run on one CPU with timer preemption off (`preempt=off`, set by the runner), so
//! that a timer interrupt never moves a thread mid-measurement; the ticks themselves still
//! arrive (a few hundred instructions per million).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::hint::black_box;
use core::time::Duration;

use crate::arch::cpu::rdtsc;
use crate::sched::{spawn, yield_now};
use crate::sync::{Chan, Mutex, chan};

/// One benchmark: its name and the function that runs it and reports its figure.
struct Bench {
    name: &'static str,
    run: fn() -> Figure,
}

/// A measured figure and its unit.
struct Figure {
    value: f64,
    unit: &'static str,
}

fn per_op(start: u64, end: u64, n: u64) -> Figure {
    Figure { value: (end - start) as f64 / n as f64, unit: "instructions/op" }
}

/// Times `n` runs of `op` on the current thread.
fn time_loop(n: u64, mut op: impl FnMut(u64)) -> Figure {
    let start = rdtsc();
    for i in 0..n {
        op(i);
    }
    per_op(start, rdtsc(), n)
}

fn spawn_join() -> Figure {
    // Warm the pools (thread records, stacks) first, as a running system has them warm.
    for _ in 0..100 {
        spawn("warm", || black_box(1u64)).join().expect("warm-up thread");
    }
    time_loop(10_000, |i| {
        let v = spawn("bench", move || black_box(i)).join().expect("bench thread");
        black_box(v);
    })
}

/// Two threads yielding to each other: the cost of one switch.
fn yield_switch() -> Figure {
    const N: u64 = 20_000;
    let other = spawn("yielder", || {
        for _ in 0..N {
            yield_now();
        }
    });
    yield_now(); // let it start
    let start = rdtsc();
    for _ in 0..N {
        yield_now();
    }
    let end = rdtsc();
    other.join().expect("yielder");
    // Each iteration is two switches: to the other thread and back.
    per_op(start, end, 2 * N)
}

fn round_trips(cap: usize) -> Figure {
    const N: u64 = 20_000;
    let (ping, pong): (Chan<u64>, Chan<u64>) = (chan(cap), chan(cap));
    let echo = {
        let (ping, pong) = (ping.clone(), pong.clone());
        spawn("echo", move || {
            while let Some(v) = ping.recv() {
                pong.send(v);
            }
        })
    };
    ping.send(0);
    pong.recv();
    let figure = time_loop(N, |i| {
        ping.send(i);
        black_box(pong.recv());
    });
    ping.close();
    echo.join().expect("echo");
    figure
}

fn unbuffered_round_trip() -> Figure {
    round_trips(0)
}

fn buffered_round_trip() -> Figure {
    round_trips(1)
}

fn mutex_uncontended() -> Figure {
    let m = Mutex::new(0u64);
    time_loop(100_000, |i| {
        *m.lock() += black_box(i);
    })
}

/// Two threads handing a mutex back and forth: each holds it across a yield, so the other
/// always finds it taken and parks.
fn mutex_contended() -> Figure {
    const N: u64 = 5_000;
    static M: Mutex<u64> = Mutex::new(0);
    let other = spawn("contender", || {
        for _ in 0..N {
            let mut g = M.lock();
            yield_now();
            *g += 1;
        }
    });
    let start = rdtsc();
    for _ in 0..N {
        let mut g = M.lock();
        yield_now();
        *g += 1;
    }
    let end = rdtsc();
    other.join().expect("contender");
    per_op(start, end, 2 * N)
}

fn select_two_ready() -> Figure {
    let (a, b): (Chan<u64>, Chan<u64>) = (chan(1), chan(1));
    time_loop(20_000, |i| {
        let _ = a.try_send(i);
        let _ = b.try_send(i);
        let v = crate::select! {
            recv(a) -> v => v,
            recv(b) -> v => v,
        };
        black_box(v);
    })
}

fn sleep_zero() -> Figure {
    time_loop(10_000, |_| crate::sched::sleep(Duration::ZERO))
}

fn heap_alloc_free() -> Figure {
    time_loop(100_000, |i| {
        let b = Box::new([i as u8; 64]);
        black_box(&b);
    })
}

fn stack_from_pool() -> Figure {
    // Prime the pool with one stack.
    crate::mm::stack::free(crate::mm::stack::alloc().expect("a stack"));
    time_loop(20_000, |_| {
        let s = crate::mm::stack::alloc().expect("a stack");
        crate::mm::stack::free(black_box(s));
    })
}

fn stack_from_frames() -> Figure {
    time_loop(5_000, |_| {
        let s = crate::mm::stack::alloc_uncached().expect("a stack");
        crate::mm::stack::release_uncached(black_box(s));
    })
}

/// Recurses until the stack pointer is at or below `target`.
#[inline(never)]
fn use_stack(target: usize) -> u64 {
    let pad = black_box([0u64; 8]);
    if crate::arch::cpu::read_rsp() <= target { pad[1] } else { use_stack(target).wrapping_add(pad[2]) }
}

/// The instructions a thread on a fresh 4 KiB stack spends using `bytes` of stack.
fn measure_stack_use(bytes: usize) -> u64 {
    crate::mm::stack::release_cached(); // the next stack is fresh, not a grown one from the pool
    spawn("grower", move || {
        let start = rdtsc();
        black_box(use_stack(crate::arch::cpu::read_rsp() - bytes));
        rdtsc() - start
    })
    .join()
    .expect("grower")
}

/// One growth step: the slow path (or, in the uninstrumented build, the page-fault handler)
/// plus mapping the new pages, measured as the difference between using 5 KiB (one growth,
/// 4 -> 8 KiB) and 1 KiB (none) of a fresh stack.
fn stack_growth_step() -> Figure {
    const N: u64 = 200;
    let growths_before = crate::mm::stack::COUNTERS.growths.load(core::sync::atomic::Ordering::Relaxed);
    let (mut grow, mut flat) = (0, 0);
    for _ in 0..N {
        grow += measure_stack_use(5 * 1024);
        flat += measure_stack_use(1024);
    }
    let growths = crate::mm::stack::COUNTERS.growths.load(core::sync::atomic::Ordering::Relaxed) - growths_before;
    assert_eq!(growths, N, "each 5 KiB run must grow exactly once");
    Figure { value: (grow - flat) as f64 / N as f64, unit: "instructions/growth" }
}

#[inline(never)]
fn fib(n: u64) -> u64 {
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

/// A call-heavy workload: recursive Fibonacci, almost nothing but calls and returns.
fn call_heavy() -> Figure {
    let start = rdtsc();
    let v = fib(black_box(24));
    let end = rdtsc();
    assert_eq!(v, 46368);
    // fib(24) makes 75,025 calls.
    per_op(start, end, 75_025)
}

/// Memory of an idle thread: 10,000 threads parked on a channel.
fn idle_thread_memory() -> Figure {
    const N: usize = 10_000;
    crate::ktest::baseline::release_caches();
    let before = crate::ktest::baseline::memory_in_use();
    let gate: Chan<()> = chan(0);
    let threads: Vec<_> = (0..N)
        .map(|_| {
            let gate = gate.clone();
            spawn("idle", move || gate.recv().is_none())
        })
        .collect();
    while gate.waiting_receivers() < N {
        crate::sched::sleep(Duration::from_millis(1));
    }
    let bytes = crate::ktest::baseline::memory_in_use() - before;
    gate.close();
    for t in threads {
        t.join().expect("idle thread");
    }
    Figure { value: bytes as f64 / N as f64, unit: "bytes/thread" }
}

/// The most threads alive at once: spawn parked threads until memory runs out.
fn threads_max() -> Figure {
    let gate: Chan<()> = chan(0);
    let mut threads = Vec::new();
    loop {
        if threads.len() == threads.capacity() && threads.try_reserve(threads.len().max(1024)).is_err() {
            break;
        }
        let g = gate.clone();
        match crate::sched::try_spawn("idle", move || g.recv().is_none()) {
            Ok(t) => threads.push(t),
            Err(_) => break,
        }
        if threads.len() % 1024 == 0 {
            yield_now(); // let them park, so that each holds only what an idle thread holds
        }
    }
    let n = threads.len();
    gate.close();
    for t in threads {
        t.join().expect("idle thread");
    }
    Figure { value: n as f64, unit: "threads" }
}

const BENCHES: &[Bench] = &[
    Bench { name: "spawn_join", run: spawn_join },
    Bench { name: "yield", run: yield_switch },
    Bench { name: "chan_unbuffered_round_trip", run: unbuffered_round_trip },
    Bench { name: "chan_buffered_round_trip", run: buffered_round_trip },
    Bench { name: "mutex_uncontended", run: mutex_uncontended },
    Bench { name: "mutex_contended", run: mutex_contended },
    Bench { name: "select_two_ready", run: select_two_ready },
    Bench { name: "sleep_zero", run: sleep_zero },
    Bench { name: "heap_alloc_free_64", run: heap_alloc_free },
    Bench { name: "stack_alloc_free_pool", run: stack_from_pool },
    Bench { name: "stack_alloc_free_fresh", run: stack_from_frames },
    Bench { name: "stack_growth_step", run: stack_growth_step },
    Bench { name: "call_heavy", run: call_heavy },
    Bench { name: "idle_thread_memory", run: idle_thread_memory },
    Bench { name: "threads_max", run: threads_max },
];

/// Runs the benchmarks named in `which` (comma-separated, or `all`, or `list`) and exits.
pub fn run(which: &str) -> ! {
    use crate::arch::qemu::{ExitCode, exit};
    if which == "list" {
        for b in BENCHES {
            crate::println!("bench {}", b.name);
        }
        exit(ExitCode::Success);
    }
    let selected: Vec<&Bench> =
        BENCHES.iter().filter(|b| which == "all" || which.split(',').any(|w| w == b.name)).collect();
    for name in which.split(',').filter(|w| *w != "all") {
        if !BENCHES.iter().any(|b| b.name == name) {
            crate::println!("bench: FAILURE: no benchmark named '{name}' (bench=list shows them)");
            exit(ExitCode::Failure);
        }
    }
    crate::println!(
        "bench: {} benchmarks; build: {}{}; preempt={:?}; stack_init {} KiB",
        selected.len(),
        if cfg!(prologue_plain) { "uninstrumented" } else { "instrumented" },
        if cfg!(feature = "always-preempt") { " + always-preempt" } else { "" },
        crate::sched::preempt::mode(),
        crate::mm::stack::thread_stack_sizes().1 / 1024
    );
    for b in selected {
        let f = (b.run)();
        crate::println!("bench {}: {:.1} {}", b.name, f.value, f.unit);
    }
    crate::println!("bench: done");
    exit(ExitCode::Success)
}

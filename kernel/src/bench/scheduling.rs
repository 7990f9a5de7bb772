//! Benchmarks of the scheduler itself: spawn + join, a switch by `yield_now`, a zero sleep, a
//! call (the prologue hook's cost), and releasing cached thread records.

use alloc::vec::Vec;
use core::hint::black_box;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;

use super::measure::{Figure, instructions, time_loop};
use crate::arch::cpu::rdtsc;
use crate::sched::{spawn, yield_now};

/// Spawns and joins 100 threads untimed, so that the record and stack pools are as warm as a
/// running system has them.
fn warm_up_spawns() {
    for _ in 0..100 {
        spawn("warm", || black_box(1u64)).join().expect("warm-up thread");
    }
}

pub(super) fn spawn_join() -> Figure {
    warm_up_spawns();
    time_loop(10_000, "threads", "thread", |i| {
        let v = spawn("bench", move || black_box(i)).join().expect("bench thread");
        assert_eq!(v, i, "a thread returned the wrong value");
    })
}

/// Spawns joined by `spawn_join_parts`.
const PARTS_SPAWNS: u64 = 10_000;

/// The TSC at the first and at the last instruction of the thread `spawn_join_parts` spawned.
static STARTED: AtomicU64 = AtomicU64::new(0);
static FINISHING: AtomicU64 = AtomicU64::new(0);

/// `spawn_join` cut in three by TSC reads, summed over `PARTS_SPAWNS` spawns: [`spawn` returning;
/// from the `join` call to the new thread's first instruction; from its last instruction to
/// `join` returning]. The reads inside the thread add a few instructions to each part.
fn spawn_join_parts() -> [u64; 3] {
    warm_up_spawns();
    let mut parts = [0; 3];
    for i in 0..PARTS_SPAWNS {
        let before_spawn = rdtsc();
        let handle = spawn("bench", move || {
            STARTED.store(rdtsc(), Ordering::Relaxed);
            let v = black_box(i);
            FINISHING.store(rdtsc(), Ordering::Relaxed);
            v
        });
        let before_join = rdtsc();
        let v = handle.join().expect("bench thread");
        let joined = rdtsc();
        assert_eq!(v, i, "a thread returned the wrong value");
        parts[0] += before_join - before_spawn;
        parts[1] += STARTED.load(Ordering::Relaxed) - before_join;
        parts[2] += joined - FINISHING.load(Ordering::Relaxed);
    }
    parts
}

pub(super) fn spawn_join_1_spawn() -> Figure {
    instructions(spawn_join_parts()[0], PARTS_SPAWNS, "threads", "thread")
}

pub(super) fn spawn_join_2_start() -> Figure {
    instructions(spawn_join_parts()[1], PARTS_SPAWNS, "threads", "thread")
}

pub(super) fn spawn_join_3_finish() -> Figure {
    instructions(spawn_join_parts()[2], PARTS_SPAWNS, "threads", "thread")
}

/// Who ran last among the two yielders (0 or 1), and how many switches were seen.
static LAST: AtomicU64 = AtomicU64::new(0);
static SWITCHES: AtomicU64 = AtomicU64::new(0);

/// A yielder ran: if the other one ran last, that is a switch.
fn ran(me: u64) {
    if LAST.swap(me, Ordering::Relaxed) != me {
        SWITCHES.fetch_add(1, Ordering::Relaxed);
    }
}

pub(super) fn yield_switch() -> Figure {
    const N: u64 = 20_000;
    static STOP: AtomicBool = AtomicBool::new(false);
    STOP.store(false, Ordering::Relaxed);
    let partner = spawn("yielder", || {
        while !STOP.load(Ordering::Relaxed) {
            yield_now();
            ran(1);
        }
    });
    yield_now(); // the partner starts and yields back
    ran(0);
    let before = SWITCHES.load(Ordering::Relaxed);
    let start = rdtsc();
    for _ in 0..N {
        yield_now();
        ran(0);
    }
    let end = rdtsc();
    let switches = SWITCHES.load(Ordering::Relaxed) - before;
    STOP.store(true, Ordering::Relaxed);
    partner.join().expect("yielder");
    assert!(switches >= N, "only {switches} switches in {N} yields: the threads did not take turns");
    instructions(end - start, switches, "switches", "switch")
}

pub(super) fn sleep_zero() -> Figure {
    time_loop(10_000, "sleeps", "sleep", |_| crate::sched::sleep(Duration::ZERO))
}

#[inline(never)]
fn fib(n: u64) -> u64 {
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

/// The calls `fib(n)` makes: one, plus those of its two subcalls (so 2 fib(n+1) - 1).
fn fib_calls(n: u64) -> u64 {
    let (mut a, mut b) = (0u64, 1u64); // fib(0), fib(1)
    for _ in 0..n {
        (a, b) = (b, a + b);
    }
    2 * b - 1
}

pub(super) fn call_heavy() -> Figure {
    const N: u64 = 24;
    let start = rdtsc();
    let v = fib(black_box(N));
    let end = rdtsc();
    assert_eq!(v, 46368);
    instructions(end - start, fib_calls(N), "calls", "call")
}

/// Freeing the cached records of 20,000 exited threads (memory pressure, test baselines).
pub(super) fn thread_records_release() -> Figure {
    const N: u64 = 20_000;
    crate::sched::thread::release_cached();
    let threads: Vec<_> = (0..N).map(|i| spawn("short", move || i)).collect();
    for t in threads {
        t.join().expect("short thread");
    }
    let start = rdtsc();
    crate::sched::thread::release_cached();
    instructions(rdtsc() - start, N, "records", "record")
}

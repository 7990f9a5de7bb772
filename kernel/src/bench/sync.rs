//! Benchmarks of the synchronisation primitives: channel round trips, buffered channels, the
//! mutex with and without contention, and `select!` -- each doing what `bench/go` does with Go's.

use core::hint::black_box;
use core::sync::atomic::{AtomicU64, Ordering};

use super::measure::{Figure, instructions, time_loop};
use crate::arch::cpu::rdtsc;
use crate::sched::{spawn, yield_now};
use crate::sync::{Chan, Mutex, chan};

pub(super) fn unbuffered_round_trip() -> Figure {
    const N: u64 = 20_000;
    let (ping, pong): (Chan<u64>, Chan<u64>) = (chan(0), chan(0));
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
    let figure = time_loop(N, "round-trips", "round-trip", |i| {
        ping.send(i);
        assert_eq!(pong.recv(), Some(i));
    });
    ping.close();
    echo.join().expect("echo");
    figure
}

/// Values per batch of `chan_buffered_send_recv` (and the channel's capacity).
const BATCH: usize = 64;

pub(super) fn buffered_send_recv() -> Figure {
    const BATCHES: u64 = 1600;
    let ch: Chan<u64> = chan(BATCH);
    let mut sum = 0;
    let start = rdtsc();
    for _ in 0..BATCHES {
        for i in 0..BATCH as u64 {
            ch.send(i);
        }
        for _ in 0..BATCH {
            sum += ch.recv().expect("open");
        }
    }
    let end = rdtsc();
    let n = BATCHES * BATCH as u64;
    assert_eq!(sum, BATCHES * (BATCH as u64 * (BATCH as u64 - 1) / 2), "the values received");
    instructions(end - start, n, "values", "value")
}

pub(super) fn buffered_pipeline() -> Figure {
    const N: u64 = 100_000;
    let ch: Chan<u64> = chan(BATCH);
    let producer = {
        let ch = ch.clone();
        spawn("producer", move || {
            for i in 0..N {
                while ch.len() == BATCH {
                    yield_now();
                }
                ch.send(i);
            }
        })
    };
    let mut sum = 0;
    let start = rdtsc();
    for _ in 0..N {
        while ch.is_empty() {
            yield_now();
        }
        sum += ch.recv().expect("open");
    }
    let end = rdtsc();
    producer.join().expect("producer");
    assert_eq!(sum, N * (N - 1) / 2, "the values received");
    instructions(end - start, N, "values", "value")
}

pub(super) fn mutex_uncontended() -> Figure {
    let m = Mutex::new(0u64);
    time_loop(100_000, "lock-unlocks", "lock-unlock", |_| drop(black_box(m.lock())))
}

/// `mutex_contended`'s last owner, acquisitions and acquisitions that changed hands: written
/// under the mutex; the owner's waits after unlocking read them without it.
static OWNER: AtomicU64 = AtomicU64::new(u64::MAX);
static ACQUISITIONS: AtomicU64 = AtomicU64::new(0);
static CHANGED: AtomicU64 = AtomicU64::new(0);

/// One of the two threads of `mutex_contended`: `n` times, lock; yield; unlock; yield until the
/// other has taken the mutex (or finished: `total` acquisitions in all).
fn contender(me: u64, n: u64, total: u64, m: &Mutex<()>) {
    for _ in 0..n {
        {
            let _held = m.lock();
            if ACQUISITIONS.load(Ordering::Relaxed) > 0 && OWNER.load(Ordering::Relaxed) != me {
                CHANGED.fetch_add(1, Ordering::Relaxed);
            }
            OWNER.store(me, Ordering::Relaxed);
            ACQUISITIONS.fetch_add(1, Ordering::Relaxed);
            yield_now();
        }
        yield_now();
        while OWNER.load(Ordering::Relaxed) == me && ACQUISITIONS.load(Ordering::Relaxed) < total {
            yield_now();
        }
    }
}

pub(super) fn mutex_contended() -> Figure {
    const N: u64 = 5_000;
    static M: Mutex<()> = Mutex::new(());
    OWNER.store(u64::MAX, Ordering::Relaxed);
    ACQUISITIONS.store(0, Ordering::Relaxed);
    CHANGED.store(0, Ordering::Relaxed);
    let partner = spawn("contender", || contender(1, N, 2 * N, &M));
    let start = rdtsc();
    contender(0, N, 2 * N, &M);
    partner.join().expect("contender");
    let end = rdtsc();
    let (acquisitions, changed) = (ACQUISITIONS.load(Ordering::Relaxed), CHANGED.load(Ordering::Relaxed));
    assert_eq!(changed, acquisitions - 1, "acquisitions after the first that did not change hands");
    instructions(end - start, acquisitions, "acquisitions", "acquisition")
}

pub(super) fn select_two_ready() -> Figure {
    const N: u64 = 20_000;
    let (a, b): (Chan<u64>, Chan<u64>) = (chan(N as usize + 1), chan(N as usize + 1));
    for i in 0..=N {
        a.send(i);
        b.send(i);
    }
    let mut taken = 0;
    let figure = time_loop(N, "selects", "select", |_| {
        let v = crate::select! {
            recv(a) -> v => v,
            recv(b) -> v => v,
        };
        taken += u64::from(v.is_some());
    });
    assert_eq!((taken, a.len() + b.len()), (N, N as usize + 2), "values taken and left");
    figure
}

//! Tests of the synchronisation primitives: channels, select!, Mutex, WaitGroup, Once.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use core::time::Duration;

use crate::ktest;
use crate::ktest::baseline::Baseline;
use crate::sched::{spawn, yield_now};
use crate::sync::{Chan, Mutex, Once, WaitGroup, chan};

/// `rounds` round trips between two threads over channels of capacity `cap`.
fn ping_pong(rounds: u64, cap: usize) {
    let base = Baseline::take();
    let (ping, pong): (Chan<u64>, Chan<u64>) = (chan(cap), chan(cap));
    let echo = {
        let (ping, pong) = (ping.clone(), pong.clone());
        spawn("echo", move || {
            let mut n = 0;
            while let Some(v) = ping.recv() {
                pong.send(v + 1);
                n += 1;
            }
            n
        })
    };
    for i in 0..rounds {
        ping.send(i);
        assert_eq!(pong.recv(), Some(i + 1), "round trip {i}");
    }
    ping.close();
    assert_eq!(echo.join().expect("echo thread"), rounds);
    drop((ping, pong));
    base.assert_restored();
}

ktest! {
    /// 100,000 round trips over unbuffered channels: every value comes back, in order.
    fn unbuffered_round_trips() {
        ping_pong(100_000, 0);
    }
}

ktest! {
    /// An unbuffered send is a rendezvous: the sender waits, parked, until a receiver has taken
    /// the value, and only then returns; a receiver that comes first waits for the sender.
    fn unbuffered_send_waits_for_its_receiver() {
        static SENT: AtomicU32 = AtomicU32::new(0);
        SENT.store(0, Ordering::SeqCst);
        let ch: Chan<u32> = chan(0);
        let sender = {
            let ch = ch.clone();
            spawn("rendezvous-sender", move || {
                ch.send(7);
                SENT.store(1, Ordering::SeqCst);
            })
        };
        let deadline = crate::time::now() + Duration::from_secs(2);
        while !ch.has_waiters() {
            assert!(!sender.is_finished(), "the sender finished (returned or died) although nobody received");
            assert!(crate::time::now() < deadline, "the sender never parked on the unbuffered channel");
            yield_now();
        }
        for _ in 0..100 {
            yield_now();
        }
        assert_eq!(SENT.load(Ordering::SeqCst), 0, "send returned before a receiver took the value");
        assert_eq!(ch.len(), 0, "an unbuffered channel buffered a value");
        assert_eq!(ch.recv(), Some(7));
        sender.join().expect("the sender");
        assert_eq!(SENT.load(Ordering::SeqCst), 1);

        // The other way round: the receiver parks first and gets the value handed over.
        let receiver = {
            let ch = ch.clone();
            spawn("rendezvous-receiver", move || ch.recv())
        };
        while ch.waiting_receivers() == 0 {
            assert!(!receiver.is_finished(), "the receiver finished (returned or died) although nobody sent");
            assert!(crate::time::now() < deadline + Duration::from_secs(2), "the receiver never parked");
            yield_now();
        }
        ch.send(8);
        assert_eq!(receiver.join().expect("the receiver"), Some(8));
        assert!(!ch.has_waiters(), "a waiter is still queued after the hand-over");
    }
}

ktest! {
    /// 100,000 round trips over buffered channels.
    fn buffered_round_trips() {
        ping_pong(100_000, 4);
    }
}

/// The first `n` primes by trial division.
fn primes_by_division(n: usize) -> Vec<u64> {
    let mut primes: Vec<u64> = Vec::with_capacity(n);
    let mut k = 2;
    while primes.len() < n {
        if primes.iter().take_while(|&&p| p * p <= k).all(|&p| k % p != 0) {
            primes.push(k);
        }
        k += 1;
    }
    primes
}

ktest! {
    /// The concurrent prime sieve (1,001 threads) yields exactly the first 1,000 primes.
    fn sieve_finds_the_first_thousand_primes() {
        let base = Baseline::take();
        let primes = crate::demo::sieve(1000);
        assert_eq!(primes, primes_by_division(1000));
        assert_eq!(primes[999], 7919);
        drop(primes);
        base.assert_restored();
    }
}

ktest! {
    /// With two always-ready channels, select! picks each about half the time (50% +/- 5%
    /// over 10,000 rounds); with none ready, the default case runs.
    fn select_is_fair_and_has_a_default() {
        let base = Baseline::take();
        let (a, b): (Chan<u32>, Chan<u32>) = (chan(1), chan(1));
        let mut counts = [0u32; 2];
        for _ in 0..10_000 {
            let _ = a.try_send(0);
            let _ = b.try_send(1);
            let which = crate::select! {
                recv(a) -> v => v.expect("open"),
                recv(b) -> v => v.expect("open"),
            };
            counts[which as usize] += 1;
        }
        crate::println!("select picked a {} times, b {} times", counts[0], counts[1]);
        assert!((4500..=5500).contains(&counts[0]), "a chosen {} of 10000 times", counts[0]);
        let (_, _) = (a.try_recv(), b.try_recv());
        let (_, _) = (a.try_recv(), b.try_recv());
        let ran_default = crate::select! {
            recv(a) -> _ => false,
            recv(b) -> _ => false,
            default => true,
        };
        assert!(ran_default, "nothing was ready, so default must run");
        drop((a, b));
        base.assert_restored();
    }
}

ktest! {
    /// select! waits when nothing is ready and wakes for the case that becomes ready; a send
    /// case completes when a receiver comes.
    fn select_blocks_until_a_case_is_ready() {
        let (a, b, c): (Chan<u32>, Chan<u32>, Chan<u32>) = (chan(0), chan(0), chan(0));
        let sender = {
            let b = b.clone();
            spawn("late-sender", move || {
                crate::sched::sleep(Duration::from_millis(5));
                b.send(7);
            })
        };
        let got = crate::select! {
            recv(a) -> _ => 0,
            recv(b) -> v => v.expect("open"),
        };
        assert_eq!(got, 7);
        sender.join().expect("sender");
        let receiver = {
            let c = c.clone();
            spawn("late-receiver", move || c.recv())
        };
        let sent = crate::select! {
            send(c, 99) => true,
            recv(a) -> _ => false,
        };
        assert!(sent);
        assert_eq!(receiver.join().expect("receiver"), Some(99));
        assert!(!a.has_waiters() && !b.has_waiters() && !c.has_waiters(), "select left a waiter queued");
    }
}

ktest! {
    /// 100 threads each add 1,000 times under the Mutex, yielding while holding it: the total
    /// is exact.
    fn mutex_counter_is_exact() {
        let base = Baseline::take();
        static COUNTER: Mutex<u64> = Mutex::new(0);
        *COUNTER.lock() = 0;
        let threads: Vec<_> = (0..100)
            .map(|_| {
                spawn("incrementer", || {
                    for _ in 0..1000 {
                        let mut c = COUNTER.lock();
                        let v = *c;
                        yield_now();
                        *c = v + 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("incrementer");
        }
        assert_eq!(*COUNTER.lock(), 100_000);
        base.assert_restored();
    }
}

ktest! {
    /// Sleepers of 30, 20 and 10 ms wake in the order 10, 20, 30, each after its time.
    fn sleepers_wake_in_order() {
        let base = Baseline::take();
        let order: Chan<u64> = chan(3);
        let start = crate::time::now();
        let threads: Vec<_> = [30u64, 20, 10]
            .into_iter()
            .map(|ms| {
                let order = order.clone();
                spawn("sleeper", move || {
                    crate::sched::sleep(Duration::from_millis(ms));
                    let woke = crate::time::now() - start;
                    assert!(woke >= Duration::from_millis(ms), "woke after {woke:?}, asked {ms} ms");
                    order.send(ms);
                })
            })
            .collect();
        let got: [u64; 3] = core::array::from_fn(|_| order.recv().expect("open"));
        assert_eq!(got, [10, 20, 30]);
        for t in threads {
            t.join().expect("sleeper");
        }
        drop(order);
        base.assert_restored();
    }
}

ktest! {
    /// A receive with a timeout (select! with `sync::after`) gives up after the timeout.
    fn timeout_fires() {
        let never: Chan<u32> = chan(0);
        let start = crate::time::now();
        let timed_out = crate::select! {
            recv(never) -> _ => false,
            recv(crate::sync::after(Duration::from_millis(20))) -> _ => true,
        };
        let waited = crate::time::now() - start;
        assert!(timed_out, "nothing was sent, so the timeout must win");
        assert!(waited >= Duration::from_millis(20), "gave up after {waited:?}");
    }
}

ktest! {
    /// Close: buffered values are still received, then None; blocked receivers wake with None.
    fn close_drains_then_returns_none() {
        let base = Baseline::take();
        let ch: Chan<u32> = chan(2);
        ch.send(1);
        ch.send(2);
        ch.close();
        assert_eq!((ch.recv(), ch.recv(), ch.recv()), (Some(1), Some(2), None));
        assert_eq!(ch.try_recv(), Ok(None));
        let blocked: Chan<u32> = chan(0);
        let receivers: Vec<_> = (0..3)
            .map(|_| {
                let c = blocked.clone();
                spawn("receiver", move || c.recv())
            })
            .collect();
        while !blocked.has_waiters() {
            assert!(!receivers.iter().any(|r| r.is_finished()), "a receiver finished instead of waiting on the channel");
            yield_now();
        }
        blocked.close();
        for r in receivers {
            assert_eq!(r.join().expect("receiver"), None);
        }
        drop((ch, blocked));
        base.assert_restored();
    }
}

ktest! {
    /// Sending on a closed channel panics the sender.
    #[expect(panic = "send on closed channel")]
    fn send_on_closed_panics() {
        let ch: Chan<u32> = chan(1);
        ch.close();
        ch.send(1);
    }
}

ktest! {
    /// A sender blocked on a channel that gets closed panics (alone), and closing twice panics.
    fn close_panics_blocked_senders() {
        let ch: Chan<u32> = chan(0);
        let sender = {
            let c = ch.clone();
            spawn("blocked-sender", move || c.send(5))
        };
        while !ch.has_waiters() {
            assert!(!sender.is_finished(), "the sender finished instead of waiting on the unbuffered channel");
            yield_now();
        }
        ch.close();
        match sender.join() {
            Err(crate::sched::thread::Death::Panic(msg)) => assert!(msg.contains("send on closed channel"), "{msg}"),
            other => panic!("the blocked sender must panic, got {other:?}"),
        }
        let twice = {
            let c = ch.clone();
            spawn("double-close", move || c.close())
        };
        assert!(matches!(twice.join(), Err(crate::sched::thread::Death::Panic(m)) if m.contains("close of closed channel")));
    }
}

ktest! {
    /// WaitGroup::wait returns only after every task called done.
    fn wait_group_waits_for_all() {
        let base = Baseline::take();
        static WG: WaitGroup = WaitGroup::new();
        static DONE: AtomicU32 = AtomicU32::new(0);
        DONE.store(0, Ordering::SeqCst);
        WG.add(50);
        let threads: Vec<_> = (0..50u64)
            .map(|i| {
                spawn("task", move || {
                    crate::sched::sleep(Duration::from_micros(100 * (i % 7)));
                    DONE.fetch_add(1, Ordering::SeqCst);
                    WG.done();
                })
            })
            .collect();
        WG.wait();
        assert_eq!(DONE.load(Ordering::SeqCst), 50);
        for t in threads {
            t.join().expect("task");
        }
        base.assert_restored();
    }
}

ktest! {
    /// Once runs its function exactly once while 100 threads race for it, and none returns
    /// before it has finished.
    fn once_runs_once_under_contention() {
        let base = Baseline::take();
        static ONCE: Once = Once::new();
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let threads: Vec<_> = (0..100)
            .map(|_| {
                spawn("once", || {
                    ONCE.call_once(|| {
                        for _ in 0..10 {
                            yield_now();
                        }
                        RUNS.fetch_add(1, Ordering::SeqCst);
                    });
                    RUNS.load(Ordering::SeqCst)
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().expect("once thread"), 1, "returned before the function finished");
        }
        assert_eq!(RUNS.load(Ordering::SeqCst), 1);
        base.assert_restored();
    }
}

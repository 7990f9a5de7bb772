//! Tests of the wake-up half of every blocking primitive: a waker can never stop half-way, having
//! changed the state (unlocked, closed, counted down, sent) without waking the threads that wait
//! for that change; and a closed timer channel is harmless.
//!
//! The `..._at_any_depth` tests make the waking call with less and less stack left (the waker is
//! placed `depth` bytes above the lowest stack pointer a prologue check accepts, for depths from
//! 1 KiB down to nothing), so that at some depth the waker runs out of stack in the middle of the
//! call. The invariant checked at every depth: either the state did not change (the waker died
//! before it; the test then makes the change itself, to release the waiters) or every waiter
//! wakes up.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use crate::ktest;
use crate::ktest::helpers::{at_stack_depth, finishes_within};
use crate::sched::{JoinHandle, spawn, yield_now};
use crate::sync::{Chan, Mutex, Once, WaitGroup, chan};

/// How long a woken waiter may take to finish.
const WAKE_LIMIT: Duration = Duration::from_secs(2);

/// The waker depths tried: bytes above the lowest stack pointer a prologue check accepts.
fn depths() -> impl Iterator<Item = usize> {
    (0..=1024).rev().step_by(16)
}

/// Waits (yielding) until `ready()`; fails the test if that takes longer than `WAKE_LIMIT` (the
/// waiters never parked: a blocking operation returned or died instead).
fn wait_for(ready: impl Fn() -> bool) {
    let deadline = crate::time::now() + WAKE_LIMIT;
    while !ready() {
        assert!(crate::time::now() < deadline, "the waiters never parked within {WAKE_LIMIT:?}");
        yield_now();
    }
}

/// Fails unless every waiter finishes within the limit (after a state change at `depth`).
fn all_woken<T>(what: &str, depth: usize, waiters: &[JoinHandle<T>]) {
    for w in waiters {
        assert!(
            finishes_within(w, WAKE_LIMIT),
            "{what} at depth {depth}: the state changed but a waiter was never woken"
        );
    }
}

ktest! {
    /// The unlock of a contended Mutex, at any depth of the holder's stack, either leaves the
    /// mutex locked (the holder died before unlocking) or wakes the parked waiter.
    fn a_mutex_unlock_at_any_depth_wakes_its_waiter() {
        for depth in depths() {
            let m = Arc::new(Mutex::new(()));
            let (locked, go): (Chan<()>, Chan<()>) = (chan(0), chan(0));
            let holder = {
                let (m, locked, go) = (m.clone(), locked.clone(), go.clone());
                spawn("mutex-holder", move || {
                    let held = m.lock();
                    locked.send(());
                    go.recv();
                    at_stack_depth(depth, move || drop(held));
                })
            };
            locked.recv().expect("the holder locked the mutex");
            let waiter = {
                let m = m.clone();
                spawn("mutex-waiter", move || drop(m.lock()))
            };
            wait_for(|| m.has_waiters());
            go.send(());
            let holder_died = holder.join().is_err();
            // Died before unlocking: the mutex is locked and the waiter still queued. (Locked with
            // the waiter dequeued is the woken waiter holding it; unlocked with the waiter still
            // queued is the bug: the waiter is stranded, and `all_woken` fails.)
            if holder_died && m.is_locked() && m.has_waiters() {
                // SAFETY: its holder is dead; the test unlocks on its behalf to free the waiter.
                unsafe { m.unlock_for_dead_holder() };
            }
            all_woken("mutex unlock", depth, &[waiter]);
        }
    }
}

ktest! {
    /// Closing a channel at any depth of the closer's stack either leaves it open (the closer died
    /// first) or wakes every receiver parked on it.
    fn a_close_at_any_depth_wakes_every_receiver() {
        for depth in depths() {
            let ch: Chan<u64> = chan(0);
            let receivers: Vec<_> = (0..2)
                .map(|_| {
                    let rx = ch.clone();
                    spawn("closed-receiver", move || rx.recv())
                })
                .collect();
            wait_for(|| ch.waiting_receivers() == 2);
            let closer = {
                let ch = ch.clone();
                spawn("closer", move || at_stack_depth(depth, || ch.close()))
            };
            let closer_died = closer.join().is_err();
            if !ch.is_closed() {
                assert!(closer_died, "depth {depth}: close returned, but the channel is open");
                ch.close();
            }
            all_woken("close", depth, &receivers);
        }
    }
}

ktest! {
    /// The last `done` of a WaitGroup, at any depth, either leaves the count at one (the finisher
    /// died first) or wakes the waiter.
    fn a_wait_group_done_at_any_depth_wakes_its_waiter() {
        for depth in depths() {
            let wg = Arc::new(WaitGroup::new());
            wg.add(1);
            let waiter = {
                let wg = wg.clone();
                spawn("wg-waiter", move || wg.wait())
            };
            wait_for(|| wg.has_waiters());
            let finisher = {
                let wg = wg.clone();
                spawn("wg-finisher", move || at_stack_depth(depth, || wg.done()))
            };
            let finisher_died = finisher.join().is_err();
            if wg.count() != 0 {
                assert!(finisher_died, "depth {depth}: done returned, but the count is {}", wg.count());
                wg.done();
            }
            all_woken("wait group done", depth, &[waiter]);
        }
    }
}

ktest! {
    /// A send at any depth to a `select!` parked on two channels either leaves the select waiting
    /// (the sender died before handing the value over) or wakes it with the value.
    fn a_send_at_any_depth_wakes_a_parked_select() {
        for depth in depths() {
            let (a, b): (Chan<u64>, Chan<u64>) = (chan(0), chan(0));
            let selector = {
                let (a, b) = (a.clone(), b.clone());
                spawn("selector", move || {
                    crate::select! {
                        recv(a) -> v => v,
                        recv(b) -> _ => None,
                    }
                })
            };
            wait_for(|| a.has_waiters() && b.has_waiters());
            let sender = {
                let a = a.clone();
                spawn("edge-sender", move || at_stack_depth(depth, || a.send(41)))
            };
            let sender_died = sender.join().is_err();
            let handed_over = !a.has_waiters();
            if !handed_over {
                assert!(sender_died, "depth {depth}: send returned, but the select still waits on it");
                b.send(0);
            }
            all_woken("send to a select", depth, core::slice::from_ref(&selector));
            let got = selector.join().expect("selector");
            assert_eq!(got, if handed_over { Some(41) } else { None }, "depth {depth}: what the select received");
        }
    }
}

/// A `Once` whose function dies (by `die`) must still complete: its waiters return, and later
/// calls do not run the function again.
fn once_survives_a_dying_function(die: fn(), what: &str) {
    let once = Arc::new(Once::new());
    let runs = Arc::new(AtomicU64::new(0));
    let first = {
        let (once, runs) = (once.clone(), runs.clone());
        spawn("once-dies", move || {
            once.call_once(|| {
                runs.fetch_add(1, Ordering::SeqCst);
                while !once.has_waiters() {
                    yield_now();
                }
                die();
            })
        })
    };
    wait_for(|| runs.load(Ordering::SeqCst) == 1);
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let (once, runs) = (once.clone(), runs.clone());
            spawn("once-waiter", move || {
                once.call_once(|| {
                    runs.fetch_add(1, Ordering::SeqCst);
                })
            })
        })
        .collect();
    assert!(first.join().is_err(), "the function was meant to die ({what})");
    for w in &waiters {
        assert!(finishes_within(w, WAKE_LIMIT), "a waiter of the Once whose function {what} never returned");
    }
    once.call_once(|| {
        runs.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the Once ran its function again after it {what}");
}

ktest! {
    /// A `Once` whose function panics counts as done, as in Go: the threads waiting for it return,
    /// and later calls do not run the function again.
    fn a_panicking_once_still_completes() {
        once_survives_a_dying_function(|| panic!("the initializer fails"), "panicked");
    }
}

ktest! {
    /// The same for a function that overflows its stack (the thread dies, the Once is done).
    fn an_overflowing_once_still_completes() {
        once_survives_a_dying_function(
            || {
                let (reserve, _) = crate::mm::stack::thread_stack_sizes();
                core::hint::black_box(crate::ktest::helpers::use_stack(reserve + 4096));
            },
            "overflowed",
        );
    }
}

ktest! {
    /// Closing the channel of a `sync::after` timer before it fires is harmless: the timer finds
    /// the channel closed and gives up (its send used to panic on g0, which is fatal).
    fn closing_a_timer_channel_is_harmless() {
        let timer = crate::sync::after(Duration::from_millis(2));
        timer.close();
        crate::sched::sleep(Duration::from_millis(10));
        assert_eq!(timer.try_recv(), Ok(None), "a closed timer channel is closed and empty");
    }
}

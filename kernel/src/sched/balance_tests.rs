//! Tests of stealing and of the idle/wake-up handshake (lab 3 grades them at `--smp 4`).
//!
//! The two steal tests drive `LocalRunQueue::steal_into` on queues of their own, which no CPU
//! owns, filled with placeholder records that are never run: they check exactly what is taken
//! (the older half, in order), what stays, and when `runnext` may go. The other two watch the
//! real scheduler: a thread queued on a busy CPU is taken by an idle one at once, and a thread
//! readied for a halted CPU wakes that CPU with an IPI instead of waiting for its next tick.
//! Both wait with bounds, so a missing wake-up or steal fails the test instead of hanging it.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use crate::arch::cpu::IrqGuard;
use crate::ktest;
use crate::records::g::{G, GKind};
use crate::records::percpu::{CPUS_ONLINE, this_cpu, totals};
use crate::records::runq::LocalRunQueue;
use crate::sched::{spawn, spawn_on};
use crate::sync::WaitGroup;

/// Placeholder thread records: only their addresses are queued, nothing runs them.
static PLACEHOLDERS: [G; 16] = [const { G::system(GKind::Thread) }; 16];

fn placeholder(i: usize) -> &'static G {
    &PLACEHOLDERS[i]
}

/// Which placeholder `g` is.
fn index_of(g: &G) -> usize {
    PLACEHOLDERS.iter().position(|p| core::ptr::eq(p, g)).expect("a placeholder record")
}

/// Empties `q` (through its owner's `get`), returning the placeholders in the order taken.
fn drain(q: &LocalRunQueue) -> Vec<usize> {
    core::iter::from_fn(|| q.get()).map(|(g, _)| index_of(g)).collect()
}

fn cpus() -> usize {
    CPUS_ONLINE.load(Ordering::Acquire) as usize
}

ktest! {
    /// A thief takes the older half of a ring (rounded up), oldest first: it runs the last of them
    /// at once and queues the others in order; the victim keeps the newer half, in order.
    fn steal_takes_the_older_half() {
        for n in 1..=9usize {
            let (victim, thief) = (Box::new(LocalRunQueue::new()), Box::new(LocalRunQueue::new()));
            for i in 0..n {
                victim.put(placeholder(i), false);
            }
            let taken = n - n / 2;
            let first = victim.steal_into(&thief, false).map(index_of);
            let (queued, kept) = (drain(&thief), drain(&victim));
            assert_eq!(first, Some(taken - 1), "{n} queued: the thread the thief runs at once");
            assert_eq!(queued, (0..taken - 1).collect::<Vec<_>>(), "{n} queued: what the thief queued");
            assert_eq!(kept, (taken..n).collect::<Vec<_>>(), "{n} queued: what the victim kept");
        }
        let (victim, thief) = (Box::new(LocalRunQueue::new()), Box::new(LocalRunQueue::new()));
        assert!(victim.steal_into(&thief, true).is_none(), "stole from an empty queue");
    }
}

ktest! {
    /// `runnext` is taken only as a last resort: never while the ring has threads, and from an
    /// empty ring only when the thief allows it.
    fn steal_takes_runnext_only_as_a_last_resort() {
        let (victim, thief) = (Box::new(LocalRunQueue::new()), Box::new(LocalRunQueue::new()));
        victim.put(placeholder(0), true); // runnext
        let without = victim.steal_into(&thief, false).map(index_of);
        let with = victim.steal_into(&thief, true).map(index_of);
        let left = drain(&victim);
        assert_eq!(without, None, "took runnext although not allowed");
        assert_eq!(with, Some(0), "did not take runnext from an empty ring when allowed");
        assert!(left.is_empty(), "runnext was taken but is still queued: {left:?}");

        let (victim, thief) = (Box::new(LocalRunQueue::new()), Box::new(LocalRunQueue::new()));
        victim.put(placeholder(1), false);
        victim.put(placeholder(2), true); // runnext
        let first = victim.steal_into(&thief, true).map(index_of);
        let kept = drain(&victim);
        assert_eq!(first, Some(1), "took runnext while the ring had a thread");
        assert_eq!(kept, [2], "the victim's runnext must stay");
    }
}

ktest! {
    /// A thread spawned by a CPU that then spins with interrupts off runs on another CPU at once:
    /// the spawner wakes an idle CPU, which steals it (the spinning CPU cannot run it at all).
    fn an_idle_cpu_takes_a_new_thread_at_once() {
        if cpus() < 2 {
            crate::ktest_skip!("needs at least 2 CPUs (--smp 2)");
        }
        const LIMIT: Duration = Duration::from_millis(200);
        let outcome = spawn_on(0, "spawner", || {
            static STARTED_ON: AtomicU64 = AtomicU64::new(u64::MAX);
            STARTED_ON.store(u64::MAX, Ordering::SeqCst);
            crate::sched::sleep(Duration::from_millis(2)); // let the other CPUs halt
            let before = totals();
            let _irq = IrqGuard::new();
            let me = this_cpu().id;
            let start = crate::time::now();
            let t = spawn("stolen", || {
                let _irq = IrqGuard::new();
                STARTED_ON.store(u64::from(this_cpu().id), Ordering::SeqCst);
            });
            while STARTED_ON.load(Ordering::SeqCst) == u64::MAX && crate::time::now() - start < LIMIT {
                core::hint::spin_loop();
            }
            let (ran_on, waited) = (STARTED_ON.load(Ordering::SeqCst), crate::time::now() - start);
            let wakeups = totals().since(&before).wakeups;
            drop(_irq);
            (t, me, ran_on, waited, wakeups)
        });
        let (t, me, ran_on, waited, wakeups) = outcome.join().expect("the spawner");
        t.join().expect("the stolen thread");
        assert!(ran_on != u64::MAX, "no other CPU took the new thread within {LIMIT:?} (nothing stolen)");
        assert!(ran_on != u64::from(me), "the new thread ran on its spinning CPU");
        assert!(wakeups > 0, "the new thread ran after {waited:?}, but no wake-up IPI was sent (an idle CPU found it by its own tick)");
    }
}

ktest! {
    /// A thread readied for a halted CPU runs promptly: the waker sees the CPU's idle flag and sends
    /// a wake-up IPI. Without it the CPU would wait for its next timer tick, up to a millisecond;
    /// the median wake-up must be well under half of that, and IPIs must have been sent.
    fn a_halted_cpu_is_woken_by_an_ipi() {
        if cpus() < 2 {
            crate::ktest_skip!("needs at least 2 CPUs (--smp 2)");
        }
        const ROUNDS: usize = 40;
        let target = cpus() - 1;
        let before = totals();
        // The waker runs on CPU 0, the woken threads on the last CPU, which is otherwise idle.
        let latencies = spawn_on(0, "waker", move || {
            let mut latencies: Vec<Duration> = Vec::with_capacity(ROUNDS);
            static READIED_AT: AtomicU64 = AtomicU64::new(0);
            for round in 0..ROUNDS {
                let wg = Arc::new(WaitGroup::new());
                wg.add(1);
                let waiter = {
                    let wg = wg.clone();
                    spawn_on(target, "woken", move || {
                        wg.wait();
                        crate::time::now().as_nanos() as u64 - READIED_AT.load(Ordering::SeqCst)
                    })
                };
                let deadline = crate::time::now() + Duration::from_secs(2);
                while !wg.has_waiters() {
                    assert!(crate::time::now() < deadline, "round {round}: the waiter never parked");
                    crate::sched::sleep(Duration::from_millis(1));
                }
                crate::sched::sleep(Duration::from_millis(2)); // its CPU halts meanwhile
                READIED_AT.store(crate::time::now().as_nanos() as u64, Ordering::SeqCst);
                wg.done();
                latencies.push(Duration::from_nanos(waiter.join().expect("the woken thread")));
            }
            latencies
        });
        let mut latencies = latencies.join().expect("the waker");
        let wakeups = totals().since(&before).wakeups;
        latencies.sort();
        let median = latencies[ROUNDS / 2];
        crate::println!("wake-up of a halted CPU: median {median:?}, worst {:?}; {wakeups} IPIs", latencies[ROUNDS - 1]);
        assert!(wakeups as usize >= ROUNDS / 2, "{wakeups} wake-up IPIs for {ROUNDS} wake-ups of a halted CPU");
        assert!(median < Duration::from_micros(300), "median wake-up {median:?}: the halted CPU waited for its tick");
    }
}

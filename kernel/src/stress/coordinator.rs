//! The coordinator (the first thread, `run`): starts every thread, watches for starvation and
//! prints a status line, stops the run at the deadline, drains and shuts everything down, and
//! makes the final checks (memory, work done).

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;

use super::bugs::{BUGS, Bug, BugNames};
use super::lanes::{LaneWatch, Msg, lane_consumer, lane_producer, lane_shape};
use super::ops::worker;
use super::queue::{Tally, WorkQueue, queue_consumer, queue_producer};
use super::shared::{Failures, KINDS, Kind, MIX, Rng, Role, STREAM_LANE, Shared, Slot};
use super::{
    DRAIN_LIMIT, LANE_PRODUCERS_MAX, QUEUE_PRODUCERS, RECURSION_MARGIN, RECURSION_MAX, SHUTDOWN_LIMIT, STARVATION,
    STATUS_PERIOD, WATCH_PERIOD, WORKERS_PER_CPU,
};
use crate::arch::qemu::ExitCode;
use crate::console::exit;
use crate::ktest::baseline::Baseline;
use crate::records::counters::Totals;
use crate::records::percpu::totals;
use crate::sched::thread::live_threads;
use crate::sched::{JoinHandle, sleep, try_spawn};
use crate::sync::{Chan, Mutex, chan};
use crate::time::now;

/// Figures for the final line (no heap: it is built before the memory check).
pub(super) struct Summary {
    pub(super) elapsed: Duration,
    pub(super) ops: [u64; KINDS],
    pub(super) counter: u64,
    pub(super) during: Totals,
}

/// Prints the planted bugs.
pub(super) fn print_bugs() {
    crate::println!("stress: planted bugs (inject=NAME):");
    for (_, name, what) in BUGS {
        crate::println!("stress:   {name:<20} {what}");
    }
}

/// The torture test: runs for `seconds`, then reports `stress: SUCCESS (...)` or
/// `stress: FAILURE: reason` and exits QEMU. Runs as the first thread.
pub fn run(seconds: u64, seed: u64, inject: &str) -> ! {
    let bug = match inject {
        "" => None,
        "list" => {
            print_bugs();
            exit(ExitCode::Success)
        }
        name => match Bug::from_name(name) {
            Some(bug) => Some(bug),
            None => {
                crate::println!("stress: FAILURE: unknown bug '{name}' (known: {BugNames})");
                exit(ExitCode::Failure)
            }
        },
    };
    let cpus = crate::records::percpu::CPUS_ONLINE.load(Ordering::Relaxed) as usize;
    let mode = match crate::sched::preempt::mode() {
        crate::sched::preempt::Mode::Off => "off",
        crate::sched::preempt::Mode::Coop => "coop",
        crate::sched::preempt::Mode::Async => "async",
    };
    crate::println!(
        "stress: {seconds} s, seed {seed}, {} workers on {cpus} CPU(s), preempt={mode}{}, planted bug: {}",
        WORKERS_PER_CPU * cpus,
        if cfg!(feature = "always-preempt") { " (always-preempt build)" } else { "" },
        bug.map_or("none", Bug::name)
    );

    let base = Baseline::take();
    let threads_before = live_threads();
    let summary = match torture(Duration::from_secs(seconds), seed, bug, cpus) {
        Ok(summary) => summary,
        Err(reason) => {
            crate::println!("stress: FAILURE: {reason}");
            exit(ExitCode::Failure)
        }
    };
    // Timeouts whose `select!` was won by the other case still hold their channels until
    // they fire (2 ms at most): let them.
    sleep(Duration::from_millis(20));
    let threads_after = live_threads();
    if threads_after != threads_before {
        crate::println!(
            "stress: FAILURE: {threads_after} threads alive after the run, {threads_before} before: \
             a thread was not joined"
        );
        exit(ExitCode::Failure);
    }
    let end = Baseline::take();
    if end != base {
        crate::println!(
            "stress: FAILURE: memory not back to the baseline: {} frames and {} heap bytes in use, \
             {} and {} before",
            end.frames_used,
            end.heap_used,
            base.frames_used,
            base.heap_used
        );
        exit(ExitCode::Failure);
    }
    if let Err(reason) = check_work(&summary, seconds, cpus) {
        crate::println!("stress: FAILURE: {reason}");
        exit(ExitCode::Failure);
    }
    let Summary { elapsed, ops, counter, during: t } = summary;
    let mut line = format!("stress: SUCCESS ({:.1} s, {} ops:", elapsed.as_secs_f64(), ops.iter().sum::<u64>());
    for kind in Kind::ALL {
        line.push_str(&format!(" {} {}", kind.name(), ops[kind as usize]));
    }
    crate::println!(
        "{line}; counter {counter} exact; {} spawns, {} switches, preemptions coop/async/deferred {}/{}/{}, \
         steals {}, stack growths {}; threads joined; memory: frames {} before, {} after; heap {} bytes before, \
         {} after)",
        t.spawns,
        t.switches,
        t.preempt_coop,
        t.preempt_async,
        t.preempt_deferred,
        t.steals,
        t.stack_growths,
        base.frames_used,
        end.frames_used,
        base.heap_used,
        end.heap_used
    );
    exit(ExitCode::Success)
}

/// Operations a run must complete per second at least: a run that hardly ran proves nothing.
pub(super) const MIN_OPS_PER_SECOND: u64 = 500;

/// Did the run do the work it is there to do? Enough operations, of every kind (runs of 2 s and
/// more); asynchronous preemptions of its call-free loops (with `preempt=async`, 2 s and more);
/// threads stolen between CPUs (with more than one).
pub(super) fn check_work(summary: &Summary, seconds: u64, cpus: usize) -> Result<(), String> {
    let total: u64 = summary.ops.iter().sum();
    if total < MIN_OPS_PER_SECOND * seconds {
        return Err(format!("only {total} operations in {seconds} s: the run hardly ran"));
    }
    if seconds >= 2 {
        if let Some((kind, _)) = MIX.iter().find(|(kind, _)| summary.ops[*kind as usize] == 0) {
            return Err(format!("no '{}' operation completed in {seconds} s", kind.name()));
        }
        if crate::sched::preempt::mode() == crate::sched::preempt::Mode::Async && summary.during.preempt_async == 0 {
            return Err(format!(
                "no asynchronous preemption in {seconds} s with preempt=async: the call-free loops were never \
                 preempted by the timer"
            ));
        }
    }
    if cpus > 1 && summary.during.steals == 0 {
        return Err(format!("no thread was stolen between the {cpus} CPUs"));
    }
    Ok(())
}

/// A watched thread's join handle, with the index of its slot.
pub(super) type Watched<T> = Vec<(usize, JoinHandle<T>)>;

/// Starts a watched thread with a slot of its own.
pub(super) fn start<T, F>(shared: &Arc<Shared>, slot: usize, name: &str, f: F) -> Result<(usize, JoinHandle<T>), String>
where
    F: FnOnce(&Shared, &Slot) -> T + Send + 'static,
    T: Send + 'static,
{
    let own = shared.clone();
    let handle = try_spawn(name, move || f(&own, &own.slots[slot]))
        .map_err(|e| format!("cannot start {}: {e}", shared.slots[slot].role))?;
    shared.slots[slot].thread.store(handle.id(), Ordering::Relaxed);
    Ok((slot, handle))
}

/// Runs the threads for `duration` (or until a failure), shuts them down, and checks the totals.
pub(super) fn torture(duration: Duration, seed: u64, bug: Option<Bug>, cpus: usize) -> Result<Summary, String> {
    let workers = WORKERS_PER_CPU * cpus;
    let lanes = cpus.max(2);
    let consumers = cpus + 2;
    let (reserve, _) = crate::mm::stack::thread_stack_sizes();

    let mut roles: Vec<Role> = (0..workers).map(Role::Worker).collect();
    for lane in 0..lanes {
        let (_, producers) = lane_shape(lane);
        roles.extend((0..producers).map(|producer| Role::LaneProducer { lane, producer }));
        roles.push(Role::LaneConsumer(lane));
    }
    roles.extend((0..QUEUE_PRODUCERS).map(Role::QueueProducer));
    roles.extend((0..consumers).map(Role::QueueConsumer));
    let slots = roles
        .iter()
        .map(|&role| {
            let doing = match role {
                Role::Worker(_) => Kind::Spawn,
                Role::LaneProducer { .. } | Role::LaneConsumer(_) => Kind::Lane,
                Role::QueueProducer(_) | Role::QueueConsumer(_) => Kind::Queue,
            };
            Slot::new(role, doing)
        })
        .collect();
    let before = totals();
    let started = now();
    let shared = Arc::new(Shared {
        bug,
        started,
        stop: AtomicBool::new(false),
        failures: Mutex::new(Failures { first: None, count: 0 }),
        ops: core::array::from_fn(|_| AtomicU64::new(0)),
        slots,
        counter: AtomicU64::new(0),
        counter_lock: Mutex::new(()),
        tally: AtomicU64::new(0),
        queue: WorkQueue::new(QUEUE_PRODUCERS, consumers, bug == Some(Bug::LostWakeup)),
        lanes: (0..lanes).map(|_| LaneWatch::default()).collect(),
        recursion_max: RECURSION_MAX.min(reserve.saturating_sub(RECURSION_MARGIN)),
    });

    let outcome = launch(&shared, seed, workers, lanes, consumers).and_then(|threads| {
        if !shared.stopped() {
            watch(&shared, duration, &before);
        }
        shared.stop.store(true, Ordering::Release);
        let elapsed = now() - started;
        threads.shut_down(&shared)?;
        Ok((elapsed, totals().since(&before)))
    });
    let failures = shared.failures.lock();
    if let Some((first, when)) = &failures.first {
        let mut reason = format!("{first} (after {:.1} s", when.as_secs_f64());
        if failures.count > 1 {
            reason.push_str(&format!("; {} more failure(s) followed", failures.count - 1));
        }
        reason.push(')');
        if let Err(shutdown) = outcome {
            reason.push_str(&format!("; then {shutdown}"));
        }
        return Err(reason);
    }
    drop(failures);
    let (elapsed, during) = outcome?;
    let counter = shared.counter.load(Ordering::Relaxed);
    let tally = shared.tally.load(Ordering::Relaxed);
    if counter != tally {
        return Err(format!(
            "the shared counter is {counter} after {tally} increments: {} update(s) lost",
            tally.wrapping_sub(counter)
        ));
    }
    Ok(Summary { elapsed, ops: shared.ops(), counter, during })
}

/// A lane's channel and threads.
pub(super) struct Lane {
    pub(super) ch: Chan<Msg>,
    pub(super) producers: Watched<u64>,
    pub(super) consumer: Watched<[u64; LANE_PRODUCERS_MAX]>,
}

/// Every long-running thread of the run.
pub(super) struct Threads {
    pub(super) workers: Watched<()>,
    pub(super) lanes: Vec<Lane>,
    pub(super) queue_producers: Watched<Tally>,
    pub(super) queue_consumers: Watched<[Tally; QUEUE_PRODUCERS]>,
}

/// Starts every thread. On an error some have started: they stop with the run (the caller sets
/// `stop`), so they are detached here rather than joined.
pub(super) fn launch(
    shared: &Arc<Shared>,
    seed: u64,
    workers: usize,
    lanes: usize,
    consumers: usize,
) -> Result<Threads, String> {
    let mut slot = 0..;
    let mut next = || slot.next().expect("unbounded");
    let mut threads =
        Threads { workers: Vec::new(), lanes: Vec::new(), queue_producers: Vec::new(), queue_consumers: Vec::new() };
    let stop_on_error = |e: String| {
        shared.stop.store(true, Ordering::Release);
        e
    };
    for index in 0..workers {
        threads.workers.push(
            start(shared, next(), "stress-worker", move |shared, slot| worker(shared, index, slot, seed))
                .map_err(stop_on_error)?,
        );
    }
    for lane in 0..lanes {
        let (capacity, producers) = lane_shape(lane);
        let ch: Chan<Msg> = chan(capacity);
        let mut senders = Vec::new();
        for producer in 0..producers {
            let (ch, rng) = (ch.clone(), Rng::new(seed, STREAM_LANE + (lane * LANE_PRODUCERS_MAX + producer) as u64));
            senders.push(
                start(shared, next(), "stress-lane-tx", move |shared, slot| {
                    lane_producer(shared, lane, &ch, producer, slot, rng)
                })
                .map_err(stop_on_error)?,
            );
        }
        let (rx, rng) = (ch.clone(), Rng::new(seed, STREAM_LANE + 500 + lane as u64));
        let consumer =
            start(shared, next(), "stress-lane-rx", move |shared, slot| lane_consumer(shared, lane, &rx, slot, rng))
                .map_err(stop_on_error)?;
        threads.lanes.push(Lane { ch, producers: senders, consumer: vec![consumer] });
    }
    for index in 0..QUEUE_PRODUCERS {
        threads.queue_producers.push(
            start(shared, next(), "stress-queue-tx", move |shared, slot| queue_producer(shared, index, slot, seed))
                .map_err(stop_on_error)?,
        );
    }
    for index in 0..consumers {
        threads.queue_consumers.push(
            start(shared, next(), "stress-queue-rx", move |shared, slot| queue_consumer(shared, index, slot))
                .map_err(stop_on_error)?,
        );
    }
    Ok(threads)
}

/// The watchdog and status loop, until the deadline or a failure.
pub(super) fn watch(shared: &Shared, duration: Duration, before: &Totals) {
    let started = shared.started;
    let mut seen: Vec<(u64, Duration)> = shared.slots.iter().map(|_| (0, started)).collect();
    let mut next_status = started + STATUS_PERIOD;
    loop {
        sleep(WATCH_PERIOD);
        let t = now();
        if shared.stopped() || t - started >= duration {
            return;
        }
        for (slot, (ticks, since)) in shared.slots.iter().zip(seen.iter_mut()) {
            let now_ticks = slot.ticks.load(Ordering::Relaxed);
            if now_ticks != *ticks {
                *ticks = now_ticks;
                *since = t;
            } else if t - *since >= STARVATION {
                print_threads();
                shared.fail(format!(
                    "{slot} made no progress for {:.1} s while the run went on",
                    (t - *since).as_secs_f64()
                ));
                return;
            }
        }
        if t >= next_status {
            next_status += STATUS_PERIOD;
            let d = totals().since(before);
            crate::println!(
                "stress: {:.1} s, {} ops, {} switches, preemptions coop/async/deferred {}/{}/{}, steals {}, threads {}",
                (t - started).as_secs_f64(),
                shared.ops().iter().sum::<u64>(),
                d.switches,
                d.preempt_coop,
                d.preempt_async,
                d.preempt_deferred,
                d.steals,
                live_threads()
            );
        }
    }
}

/// Lists the live threads with their states (for a starvation report).
pub(super) fn print_threads() {
    crate::println!("stress: threads now:");
    crate::sched::thread::for_each_thread(|g| {
        crate::println!("stress:   {} {:?} {}", g, g.state(), g.wait_reason.get().as_str());
    });
}

/// Waits (polling) until every thread in `threads` has finished, or the shutdown time is up.
pub(super) fn await_finished<T>(shared: &Shared, threads: &Watched<T>, deadline: Duration) -> Result<(), String> {
    while now() < deadline {
        if threads.iter().all(|(_, handle)| handle.is_finished()) {
            return Ok(());
        }
        sleep(Duration::from_millis(10));
    }
    let stuck: Vec<String> = threads
        .iter()
        .filter(|(_, handle)| !handle.is_finished())
        .map(|&(slot, _)| format!("{}", shared.slots[slot]))
        .collect();
    print_threads();
    Err(format!("shutdown: not finished {:?} after the stop: {}", SHUTDOWN_LIMIT, stuck.join(", ")))
}

/// Waits (polling) up to `DRAIN_LIMIT` until `check` is `Ok`; otherwise a failure: everything
/// sent should have been received by then, and closing would hide a consumer stuck for ever.
pub(super) fn drained(what: &str, check: impl Fn() -> Result<(), String>) -> Result<(), String> {
    let deadline = now() + DRAIN_LIMIT;
    loop {
        match check() {
            Ok(()) => return Ok(()),
            Err(state) if now() >= deadline => {
                print_threads();
                return Err(format!(
                    "{what}: {state}, {:?} after the producers stopped: a lost wake-up (a consumer waits for what \
                     was sent to it)",
                    DRAIN_LIMIT
                ));
            }
            Err(_) => sleep(Duration::from_millis(10)),
        }
    }
}

/// Joins every thread in `threads` (all finished): their results, or a failure naming a
/// thread that died.
pub(super) fn join_all<T>(shared: &Shared, threads: Watched<T>) -> Result<Vec<T>, String> {
    let mut results = Vec::with_capacity(threads.len());
    for (slot, handle) in threads {
        match handle.join() {
            Ok(value) => results.push(value),
            Err(death) => return Err(format!("{} died: {death}", shared.slots[slot].role)),
        }
    }
    Ok(results)
}

impl Threads {
    /// After `stop`: waits for the producers and workers, closes the lanes and the queue,
    /// waits for the consumers, joins everyone, and checks that every message and item that was
    /// sent arrived.
    pub(super) fn shut_down(self, shared: &Shared) -> Result<(), String> {
        let deadline = now() + SHUTDOWN_LIMIT;
        let Threads { workers, lanes, queue_producers, queue_consumers } = self;
        await_finished(shared, &workers, deadline)?;
        join_all(shared, workers)?;

        await_finished(shared, &queue_producers, deadline)?;
        let made = join_all(shared, queue_producers)?;
        drained("work queue", || {
            let (pushed, popped) =
                (shared.queue.pushed.load(Ordering::Relaxed), shared.queue.popped.load(Ordering::Relaxed));
            (pushed == popped)
                .then_some(())
                .ok_or_else(|| format!("{} item(s) still queued while consumers wait for items", pushed - popped))
        })?;
        shared.queue.close();
        await_finished(shared, &queue_consumers, deadline)?;
        let mut received = vec![Tally::default(); QUEUE_PRODUCERS];
        for got in join_all(shared, queue_consumers)? {
            for (total, part) in received.iter_mut().zip(got.iter()) {
                total.merge(part);
            }
        }
        for (producer, (made, received)) in made.iter().zip(&received).enumerate() {
            if made != received {
                return Err(format!(
                    "work queue: producer {producer} pushed {} items, the consumers popped {} \
                     (sums {:#x} and {:#x}): items lost or duplicated",
                    made.count, received.count, made.sum, received.sum
                ));
            }
        }

        for (lane, Lane { ch, producers, consumer }) in lanes.into_iter().enumerate() {
            await_finished(shared, &producers, deadline)?;
            let sent = join_all(shared, producers)?;
            let total: u64 = sent.iter().sum();
            drained(&format!("lane {lane}"), || {
                let received = shared.lanes[lane].received.load(Ordering::Relaxed);
                (received == total)
                    .then_some(())
                    .ok_or_else(|| format!("the consumer received {received} of the {total} messages sent"))
            })?;
            ch.close();
            await_finished(shared, &consumer, deadline)?;
            let got = join_all(shared, consumer)?.pop().expect("one consumer per lane");
            for (producer, (&sent, &got)) in sent.iter().zip(got.iter()).enumerate() {
                if sent != got {
                    return Err(format!(
                        "lane {lane}: producer {producer} sent {sent} messages, the consumer received {got}"
                    ));
                }
            }
        }
        Ok(())
    }
}

//! The run's threads: starting every watched thread (`launch`), and ending them -- the drain
//! checks before anything is closed, the shutdown within its time limit, and the joins that
//! name a thread that died.

use super::lanes::LANE_PRODUCERS_MAX;
use super::lanes::{Msg, lane_shape};
use super::ops::worker;
use super::queue::QUEUE_PRODUCERS;
use super::queue::Tally;
use super::shared::{Rng, STREAM_LANE, Shared, Slot};
use super::traffic::{lane_consumer, lane_producer, queue_consumer, queue_producer};
use crate::sched::{JoinHandle, sleep, try_spawn};
use crate::sync::{Chan, chan};
use crate::time::now;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use core::time::Duration;

/// How long the shutdown may take once the threads are told to stop.
pub(super) const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);
/// How long the consumers may take, once the producers have stopped, to receive everything that
/// was sent (before the lanes and the queue are closed, which would rescue a consumer whose
/// wake-up was lost).
pub(super) const DRAIN_LIMIT: Duration = Duration::from_secs(3);

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

//! The traffic: the lanes' producers and consumers (every sequence number checked at the message
//! that shows a loss or a duplicate, and a timed-out receive checked against what was sent in
//! time) and the work queue's producers and consumers (per-producer order and totals).

use super::bugs::Bug;
use super::lanes::LANE_PRODUCERS_MAX;
use super::lanes::{Msg, lane_shape};
use super::queue::QUEUE_PRODUCERS;
use super::queue::{Pop, Tally};
use super::shared::{Kind, Rng, STREAM_QUEUE, Shared, Slot};
use crate::sched::yield_now;
use crate::sync::Chan;
use crate::sync::after;
use crate::time::now;
use alloc::format;
use alloc::string::String;
use core::hint::black_box;
use core::sync::atomic::Ordering;
use core::time::Duration;

/// Sends numbered messages until the run stops; returns how many it sent.
pub(super) fn lane_producer(
    shared: &Shared,
    lane: usize,
    ch: &Chan<Msg>,
    producer: usize,
    slot: &Slot,
    mut rng: Rng,
) -> u64 {
    let mut seq = 0;
    while !shared.stopped() {
        let msg = (producer, seq);
        match rng.below(3) {
            0 => {
                if let Err(msg) = ch.try_send(msg) {
                    ch.send(msg);
                }
            }
            1 => loop {
                // A send with a timeout: on timeout the message was not sent, and goes again
                // (a timeout is no progress).
                let patience = rng.micros(1000);
                crate::select! {
                    send(ch, msg) => break,
                    recv(after(patience)) -> _ => {}
                }
            },
            _ => ch.send(msg),
        }
        shared.lanes[lane].sent(producer, seq);
        seq += 1;
        slot.tick();
        if rng.one_in(8) {
            yield_now();
        }
    }
    seq
}

/// Receives until the lane is closed and drained, checking each message's number; returns
/// how many it received from each producer.
pub(super) fn lane_consumer(
    shared: &Shared,
    lane: usize,
    ch: &Chan<Msg>,
    slot: &Slot,
    mut rng: Rng,
) -> [u64; LANE_PRODUCERS_MAX] {
    let (capacity, producers) = lane_shape(lane);
    let watch = &shared.lanes[lane];
    let mut expected = [0u64; LANE_PRODUCERS_MAX];
    loop {
        // `None`: nothing yet (a timeout, or a receive that would wait); `Some(None)`: closed.
        let got: Option<Option<Msg>> = match rng.below(3) {
            0 => Some(ch.recv()),
            1 => {
                let patience = rng.micros(1000);
                // No later than the timer's own deadline (`after` reads the clock after this).
                let deadline = now() + patience;
                let parks = crate::records::percpu::current().parks.load(Ordering::Relaxed);
                crate::select! {
                    recv(ch) -> msg => Some(msg),
                    recv(after(patience)) -> _ => {
                        let parked = crate::records::percpu::current().parks.load(Ordering::Relaxed) != parks;
                        check_timed_out_receive(shared, lane, ch, deadline, parked)
                    }
                }
            }
            _ => match ch.try_recv() {
                Ok(msg) => Some(msg),
                Err(()) => {
                    yield_now();
                    None
                }
            },
        };
        let Some(msg) = got else { continue };
        let Some((producer, seq)) = msg else { return expected };
        watch.received.fetch_add(1, Ordering::Relaxed);
        slot.tick();
        if producer >= producers {
            shared.fail(format!("lane {lane}: a message from producer {producer}, but the lane has {producers}"));
            continue;
        }
        let want = expected[producer];
        if seq != want {
            let what =
                if seq > want { format!("messages {want}..{seq} were lost") } else { String::from("a duplicate") };
            shared.fail(format!(
                "lane {lane} (capacity {capacity}, {producers} producer(s)): message {seq} from producer \
                 {producer} arrived when {want} was expected ({what})"
            ));
        }
        expected[producer] = seq + 1;
        shared.count(Kind::Lane);
    }
}

/// After a lane consumer's `select!` timed out (its deadline `deadline`; `parked`: the select
/// waited): takes a message if one is there now, and checks it was not sent before the deadline.
/// A select that parked found nothing ready, so its waiter was queued on the channel before the
/// timer fired; the consumer is the lane's only receiver: a send completed before the deadline
/// found that waiter and beat the timer to the select, which could then not have timed out --
/// unless the wake-up was lost. (Timeouts would otherwise hide a lost wake-up: the consumer just
/// takes the message on its next try.) A select that did not park found its timer already due and
/// may have picked it at random over a waiting message: no check then.
pub(super) fn check_timed_out_receive(
    shared: &Shared,
    lane: usize,
    ch: &Chan<Msg>,
    deadline: Duration,
    parked: bool,
) -> Option<Option<Msg>> {
    let msg = ch.try_recv().ok()?;
    if let Some((producer, seq)) = msg
        && parked
        && producer < LANE_PRODUCERS_MAX
        && shared.lanes[lane].sent_before(producer, seq, deadline)
    {
        shared.fail(format!(
            "lane {lane}: the consumer's select timed out at {:.3} ms although message {seq} of producer {producer} \
             had been sent to it before then: a lost wake-up",
            deadline.as_secs_f64() * 1000.0
        ));
    }
    Some(msg)
}

pub(super) fn queue_producer(shared: &Shared, index: usize, slot: &Slot, seed: u64) -> Tally {
    let mut rng = Rng::new(seed, STREAM_QUEUE + index as u64);
    let mut made = Tally::default();
    let mut seq = 0;
    while !shared.stopped() {
        // A little work between items, so that consumers often find the queue empty and wait.
        for i in 0..rng.below(256) {
            black_box(i);
        }
        if rng.one_in(4) {
            yield_now();
        }
        shared.queue.push((index, seq));
        made.add(seq);
        seq += 1;
        slot.tick();
    }
    made
}

pub(super) fn queue_consumer(shared: &Shared, index: usize, slot: &Slot) -> [Tally; QUEUE_PRODUCERS] {
    let recheck = shared.bug != Some(Bug::MissingRecheck);
    let mut got = [Tally::default(); QUEUE_PRODUCERS];
    let mut last: [Option<u64>; QUEUE_PRODUCERS] = [None; QUEUE_PRODUCERS];
    loop {
        match shared.queue.pop(recheck) {
            Pop::Item((producer, seq)) => {
                if producer >= QUEUE_PRODUCERS {
                    shared.fail(format!(
                        "queue consumer {index} popped an item from producer {producer}, who does not exist"
                    ));
                    continue;
                }
                // The queue is FIFO and each producer numbers its items in order, so one
                // consumer sees each producer's numbers strictly increasing.
                if let Some(prev) = last[producer]
                    && seq <= prev
                {
                    shared.fail(format!(
                        "queue consumer {index} popped item {seq} of producer {producer} after item {prev} \
                         (duplicated or reordered)"
                    ));
                }
                last[producer] = Some(seq);
                got[producer].add(seq);
                shared.count(Kind::Queue);
            }
            Pop::Empty => shared.fail(format!(
                "queue consumer {index} popped an empty queue: it was woken for an item that another \
                 consumer took first, and did not check again"
            )),
            Pop::Closed => return got,
        }
        slot.tick();
    }
}

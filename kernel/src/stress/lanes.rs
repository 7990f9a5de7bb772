//! Lanes: one channel each, one or two producers and one consumer that checks every sequence
//! number, and the record (`LaneWatch`) that turns a timed-out receive into a lost-wake-up
//! report when a message had been sent in time.

use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use super::LANE_PRODUCERS_MAX;
use super::shared::{Kind, Rng, Shared, Slot};
use crate::sched::yield_now;
use crate::sync::Chan;
use crate::sync::after;
use crate::time::now;

/// A lane message: (producer, sequence number).
pub(super) type Msg = (usize, u64);

/// What a lane's threads publish for the checks: when each producer's sends completed, and how
/// many messages the consumer received.
#[derive(Default)]
pub(super) struct LaneWatch {
    /// Per producer: messages whose `send` has returned, and when the last one did (`time::now`
    /// in nanoseconds; written before the count, so a reader that sees the count sees a time at
    /// least that late).
    pub(super) completed: [AtomicU64; LANE_PRODUCERS_MAX],
    pub(super) completed_at: [AtomicU64; LANE_PRODUCERS_MAX],
    /// Messages the consumer has received.
    pub(super) received: AtomicU64,
}

impl LaneWatch {
    /// Producer `producer`'s message `seq` has been sent.
    pub(super) fn sent(&self, producer: usize, seq: u64) {
        self.completed_at[producer].store(now().as_nanos() as u64, Ordering::Relaxed);
        self.completed[producer].store(seq + 1, Ordering::Release);
    }

    /// Had message `seq` of `producer` been sent before `deadline`? `false` if that is not known
    /// (yet): the answer errs only towards "no".
    pub(super) fn sent_before(&self, producer: usize, seq: u64, deadline: Duration) -> bool {
        self.completed[producer].load(Ordering::Acquire) > seq
            && Duration::from_nanos(self.completed_at[producer].load(Ordering::Relaxed)) < deadline
    }
}

/// A lane's shape, decided by its number.
pub(super) fn lane_shape(lane: usize) -> (usize, usize) {
    let capacity = [0, 1, 8][lane % 3];
    let producers = 1 + lane % LANE_PRODUCERS_MAX;
    (capacity, producers)
}

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

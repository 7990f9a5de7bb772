//! Lanes: one channel each, one or two producers and one consumer that checks every sequence
//! number, and the record (`LaneWatch`) that turns a timed-out receive into a lost-wake-up
//! report when a message had been sent in time.

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use crate::time::now;

/// Producers of a lane at most.
pub(super) const LANE_PRODUCERS_MAX: usize = 2;

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

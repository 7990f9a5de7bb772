//! The work queue: a bounded FIFO built from a `Mutex<VecDeque>` and two channels used as wait
//! queues (a condition variable), and the tallies that prove no item was lost or duplicated (its
//! producers and consumers are in `traffic`).
//!
//! Invariant: a waiting thread registers itself under the mutex and receives exactly one token
//! from whoever unregisters it (so a stale token cannot mask the planted `missing-recheck`).

use alloc::collections::VecDeque;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::sync::mutex::MutexGuard;
use crate::sync::{Chan, Mutex, chan};

/// Items the work queue holds at most.
pub(super) const QUEUE_CAPACITY: usize = 8;
/// Producers feeding the work queue.
pub(super) const QUEUE_PRODUCERS: usize = 2;

/// A work-queue item: (producer, sequence number).
pub(super) type Item = (usize, u64);

/// The work queue's state, under its mutex.
pub(super) struct QueueState {
    pub(super) items: VecDeque<Item>,
    /// Consumers registered to wait for an item; each gets one token on `item_ready`.
    pub(super) hungry: usize,
    /// Producers registered to wait for room; each gets one token on `room_ready`.
    pub(super) blocked: usize,
    /// No more items will come (set after the producers have finished).
    pub(super) closed: bool,
}

/// A bounded FIFO whose waits are built from channels: a condition variable by hand.
///
/// To wait, a thread registers itself in the state (under the mutex), releases the mutex and
/// receives a token; whoever changes the state so that a waiter may proceed unregisters one and
/// sends one token. A token cannot be lost (the channels hold as many as there can be
/// waiters), but it may reach a waiter after another thread has consumed what it announced:
/// so a woken thread must look again (Mesa semantics).
pub(super) struct WorkQueue {
    pub(super) state: Mutex<QueueState>,
    pub(super) item_ready: Chan<()>,
    pub(super) room_ready: Chan<()>,
    /// Items pushed and popped so far (for the drain check at the end).
    pub(super) pushed: AtomicU64,
    pub(super) popped: AtomicU64,
    /// The planted `lost-wakeup` bug.
    pub(super) lose_wakeups: bool,
}

/// What a pop found.
pub(super) enum Pop {
    Item(Item),
    /// The queue is closed and empty.
    Closed,
    /// Nothing, though the queue is open: only the planted `missing-recheck` bug does this.
    Empty,
}

impl WorkQueue {
    pub(super) fn new(producers: usize, consumers: usize, lose_wakeups: bool) -> WorkQueue {
        WorkQueue {
            state: Mutex::new(QueueState {
                items: VecDeque::with_capacity(QUEUE_CAPACITY),
                hungry: 0,
                blocked: 0,
                closed: false,
            }),
            item_ready: chan(consumers),
            room_ready: chan(producers),
            pushed: AtomicU64::new(0),
            popped: AtomicU64::new(0),
            lose_wakeups,
        }
    }

    /// Adds `item`, waiting while the queue is full.
    pub(super) fn push(&self, item: Item) {
        let mut state = self.state.lock();
        while state.items.len() == QUEUE_CAPACITY {
            state.blocked += 1;
            drop(state);
            self.room_ready.recv();
            state = self.state.lock();
        }
        state.items.push_back(item);
        self.pushed.fetch_add(1, Ordering::Relaxed);
        let wake = state.hungry > 0;
        if wake {
            state.hungry -= 1;
        }
        drop(state);
        // The planted bug forgets the token: the consumer it unregistered waits for ever.
        if wake && !self.lose_wakeups {
            self.item_ready.send(());
        }
    }

    /// Waits for a token on `item_ready`; returns with the mutex held again. (Being woken is no
    /// progress: the watchdog sees a consumer's progress only when it pops an item.)
    pub(super) fn wait_for_item<'a>(&'a self, mut state: MutexGuard<'a, QueueState>) -> MutexGuard<'a, QueueState> {
        state.hungry += 1;
        drop(state);
        self.item_ready.recv();
        self.state.lock()
    }

    /// Takes the oldest item, waiting while the queue is empty and open. With `recheck` false
    /// (the planted bug) it waits at most once and then pops whatever it finds.
    pub(super) fn pop(&self, recheck: bool) -> Pop {
        let mut state = self.state.lock();
        if recheck {
            while state.items.is_empty() && !state.closed {
                state = self.wait_for_item(state);
            }
        } else if state.items.is_empty() && !state.closed {
            state = self.wait_for_item(state);
        }
        let item = state.items.pop_front();
        if item.is_some() {
            self.popped.fetch_add(1, Ordering::Relaxed);
        }
        let closed = state.closed;
        let wake = item.is_some() && state.blocked > 0;
        if wake {
            state.blocked -= 1;
        }
        drop(state);
        if wake {
            self.room_ready.send(());
        }
        match item {
            Some(item) => Pop::Item(item),
            None if closed => Pop::Closed,
            None => Pop::Empty,
        }
    }

    /// No more items: wakes every waiting consumer. Called once the producers have finished.
    pub(super) fn close(&self) {
        let mut state = self.state.lock();
        state.closed = true;
        let waiting = core::mem::take(&mut state.hungry);
        drop(state);
        for _ in 0..waiting {
            self.item_ready.send(());
        }
    }
}

/// What a queue producer made, or a consumer received from one producer.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Tally {
    pub(super) count: u64,
    pub(super) sum: u64,
    /// XOR of a hash of each sequence number: a duplicate and a loss do not cancel out here.
    pub(super) mix: u64,
}

impl Tally {
    pub(super) fn add(&mut self, seq: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(seq);
        self.mix ^= seq.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }

    pub(super) fn merge(&mut self, other: &Tally) {
        self.count += other.count;
        self.sum = self.sum.wrapping_add(other.sum);
        self.mix ^= other.mix;
    }
}

//! The torture test (`stress=SECONDS`): many threads doing a seeded random mix of everything the
//! kernel offers, while invariants are checked all along (Linux's locktorture and rcutorture,
//! in the small).
//!
//! Who runs:
//! - **Workers**, three per online CPU, unpinned (so the scheduler must spread them by stealing).
//!   Each loops over operations chosen by its own PRNG: spawn and join short-lived children,
//!   round trips through an echo child over buffered and unbuffered channels, `select!` with a
//!   timeout, increments of a shared counter under a `Mutex`, sleeps of 0-2 ms, heap churn,
//!   recursion up to ~150 KiB deep (the stack grows on demand), and loops without calls that
//!   only the timer's asynchronous preemption can interrupt. After each operation a worker
//!   publishes a progress tick and yields.
//! - **Lanes**: one channel each (unbuffered, capacity 1 or 8) with one or two producers and one
//!   consumer. A message is `(producer, sequence number)`; the consumer checks that every number
//!   is exactly the next one expected from that producer, so a lost or duplicated message is
//!   caught at the message that shows it, not only as a wrong total at the end.
//! - **The work queue**: a bounded FIFO built here from a `Mutex<VecDeque>` and two channels
//!   used as wait queues (a condition variable), with two producers and several consumers.
//! - **The coordinator** (this module's `run`, the first thread): it starts everything, is the
//!   starvation watchdog and prints a status line every 2.5 s, stops the run at the deadline,
//!   shuts everything down, and makes the final checks.
//!
//! Invariants, each violation a `stress: FAILURE: reason` line and a failure exit:
//! - no message lost or duplicated (lanes: at once; work queue: per-consumer order, and exact
//!   per-producer totals at the end);
//! - the `Mutex`-protected counter equals the atomic tally of its increments;
//! - every thread returns: workers, lane and queue threads, and every child (joined, `Ok`);
//! - no thread starves: a watched thread whose progress tick has not moved for 3 s while the
//!   run goes on is named, with what it was doing (progress is something done: a message sent
//!   or received, an item pushed or popped, an operation completed -- never a wake-up or a
//!   timeout);
//! - no wake-up is lost: at the end, once the producers have stopped, the consumers must receive
//!   everything sent within 3 s, before the lanes and the queue are closed (a close would wake a
//!   consumer stuck for ever); and a lane consumer whose `select!` timed out although a message had
//!   been sent to it before the deadline reports it at once (the timeout would hide it);
//! - values come back intact: children's results, echoes, heap blocks, stack frames;
//! - at the end, with everything joined and dropped, live threads, frames and heap are back
//!   to what they were at the start (`ktest::baseline`, compared here without panicking);
//! - the run did its work: enough operations of every kind, asynchronous preemptions of the
//!   call-free loops (with `preempt=async`), steals between CPUs (with more than one).
//!
//! Reproducibility: every thread draws its choices from its own wyrand PRNG, seeded from the
//! run's `seed=` and the thread's stream number, so a seed fixes what each thread does (though
//! not how the threads interleave).
//!
//! Preemption: all shared data is atomic, behind a `Mutex`, or in a channel, so the normal paths
//! are correct with a preemption at every prologue (`always-preempt`). No loop waits without
//! calling into the scheduler (workers yield after every operation), so `preempt=off` on one
//! CPU still lets the coordinator run.
//!
//! Planted bugs (`inject=NAME`, listed by `inject=list`) show the test catching real mistakes:
//! - `missing-recheck`: a queue consumer that was woken for an item pops without checking again
//!   that the queue is not empty (`if` instead of `while`); another consumer may have taken the
//!   item in between, and the pop finds nothing.
//! - `non-atomic-counter`: the shared counter is incremented as `load; call; store` without the
//!   mutex; an update made in between by another thread is lost, and the final count is short.
//! - `lost-wakeup`: a queue producer unregisters a waiting consumer but forgets its token; the
//!   consumer waits for ever (the watchdog, or the drain check at the end, names it).
//!
//! Rejected designs:
//! - Pinning workers to CPUs (`spawn_on`): it would keep migration and stealing out of the test.
//! - One shared PRNG: choices would depend on the interleaving, and no run could be repeated.
//! - Checking messages only by totals at the end: a lost and a duplicated message cancel out,
//!   and the report could not say which message went wrong.
//! - A wake-up channel that receives one token per pushed item, waiter or not: tokens nobody
//!   needed pile up, so the planted `missing-recheck` bug would show up on one CPU without any
//!   race (a stale token is a spurious wake-up). The queue counts its registered waiters under
//!   the mutex and sends exactly one token per waiter, so the bug needs the real race: another
//!   consumer taking the item between the wake-up and the woken consumer's pop.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::hint::black_box;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use core::time::Duration;

use crate::arch::qemu::ExitCode;
use crate::console::exit;
use crate::ktest::baseline::Baseline;
use crate::records::counters::Totals;
use crate::records::percpu::totals;
use crate::sched::thread::live_threads;
use crate::sched::{JoinHandle, sleep, try_spawn, yield_now};
use crate::sync::after;
use crate::sync::mutex::MutexGuard;
use crate::sync::{Chan, Mutex, chan};
use crate::time::now;

/// Workers per online CPU.
const WORKERS_PER_CPU: usize = 3;
/// A watched thread whose progress tick stands still this long is starving.
const STARVATION: Duration = Duration::from_secs(3);
/// How often the coordinator wakes to watch.
const WATCH_PERIOD: Duration = Duration::from_millis(100);
/// How often a status line is printed.
const STATUS_PERIOD: Duration = Duration::from_millis(2500);
/// How long the shutdown may take once the threads are told to stop.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);
/// How long the consumers may take, once the producers have stopped, to receive everything that
/// was sent (before the lanes and the queue are closed, which would rescue a consumer whose
/// wake-up was lost).
const DRAIN_LIMIT: Duration = Duration::from_secs(3);
/// Deepest recursion, in bytes of stack (less if the stack reservation is small).
const RECURSION_MAX: usize = 150 * 1024;
/// Stack a recursing thread keeps free below its deepest frame, for its other frames.
const RECURSION_MARGIN: usize = 64 * 1024;
/// Items the work queue holds at most.
const QUEUE_CAPACITY: usize = 8;
/// Producers feeding the work queue.
const QUEUE_PRODUCERS: usize = 2;
/// Producers of a lane at most.
const LANE_PRODUCERS_MAX: usize = 2;
/// Heap blocks a worker keeps alive at once.
const HEAP_SLOTS: usize = 8;

// ---- planted bugs ----

/// A bug planted on purpose (`inject=NAME`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bug {
    MissingRecheck,
    NonAtomicCounter,
    LostWakeup,
}

/// Every planted bug: its `inject=` name, and what it does.
const BUGS: [(Bug, &str, &str); 3] = [
    (
        Bug::MissingRecheck,
        "missing-recheck",
        "a woken work-queue consumer pops without checking again that an item is there",
    ),
    (
        Bug::NonAtomicCounter,
        "non-atomic-counter",
        "the shared counter is incremented as load; call; store, without its mutex",
    ),
    (
        Bug::LostWakeup,
        "lost-wakeup",
        "a work-queue producer unregisters a waiting consumer but forgets to send it its token",
    ),
];

impl Bug {
    fn from_name(name: &str) -> Option<Bug> {
        BUGS.iter().find(|(_, n, _)| *n == name).map(|(bug, _, _)| *bug)
    }

    fn name(self) -> &'static str {
        BUGS.iter().find(|(bug, _, _)| *bug == self).map_or("?", |(_, name, _)| name)
    }
}

/// The names of the planted bugs, comma-separated (for messages).
struct BugNames;

impl fmt::Display for BugNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (_, name, _)) in BUGS.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

// ---- random choices ----

/// A `rand::wyrand` sequence. One per thread.
struct Rng(u64);

impl Rng {
    /// The generator of stream `stream` for seed `seed` (mixed by splitmix64, so that nearby
    /// seeds and streams start far apart).
    fn new(seed: u64, stream: u64) -> Rng {
        let mut z = seed ^ stream.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng(z ^ (z >> 31))
    }

    fn next(&mut self) -> u64 {
        crate::rand::wyrand(&mut self.0)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True one time in `n`.
    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// A duration of 0 to `max_us` microseconds.
    fn micros(&mut self, max_us: u64) -> Duration {
        Duration::from_micros(self.below(max_us + 1))
    }

    /// A generator for a child thread (its own stream, decided by this one).
    fn child(&mut self) -> Rng {
        Rng::new(self.next(), STREAM_CHILD)
    }
}

/// Stream numbers of the long-running threads (children get theirs from their parent).
const STREAM_WORKER: u64 = 0;
const STREAM_LANE: u64 = 1000;
const STREAM_QUEUE: u64 = 2000;
const STREAM_CHILD: u64 = 3000;

// ---- operations and progress ----

/// What a thread does; the completed operations of each kind are counted.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Spawn,
    Channel,
    Select,
    Mutex,
    Sleep,
    Alloc,
    Recurse,
    Spin,
    /// A lane message received and checked.
    Lane,
    /// A work-queue item consumed and checked.
    Queue,
}

const KINDS: usize = 10;

impl Kind {
    const ALL: [Kind; KINDS] = [
        Kind::Spawn,
        Kind::Channel,
        Kind::Select,
        Kind::Mutex,
        Kind::Sleep,
        Kind::Alloc,
        Kind::Recurse,
        Kind::Spin,
        Kind::Lane,
        Kind::Queue,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Spawn => "spawn",
            Kind::Channel => "channel",
            Kind::Select => "select",
            Kind::Mutex => "mutex",
            Kind::Sleep => "sleep",
            Kind::Alloc => "alloc",
            Kind::Recurse => "recurse",
            Kind::Spin => "spin",
            Kind::Lane => "lane",
            Kind::Queue => "queue",
        }
    }
}

/// How often a worker picks each operation (out of the sum).
const MIX: [(Kind, u64); 8] = [
    (Kind::Spawn, 3),
    (Kind::Channel, 3),
    (Kind::Select, 3),
    (Kind::Mutex, 4),
    (Kind::Sleep, 2),
    (Kind::Alloc, 4),
    (Kind::Recurse, 2),
    (Kind::Spin, 1),
];

fn pick(rng: &mut Rng) -> Kind {
    let total: u64 = MIX.iter().map(|(_, w)| w).sum();
    let mut n = rng.below(total);
    for (kind, weight) in MIX {
        if n < weight {
            return kind;
        }
        n -= weight;
    }
    unreachable!("the weights add up to the total")
}

/// A watched thread's part in the run.
#[derive(Clone, Copy)]
enum Role {
    Worker(usize),
    LaneProducer { lane: usize, producer: usize },
    LaneConsumer(usize),
    QueueProducer(usize),
    QueueConsumer(usize),
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Worker(i) => write!(f, "worker {i}"),
            Role::LaneProducer { lane, producer } => write!(f, "lane {lane} producer {producer}"),
            Role::LaneConsumer(lane) => write!(f, "lane {lane} consumer"),
            Role::QueueProducer(i) => write!(f, "queue producer {i}"),
            Role::QueueConsumer(i) => write!(f, "queue consumer {i}"),
        }
    }
}

/// A watched thread's progress, published for the watchdog.
struct Slot {
    role: Role,
    /// The thread's id (set when it is started), to find it in a list of threads.
    thread: AtomicU64,
    /// Moves every time the thread gets something done (or at least runs and looks).
    ticks: AtomicU64,
    /// The `Kind` of the operation it started last.
    doing: AtomicU8,
}

impl Slot {
    fn new(role: Role, doing: Kind) -> Slot {
        Slot { role, thread: AtomicU64::new(0), ticks: AtomicU64::new(0), doing: AtomicU8::new(doing as u8) }
    }

    fn tick(&self) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
    }

    fn set_doing(&self, kind: Kind) {
        self.doing.store(kind as u8, Ordering::Relaxed);
    }

    fn doing(&self) -> &'static str {
        Kind::ALL[usize::from(self.doing.load(Ordering::Relaxed))].name()
    }
}

/// `worker 3 (thread 12, last operation: select)`.
impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (thread {}, last operation: {})", self.role, self.thread.load(Ordering::Relaxed), self.doing())
    }
}

/// The first failure (and when, since the start), and how many were reported in all.
struct Failures {
    first: Option<(String, Duration)>,
    count: u64,
}

/// What every thread of the run shares.
struct Shared {
    bug: Option<Bug>,
    /// When the threads were started (`time::now`).
    started: Duration,
    /// Set at the deadline or at the first failure: every thread finishes what it is doing
    /// and returns.
    stop: AtomicBool,
    failures: Mutex<Failures>,
    /// Completed operations, by `Kind`.
    ops: [AtomicU64; KINDS],
    /// One per watched thread.
    slots: Vec<Slot>,
    /// The shared counter: read and written only with `counter_lock` held (unless the
    /// `non-atomic-counter` bug is planted). It is atomic only so that the planted bug is not
    /// undefined behaviour in Rust: its unlocked accesses are plain loads and stores, as the
    /// same bug would be in C.
    counter: AtomicU64,
    counter_lock: Mutex<()>,
    /// Increments of `counter`, counted atomically: the exact answer.
    tally: AtomicU64,
    queue: WorkQueue,
    /// One per lane.
    lanes: Vec<LaneWatch>,
    /// Deepest recursion, in bytes.
    recursion_max: usize,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Records a failure (the first one is reported) and stops the run.
    fn fail(&self, reason: String) {
        let when = now() - self.started;
        let mut failures = self.failures.lock();
        failures.count += 1;
        if failures.first.is_none() {
            failures.first = Some((reason, when));
        }
        drop(failures);
        self.stop.store(true, Ordering::Release);
    }

    fn count(&self, kind: Kind) {
        self.ops[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn ops(&self) -> [u64; KINDS] {
        core::array::from_fn(|i| self.ops[i].load(Ordering::Relaxed))
    }

    /// Increments the shared counter once. The correct path holds the mutex from the load to
    /// the store (and sometimes yields in between: other threads must then wait for it).
    fn increment(&self, yield_inside: bool) {
        if self.bug == Some(Bug::NonAtomicCounter) {
            // The planted bug: a preemption (or another CPU) between the load and the store
            // loses the increments made meanwhile.
            let v = self.counter.load(Ordering::Relaxed);
            self.counter.store(successor(v), Ordering::Relaxed);
        } else {
            let _held = self.counter_lock.lock();
            let v = self.counter.load(Ordering::Relaxed);
            if yield_inside {
                yield_now();
            }
            self.counter.store(successor(v), Ordering::Relaxed);
        }
        self.tally.fetch_add(1, Ordering::Relaxed);
    }
}

/// `v + 1` behind a call: a prologue, so a preemption point under `always-preempt`.
#[inline(never)]
fn successor(v: u64) -> u64 {
    black_box(v) + 1
}

// ---- the work queue ----

/// A work-queue item: (producer, sequence number).
type Item = (usize, u64);

/// The work queue's state, under its mutex.
struct QueueState {
    items: VecDeque<Item>,
    /// Consumers registered to wait for an item; each gets one token on `item_ready`.
    hungry: usize,
    /// Producers registered to wait for room; each gets one token on `room_ready`.
    blocked: usize,
    /// No more items will come (set after the producers have finished).
    closed: bool,
}

/// A bounded FIFO whose waits are built from channels: a condition variable by hand.
///
/// To wait, a thread registers itself in the state (under the mutex), releases the mutex and
/// receives a token; whoever changes the state so that a waiter may proceed unregisters one and
/// sends one token. A token cannot be lost (the channels hold as many as there can be
/// waiters), but it may reach a waiter after another thread has consumed what it announced:
/// so a woken thread must look again (Mesa semantics).
struct WorkQueue {
    state: Mutex<QueueState>,
    item_ready: Chan<()>,
    room_ready: Chan<()>,
    /// Items pushed and popped so far (for the drain check at the end).
    pushed: AtomicU64,
    popped: AtomicU64,
    /// The planted `lost-wakeup` bug.
    lose_wakeups: bool,
}

/// What a pop found.
enum Pop {
    Item(Item),
    /// The queue is closed and empty.
    Closed,
    /// Nothing, though the queue is open: only the planted `missing-recheck` bug does this.
    Empty,
}

impl WorkQueue {
    fn new(producers: usize, consumers: usize, lose_wakeups: bool) -> WorkQueue {
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
    fn push(&self, item: Item) {
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
    fn wait_for_item<'a>(&'a self, mut state: MutexGuard<'a, QueueState>) -> MutexGuard<'a, QueueState> {
        state.hungry += 1;
        drop(state);
        self.item_ready.recv();
        self.state.lock()
    }

    /// Takes the oldest item, waiting while the queue is empty and open. With `recheck` false
    /// (the planted bug) it waits at most once and then pops whatever it finds.
    fn pop(&self, recheck: bool) -> Pop {
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
    fn close(&self) {
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
struct Tally {
    count: u64,
    sum: u64,
    /// XOR of a hash of each sequence number: a duplicate and a loss do not cancel out here.
    mix: u64,
}

impl Tally {
    fn add(&mut self, seq: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(seq);
        self.mix ^= seq.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }

    fn merge(&mut self, other: &Tally) {
        self.count += other.count;
        self.sum = self.sum.wrapping_add(other.sum);
        self.mix ^= other.mix;
    }
}

fn queue_producer(shared: &Shared, index: usize, slot: &Slot, seed: u64) -> Tally {
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

fn queue_consumer(shared: &Shared, index: usize, slot: &Slot) -> [Tally; QUEUE_PRODUCERS] {
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

// ---- lanes ----

/// A lane message: (producer, sequence number).
type Msg = (usize, u64);

/// What a lane's threads publish for the checks: when each producer's sends completed, and how
/// many messages the consumer received.
#[derive(Default)]
struct LaneWatch {
    /// Per producer: messages whose `send` has returned, and when the last one did (`time::now`
    /// in nanoseconds; written before the count, so a reader that sees the count sees a time at
    /// least that late).
    completed: [AtomicU64; LANE_PRODUCERS_MAX],
    completed_at: [AtomicU64; LANE_PRODUCERS_MAX],
    /// Messages the consumer has received.
    received: AtomicU64,
}

impl LaneWatch {
    /// Producer `producer`'s message `seq` has been sent.
    fn sent(&self, producer: usize, seq: u64) {
        self.completed_at[producer].store(now().as_nanos() as u64, Ordering::Relaxed);
        self.completed[producer].store(seq + 1, Ordering::Release);
    }

    /// Had message `seq` of `producer` been sent before `deadline`? `false` if that is not known
    /// (yet): the answer errs only towards "no".
    fn sent_before(&self, producer: usize, seq: u64, deadline: Duration) -> bool {
        self.completed[producer].load(Ordering::Acquire) > seq
            && Duration::from_nanos(self.completed_at[producer].load(Ordering::Relaxed)) < deadline
    }
}

/// A lane's shape, decided by its number.
fn lane_shape(lane: usize) -> (usize, usize) {
    let capacity = [0, 1, 8][lane % 3];
    let producers = 1 + lane % LANE_PRODUCERS_MAX;
    (capacity, producers)
}

/// Sends numbered messages until the run stops; returns how many it sent.
fn lane_producer(shared: &Shared, lane: usize, ch: &Chan<Msg>, producer: usize, slot: &Slot, mut rng: Rng) -> u64 {
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
fn lane_consumer(shared: &Shared, lane: usize, ch: &Chan<Msg>, slot: &Slot, mut rng: Rng) -> [u64; LANE_PRODUCERS_MAX] {
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
fn check_timed_out_receive(
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

// ---- worker operations ----

/// A child's answer to `input`, checked by its parent.
fn child_value(input: u64) -> u64 {
    (input ^ (input >> 31)).wrapping_mul(0xd6e8_feb8_6659_fd93).rotate_left(17)
}

/// What an echo child sends back for `v`.
fn echo_of(v: u64) -> u64 {
    !v.rotate_left(7)
}

/// Spawns 1-4 children that do a little (yield, sleep, recurse) and return a value computed
/// from their input; joins them and checks each value.
fn op_spawn(shared: &Shared, rng: &mut Rng) -> Result<(), String> {
    let n = 1 + rng.below(4);
    let mut children = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let input = rng.next();
        let mut child_rng = rng.child();
        let recursion_max = shared.recursion_max;
        let handle = try_spawn("stress-child", move || {
            match child_rng.below(4) {
                0 => yield_now(),
                1 => sleep(child_rng.micros(500)),
                2 => recurse_and_check(child_rng.below(recursion_max as u64 / 4 + 1) as usize, child_rng.next())?,
                _ => {}
            }
            Ok::<u64, String>(child_value(input))
        })
        .map_err(|e| format!("spawn: {e}"))?;
        children.push((input, handle));
    }
    for (input, child) in children {
        let got = child.join().map_err(|death| format!("spawn: a child died: {death}"))??;
        if got != child_value(input) {
            return Err(format!("spawn: a child returned {got:#x}, expected {:#x}", child_value(input)));
        }
    }
    Ok(())
}

/// Round trips through an echo child over a pair of channels (unbuffered, or capacity 1 or
/// 4, with as many values in flight as fit): every echo must come back, once, in order.
fn op_channel(rng: &mut Rng) -> Result<(), String> {
    let capacity = [0, 1, 4][rng.below(3) as usize];
    let n = 1 + rng.below(32);
    let (to_echo, from_echo): (Chan<u64>, Chan<u64>) = (chan(capacity), chan(capacity));
    let echo = {
        let (input, output) = (to_echo.clone(), from_echo.clone());
        try_spawn("stress-echo", move || {
            let mut echoed = 0u64;
            while let Some(v) = input.recv() {
                output.send(echo_of(v));
                echoed += 1;
            }
            echoed
        })
        .map_err(|e| format!("channel: spawn: {e}"))?
    };
    let base = rng.next();
    let window = capacity.max(1) as u64;
    let exchange = || -> Result<(), String> {
        let (mut sent, mut received) = (0, 0);
        while received < n {
            while sent < n && sent - received < window {
                to_echo.send(base.wrapping_add(sent));
                sent += 1;
            }
            let got = from_echo.recv().ok_or("channel: the echo channel was closed")?;
            let want = echo_of(base.wrapping_add(received));
            if got != want {
                return Err(format!(
                    "channel (capacity {capacity}): echo {received} of {n} is {got:#x}, expected {want:#x} \
                     (lost, duplicated or reordered)"
                ));
            }
            received += 1;
        }
        Ok(())
    };
    let result = exchange();
    to_echo.close();
    // On a failed exchange the echo may still hold a value for us: take it so it can finish.
    while result.is_err() && !echo.is_finished() {
        let _ = from_echo.try_recv();
        yield_now();
    }
    let echoed = echo.join().map_err(|death| format!("channel: the echo child died: {death}"))?;
    result?;
    if echoed != n {
        return Err(format!("channel (capacity {capacity}): the echo child echoed {echoed} values, {n} were sent"));
    }
    if from_echo.try_recv() != Err(()) {
        return Err(format!("channel (capacity {capacity}): a value beyond the {n} echoes"));
    }
    Ok(())
}

/// `select!` with a timeout: on a channel nobody sends on (the timeout must win, not early),
/// or racing a child that sends once after a random delay (whichever wins, the value arrives
/// exactly once); and `select!` with `default` on an empty, then a full channel.
fn op_select(rng: &mut Rng) -> Result<(), String> {
    match rng.below(3) {
        0 => {
            let never: Chan<u64> = chan(rng.below(2) as usize);
            let timeout = rng.micros(2000);
            let start = now();
            let timed_out = crate::select! {
                recv(never) -> _ => false,
                recv(after(timeout)) -> _ => true,
            };
            let waited = now() - start;
            if !timed_out {
                return Err(String::from("select: received on a channel nobody sends on"));
            }
            if waited < timeout {
                return Err(format!("select: timed out after {waited:?}, before its timeout of {timeout:?}"));
            }
        }
        1 => {
            let capacity = rng.below(2) as usize;
            let ch: Chan<u64> = chan(capacity);
            let (value, delay, timeout) = (rng.next(), rng.micros(2000), rng.micros(2000));
            let sender = {
                let ch = ch.clone();
                try_spawn("stress-sender", move || {
                    sleep(delay);
                    ch.send(value);
                })
                .map_err(|e| format!("select: spawn: {e}"))?
            };
            let won = crate::select! {
                recv(ch) -> v => v,
                recv(after(timeout)) -> _ => None,
            };
            // Timed out: the value is still to come (the sender is waiting or about to send).
            let got = match won {
                Some(v) => Some(v),
                None => ch.recv(),
            };
            sender.join().map_err(|death| format!("select: the sender died: {death}"))?;
            if got != Some(value) {
                return Err(format!("select (capacity {capacity}): received {got:?}, expected {value:#x}"));
            }
            if ch.try_recv() != Err(()) {
                return Err(format!("select (capacity {capacity}): the value arrived twice"));
            }
        }
        _ => {
            let ch: Chan<u64> = chan(1);
            let empty = crate::select! {
                recv(ch) -> _ => false,
                default => true,
            };
            if !empty {
                return Err(String::from("select: received from an empty channel instead of the default"));
            }
            let value = rng.next();
            ch.send(value);
            let got = crate::select! {
                recv(ch) -> v => v,
                default => None,
            };
            if got != Some(value) {
                return Err(format!("select: took the default (or {got:?}) with {value:#x} ready"));
            }
        }
    }
    Ok(())
}

/// 1-16 increments of the shared counter; one in eight yields with the mutex held.
fn op_mutex(shared: &Shared, rng: &mut Rng) {
    for _ in 0..1 + rng.below(16) {
        shared.increment(rng.one_in(8));
    }
}

/// Sleeps 0-2 ms; the sleep must not end early.
fn op_sleep(rng: &mut Rng) -> Result<(), String> {
    let duration = rng.micros(2000);
    let start = now();
    sleep(duration);
    let slept = now() - start;
    if slept < duration {
        return Err(format!("sleep: woke after {slept:?}, asked for {duration:?}"));
    }
    Ok(())
}

/// A heap block whose bytes follow from its tag.
struct Block {
    bytes: Vec<u8>,
    tag: u64,
}

fn pattern(tag: u64, i: usize) -> u8 {
    (tag >> ((i & 7) * 8)) as u8 ^ (i >> 3) as u8
}

impl Block {
    fn new(len: usize, tag: u64) -> Block {
        Block { bytes: (0..len).map(|i| pattern(tag, i)).collect(), tag }
    }

    /// Grows the block by `more` bytes (the allocator may move it).
    fn grow(&mut self, more: usize) {
        let len = self.bytes.len();
        let tag = self.tag;
        self.bytes.extend((len..len + more).map(|i| pattern(tag, i)));
    }

    fn check(&self) -> Result<(), String> {
        match self.bytes.iter().enumerate().find(|&(i, &b)| b != pattern(self.tag, i)) {
            None => Ok(()),
            Some((i, &b)) => Err(format!(
                "alloc: byte {i} of a {}-byte heap block at {:p} is {b:#04x}, expected {:#04x}",
                self.bytes.len(),
                self.bytes.as_ptr(),
                pattern(self.tag, i)
            )),
        }
    }
}

/// A random size: mostly small, sometimes a few pages, rarely up to 128 KiB.
fn block_size(rng: &mut Rng) -> usize {
    (match rng.below(20) {
        0 => 8192 + rng.below(120 * 1024),
        1..=5 => 257 + rng.below(8192 - 257),
        _ => 1 + rng.below(256),
    }) as usize
}

/// Replaces, grows or frees one of the worker's heap blocks, checking its bytes first.
fn op_alloc(blocks: &mut [Option<Block>; HEAP_SLOTS], rng: &mut Rng) -> Result<(), String> {
    let slot = &mut blocks[rng.below(HEAP_SLOTS as u64) as usize];
    if let Some(block) = slot.as_mut() {
        block.check()?;
        if rng.one_in(3) {
            block.grow(1 + rng.below(4096) as usize);
            return block.check();
        }
    }
    *slot = if rng.one_in(4) { None } else { Some(Block::new(block_size(rng), rng.next())) };
    Ok(())
}

/// Words of the local array in each recursion frame.
const FRAME_WORDS: usize = 32;

fn frame_word(salt: u64, depth: u64, i: usize) -> u64 {
    (salt ^ depth.wrapping_mul(0x9e37_79b9_7f4a_7c15)).rotate_left(i as u32) ^ i as u64
}

fn frame_sum(salt: u64, depth: u64) -> u64 {
    (0..FRAME_WORDS).fold(0u64, |sum, i| sum.wrapping_add(frame_word(salt, depth, i)))
}

/// Fills a local array, recurses until the stack pointer is below `target`, then sums the
/// array as it is after the deeper calls returned: returns (deepest depth, sum of all frames).
#[inline(never)]
fn descend(depth: u64, target: usize, salt: u64) -> (u64, u64) {
    let mut frame = [0u64; FRAME_WORDS];
    for (i, word) in frame.iter_mut().enumerate() {
        *word = frame_word(salt, depth, i);
    }
    // The array escapes: the compiler must keep it in this frame and read it back from there.
    black_box(&mut frame);
    let (deepest, below) =
        if crate::arch::cpu::read_rsp() > target { descend(depth + 1, target, salt) } else { (depth, 0) };
    let own = frame.iter().fold(0u64, |sum, &w| sum.wrapping_add(w));
    (deepest, below.wrapping_add(own))
}

/// Recurses `bytes` deeper than here and checks that every frame's array survived.
fn recurse_and_check(bytes: usize, salt: u64) -> Result<(), String> {
    let target = crate::arch::cpu::read_rsp().saturating_sub(bytes);
    let (deepest, sum) = descend(0, target, salt);
    let expected = (0..=deepest).fold(0u64, |s, depth| s.wrapping_add(frame_sum(salt, depth)));
    if sum != expected {
        return Err(format!(
            "recurse: {deepest} frames over {bytes} bytes of stack: checksum {sum:#x}, expected {expected:#x} \
             (a stack frame changed under its function)"
        ));
    }
    Ok(())
}

/// Recursion to a random depth, in this thread or in a fresh child.
fn op_recurse(shared: &Shared, rng: &mut Rng) -> Result<(), String> {
    let bytes = rng.below(shared.recursion_max as u64 + 1) as usize;
    let salt = rng.next();
    if rng.one_in(2) {
        return recurse_and_check(bytes, salt);
    }
    try_spawn("stress-deep", move || recurse_and_check(bytes, salt))
        .map_err(|e| format!("recurse: spawn: {e}"))?
        .join()
        .map_err(|death| format!("recurse: the recursing child died: {death}"))?
}

/// The linear congruential step that `op_spin` iterates (Knuth's MMIX constants).
const LCG_MUL: u64 = 6_364_136_223_846_793_005;
const LCG_ADD: u64 = 1_442_695_040_888_963_407;

/// `x` after `n` steps of the LCG, in O(log n): the step is an affine map, and its powers are
/// computed by squaring (`a x + c` twice is `a^2 x + (a + 1) c`).
fn lcg_jump(x: u64, mut n: u64) -> u64 {
    let (mut mul, mut add) = (1u64, 0u64);
    let (mut a, mut c) = (LCG_MUL, LCG_ADD);
    while n > 0 {
        if n & 1 == 1 {
            mul = mul.wrapping_mul(a);
            add = add.wrapping_mul(a).wrapping_add(c);
        }
        c = c.wrapping_mul(a.wrapping_add(1));
        a = a.wrapping_mul(a);
        n >>= 1;
    }
    x.wrapping_mul(mul).wrapping_add(add)
}

/// A tight loop without a single call, up to 200 us, or one time in sixteen 20-30 ms (long
/// enough for the timer to preempt it asynchronously, in `preempt=async`). Its state lives in
/// registers; an asynchronous preemption that failed to restore one would change the result.
fn op_spin(rng: &mut Rng) -> Result<(), String> {
    let micros = if rng.one_in(16) { 20_000 + rng.below(10_000) } else { rng.below(200) };
    let start = rng.next();
    let end = crate::arch::cpu::rdtsc() + micros * crate::time::tsc_hz() / 1_000_000;
    let (mut x, mut steps) = (start, 0u64);
    while crate::arch::cpu::rdtsc() < end {
        x = x.wrapping_mul(LCG_MUL).wrapping_add(LCG_ADD);
        steps += 1;
    }
    let expected = lcg_jump(start, steps);
    if x != expected {
        return Err(format!(
            "spin: {steps} steps over {micros} us gave {x:#x}, expected {expected:#x} (registers changed under a \
             preempted loop)"
        ));
    }
    Ok(())
}

fn worker(shared: &Shared, index: usize, slot: &Slot, seed: u64) {
    let mut rng = Rng::new(seed, STREAM_WORKER + index as u64);
    let mut blocks: [Option<Block>; HEAP_SLOTS] = Default::default();
    while !shared.stopped() {
        let kind = pick(&mut rng);
        slot.set_doing(kind);
        let done = match kind {
            Kind::Spawn => op_spawn(shared, &mut rng),
            Kind::Channel => op_channel(&mut rng),
            Kind::Select => op_select(&mut rng),
            Kind::Mutex => {
                op_mutex(shared, &mut rng);
                Ok(())
            }
            Kind::Sleep => op_sleep(&mut rng),
            Kind::Alloc => op_alloc(&mut blocks, &mut rng),
            Kind::Recurse => op_recurse(shared, &mut rng),
            Kind::Spin => op_spin(&mut rng),
            Kind::Lane | Kind::Queue => unreachable!("not in the workers' mix"),
        };
        match done {
            Ok(()) => shared.count(kind),
            Err(reason) => shared.fail(format!("worker {index}: {reason}")),
        }
        slot.tick();
        // Let others run even without timer preemption (`preempt=off`).
        yield_now();
    }
    for block in blocks.iter().flatten() {
        if let Err(reason) = block.check() {
            shared.fail(format!("worker {index}: {reason}"));
        }
    }
}

// ---- the coordinator ----

/// Figures for the final line (no heap: it is built before the memory check).
struct Summary {
    elapsed: Duration,
    ops: [u64; KINDS],
    counter: u64,
    during: Totals,
}

/// Prints the planted bugs.
fn print_bugs() {
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
const MIN_OPS_PER_SECOND: u64 = 500;

/// Did the run do the work it is there to do? Enough operations, of every kind (runs of 2 s and
/// more); asynchronous preemptions of its call-free loops (with `preempt=async`, 2 s and more);
/// threads stolen between CPUs (with more than one).
fn check_work(summary: &Summary, seconds: u64, cpus: usize) -> Result<(), String> {
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
type Watched<T> = Vec<(usize, JoinHandle<T>)>;

/// Starts a watched thread with a slot of its own.
fn start<T, F>(shared: &Arc<Shared>, slot: usize, name: &str, f: F) -> Result<(usize, JoinHandle<T>), String>
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
fn torture(duration: Duration, seed: u64, bug: Option<Bug>, cpus: usize) -> Result<Summary, String> {
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
struct Lane {
    ch: Chan<Msg>,
    producers: Watched<u64>,
    consumer: Watched<[u64; LANE_PRODUCERS_MAX]>,
}

/// Every long-running thread of the run.
struct Threads {
    workers: Watched<()>,
    lanes: Vec<Lane>,
    queue_producers: Watched<Tally>,
    queue_consumers: Watched<[Tally; QUEUE_PRODUCERS]>,
}

/// Starts every thread. On an error some have started: they stop with the run (the caller sets
/// `stop`), so they are detached here rather than joined.
fn launch(shared: &Arc<Shared>, seed: u64, workers: usize, lanes: usize, consumers: usize) -> Result<Threads, String> {
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
fn watch(shared: &Shared, duration: Duration, before: &Totals) {
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
fn print_threads() {
    crate::println!("stress: threads now:");
    crate::sched::thread::for_each_thread(|g| {
        crate::println!("stress:   {} {:?} {}", g, g.state(), g.wait_reason.get().as_str());
    });
}

/// Waits (polling) until every thread in `threads` has finished, or the shutdown time is up.
fn await_finished<T>(shared: &Shared, threads: &Watched<T>, deadline: Duration) -> Result<(), String> {
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
fn drained(what: &str, check: impl Fn() -> Result<(), String>) -> Result<(), String> {
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
fn join_all<T>(shared: &Shared, threads: Watched<T>) -> Result<Vec<T>, String> {
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
    fn shut_down(self, shared: &Shared) -> Result<(), String> {
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

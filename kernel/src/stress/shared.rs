//! What the torture test's threads share: each thread's seeded random choices (`Rng`), the kinds
//! of operation and their mix, the watched threads' slots (role, progress tick, last operation),
//! and the `Shared` state (the counter, the failure, the stop flag).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::hint::black_box;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use core::time::Duration;

use super::bugs::Bug;
use super::lanes::LaneWatch;
use super::queue::WorkQueue;
use crate::sched::yield_now;
use crate::sync::Mutex;
use crate::time::now;

/// A `rand::wyrand` sequence. One per thread.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    /// The generator of stream `stream` for seed `seed` (mixed by splitmix64, so that nearby
    /// seeds and streams start far apart).
    pub(super) fn new(seed: u64, stream: u64) -> Rng {
        let mut z = seed ^ stream.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng(z ^ (z >> 31))
    }

    pub(super) fn next(&mut self) -> u64 {
        crate::rand::wyrand(&mut self.0)
    }

    /// A number in `0..n` (`n` > 0).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True one time in `n`.
    pub(super) fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// A duration of 0 to `max_us` microseconds.
    pub(super) fn micros(&mut self, max_us: u64) -> Duration {
        Duration::from_micros(self.below(max_us + 1))
    }

    /// A generator for a child thread (its own stream, decided by this one).
    pub(super) fn child(&mut self) -> Rng {
        Rng::new(self.next(), STREAM_CHILD)
    }
}

/// Stream numbers of the long-running threads (children get theirs from their parent).
pub(super) const STREAM_WORKER: u64 = 0;
pub(super) const STREAM_LANE: u64 = 1000;
pub(super) const STREAM_QUEUE: u64 = 2000;
pub(super) const STREAM_CHILD: u64 = 3000;

// ---- operations and progress ----

/// What a thread does; the completed operations of each kind are counted.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Kind {
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

pub(super) const KINDS: usize = 10;

impl Kind {
    pub(super) const ALL: [Kind; KINDS] = [
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

    pub(super) fn name(self) -> &'static str {
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
pub(super) const MIX: [(Kind, u64); 8] = [
    (Kind::Spawn, 3),
    (Kind::Channel, 3),
    (Kind::Select, 3),
    (Kind::Mutex, 4),
    (Kind::Sleep, 2),
    (Kind::Alloc, 4),
    (Kind::Recurse, 2),
    (Kind::Spin, 1),
];

pub(super) fn pick(rng: &mut Rng) -> Kind {
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
pub(super) enum Role {
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
pub(super) struct Slot {
    pub(super) role: Role,
    /// The thread's id (set when it is started), to find it in a list of threads.
    pub(super) thread: AtomicU64,
    /// Moves every time the thread gets something done (or at least runs and looks).
    pub(super) ticks: AtomicU64,
    /// The `Kind` of the operation it started last.
    pub(super) doing: AtomicU8,
}

impl Slot {
    pub(super) fn new(role: Role, doing: Kind) -> Slot {
        Slot { role, thread: AtomicU64::new(0), ticks: AtomicU64::new(0), doing: AtomicU8::new(doing as u8) }
    }

    pub(super) fn tick(&self) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn set_doing(&self, kind: Kind) {
        self.doing.store(kind as u8, Ordering::Relaxed);
    }

    pub(super) fn doing(&self) -> &'static str {
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
pub(super) struct Failures {
    pub(super) first: Option<(String, Duration)>,
    pub(super) count: u64,
}

/// What every thread of the run shares.
pub(super) struct Shared {
    pub(super) bug: Option<Bug>,
    /// When the threads were started (`time::now`).
    pub(super) started: Duration,
    /// Set at the deadline or at the first failure: every thread finishes what it is doing
    /// and returns.
    pub(super) stop: AtomicBool,
    pub(super) failures: Mutex<Failures>,
    /// Completed operations, by `Kind`.
    pub(super) ops: [AtomicU64; KINDS],
    /// One per watched thread.
    pub(super) slots: Vec<Slot>,
    /// The shared counter: read and written only with `counter_lock` held (unless the
    /// `non-atomic-counter` bug is planted). It is atomic only so that the planted bug is not
    /// undefined behaviour in Rust: its unlocked accesses are plain loads and stores, as the
    /// same bug would be in C.
    pub(super) counter: AtomicU64,
    pub(super) counter_lock: Mutex<()>,
    /// Increments of `counter`, counted atomically: the exact answer.
    pub(super) tally: AtomicU64,
    pub(super) queue: WorkQueue,
    /// One per lane.
    pub(super) lanes: Vec<LaneWatch>,
    /// Deepest recursion, in bytes.
    pub(super) recursion_max: usize,
}

impl Shared {
    pub(super) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Records a failure (the first one is reported) and stops the run.
    pub(super) fn fail(&self, reason: String) {
        let when = now() - self.started;
        let mut failures = self.failures.lock();
        failures.count += 1;
        if failures.first.is_none() {
            failures.first = Some((reason, when));
        }
        drop(failures);
        self.stop.store(true, Ordering::Release);
    }

    pub(super) fn count(&self, kind: Kind) {
        self.ops[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn ops(&self) -> [u64; KINDS] {
        core::array::from_fn(|i| self.ops[i].load(Ordering::Relaxed))
    }

    /// Increments the shared counter once. The correct path holds the mutex from the load to
    /// the store (and sometimes yields in between: other threads must then wait for it).
    pub(super) fn increment(&self, yield_inside: bool) {
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
pub(super) fn successor(v: u64) -> u64 {
    black_box(v) + 1
}

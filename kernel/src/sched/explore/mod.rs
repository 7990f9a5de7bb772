//! The schedule explorer: where the forced-preemption build (`always-preempt`) preempts, chosen
//! by `strategy=` and seeded by `seed=`, so that a failing schedule can be run again.
//!
//! Strategies (docs/stress.md explains when each one finds what):
//! - `every`: every prologue of a preemptible thread is a preemption (Go's `mayMoreStackPreempt`;
//!   the default of the build).
//! - `random:N`: each prologue is a preemption with probability 1/N. Instead of a draw per
//!   prologue, the thread carries the ordinal of its next forced prologue (`next_forced`), drawn
//!   from the geometric distribution: the hook only counts and compares.
//! - `async:N`: no prologue points; the timer fires at random moments, N instructions apart on
//!   average under `--icount`, and injects an asynchronous preemption wherever it lands
//!   (`sched::preempt::explore_timer`).
//! - `pct:D`: PCT (Burckhardt et al., ASPLOS 2010) on one CPU (`pct`): random priorities,
//!   every prologue a scheduling point, D-1 priority change points.
//! - `points`: exactly the points of a list read from fw_cfg (`replay`): for `shrink`.
//!
//! Invariants: g0 and interrupt contexts never reach a forced point (the hook only counts for
//! threads); a point that finds the thread not preemptible is deferred to the thread's next
//! prologue, so it is never lost; every draw comes from the per-CPU state seeded from `seed=` and
//! the CPU number, so under `--icount` on one CPU the whole schedule is a function of the image,
//! the command line and the seed (`digest` proves it).

pub mod digest;
pub mod pct;
pub mod replay;
pub mod seeded;
mod tests;

use core::fmt;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::records::g::G;
use crate::records::percpu::PerCpu;

/// Where the forced-preemption build preempts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Strategy {
    Every,
    Random { one_in: u64 },
    Async { mean_instructions: u64 },
    Pct { depth: u32 },
    Points,
}

impl Strategy {
    /// Parses the value of `strategy=`.
    pub fn parse(text: &str) -> Result<Strategy, &'static str> {
        let (name, arg) = text.split_once(':').unwrap_or((text, ""));
        let number = |min: u64, max: u64, what: &'static str| match arg.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(what),
        };
        match name {
            "every" if arg.is_empty() => Ok(Strategy::Every),
            "random" => Ok(Strategy::Random { one_in: number(1, 1 << 40, "random:N needs N in 1..=2^40")? }),
            "async" => Ok(Strategy::Async {
                mean_instructions: number(
                    10_000,
                    1 << 40,
                    "async:N needs a mean N in 10000..=2^40 instructions (a timer interrupt alone costs thousands)",
                )?,
            }),
            "pct" => Ok(Strategy::Pct { depth: number(1, 16, "pct:D needs a depth D in 1..=16")? as u32 }),
            "points" if arg.is_empty() => Ok(Strategy::Points),
            _ => Err("expected every, random:N, async:N, pct:D or points"),
        }
    }

    /// Does this strategy choose preemption points at prologues?
    pub fn at_prologues(self) -> bool {
        !matches!(self, Strategy::Async { .. })
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::Every => write!(f, "every"),
            Strategy::Random { one_in } => write!(f, "random:{one_in}"),
            Strategy::Async { mean_instructions } => write!(f, "async:{mean_instructions}"),
            Strategy::Pct { depth } => write!(f, "pct:{depth}"),
            Strategy::Points => write!(f, "points"),
        }
    }
}

const EVERY: u8 = 0;
const RANDOM: u8 = 1;
const ASYNC: u8 = 2;
const PCT: u8 = 3;
const POINTS: u8 = 4;

static KIND: AtomicU8 = AtomicU8::new(EVERY);
/// The strategy's number (N of random and async, D of pct).
static ARG: AtomicU64 = AtomicU64::new(0);
static RECORD: AtomicU8 = AtomicU8::new(0);

/// The strategy in force.
pub fn strategy() -> Strategy {
    let arg = ARG.load(Ordering::Relaxed);
    match KIND.load(Ordering::Relaxed) {
        RANDOM => Strategy::Random { one_in: arg },
        ASYNC => Strategy::Async { mean_instructions: arg },
        PCT => Strategy::Pct { depth: arg as u32 },
        POINTS => Strategy::Points,
        _ => Strategy::Every,
    }
}

/// Sets the strategy and the seed (at boot, or by a test between its trials). `record`: print
/// every preemption point taken at the end of the run (for `shrink`). The points are recorded
/// whether or not they are printed: recording costs instructions, and under `--icount` a run
/// that did more instructions would take its timer interrupts elsewhere -- asking for the record
/// must not change the schedule it records.
pub fn configure(strategy: Strategy, seed: u64, record: bool) {
    let (kind, arg) = match strategy {
        Strategy::Every => (EVERY, 0),
        Strategy::Random { one_in } => (RANDOM, one_in),
        Strategy::Async { mean_instructions } => (ASYNC, mean_instructions),
        Strategy::Pct { depth } => (PCT, u64::from(depth)),
        Strategy::Points => (POINTS, 0),
    };
    seeded::set_seed(seed);
    ARG.store(arg, Ordering::Relaxed);
    if let Strategy::Random { one_in } = strategy
        && one_in > 1
    {
        // 1 - 1/N as a 64-bit fraction.
        let keep = (((one_in - 1) as u128) << 64) / one_in as u128;
        NEG_LOG2_MISS.store(neg_log2(keep.min(u128::from(u64::MAX)) as u64), Ordering::Relaxed);
    }
    RECORD.store(record as u8, Ordering::Relaxed);
    KIND.store(kind, Ordering::Release);
}

/// Is the PCT scheduler in force?
#[inline(always)]
pub fn pct_active() -> bool {
    cfg!(feature = "always-preempt") && KIND.load(Ordering::Relaxed) == PCT
}

/// Is the `async:N` timer in force?
#[inline(always)]
pub fn async_active() -> bool {
    cfg!(feature = "always-preempt") && KIND.load(Ordering::Relaxed) == ASYNC
}

/// `-log2(1 - 1/N)` of `random:N` in fixed point (`neg_log2`), set by `configure`.
static NEG_LOG2_MISS: AtomicU64 = AtomicU64::new(0);

/// Fractional bits of `neg_log2`'s fixed-point results.
const LOG_BITS: u32 = 48;

/// `-log2(x / 2^64)` for `x` in `1..2^64`, in fixed point with `LOG_BITS` fractional bits: the
/// integer part from the leading zeros, the fraction bit by bit by squaring the mantissa (no
/// floating point: the kernel has only soft floats, a `log` of which costs thousands of
/// instructions, at every draw).
fn neg_log2(x: u64) -> u64 {
    let zeros = u64::from(x.leading_zeros());
    // x = 2^(63 - zeros) * m with m in [1, 2), kept in Q1.63.
    let mut m = u128::from(x << zeros);
    let mut log_m = 0u64;
    for _ in 0..LOG_BITS {
        m = (m * m) >> 63;
        log_m <<= 1;
        if m >= 1 << 64 {
            log_m |= 1;
            m >>= 1;
        }
    }
    // log2(x / 2^64) = (63 - zeros) - 64 + log2(m).
    ((zeros + 1) << LOG_BITS) - log_m
}

/// Prologues until the next point of `random:N`: geometric with success probability 1/N (the
/// number of trials up to and including the first success), by inversion:
/// `ceil(log2 U / log2(1 - 1/N))` for U uniform in (0, 1).
fn geometric(cpu: &PerCpu, one_in: u64) -> u64 {
    let miss = NEG_LOG2_MISS.load(Ordering::Relaxed);
    if one_in == 1 || miss == 0 {
        return 1;
    }
    let u = seeded::draw(cpu).max(1);
    neg_log2(u).div_ceil(miss).max(1)
}

/// The ordinal of `g`'s next forced prologue, after prologue `now`.
fn next_point(cpu: &PerCpu, g: &G, now: u64) -> u64 {
    match KIND.load(Ordering::Relaxed) {
        EVERY | PCT => now + 1,
        RANDOM => now.saturating_add(geometric(cpu, ARG.load(Ordering::Relaxed))),
        POINTS => replay::next_after(g.explore.key.get(), now),
        _ => u64::MAX,
    }
}

/// A thread record is being spawned by `parent` (the running context): gives it its stable
/// key, its first forced point, and (PCT) its priority. Interrupts off.
pub fn on_spawn(cpu: &PerCpu, parent: &G, g: &G) {
    let index = parent.explore.children.get();
    parent.explore.children.set(index + 1);
    let key = digest::mix(digest::mix(0x51_7cc1_b727_220a, parent.explore.key.get()), index) | 1;
    g.explore.reset(key, u64::MAX, 0);
    if cfg!(feature = "always-preempt") {
        g.explore.next_forced.store(next_point(cpu, g, 0), Ordering::Relaxed);
        if pct_active() {
            g.explore.priority.set(pct::initial_priority(cpu));
        }
    }
}

/// What a forced point decided.
pub enum Decision {
    /// Preempt the thread now.
    Preempt,
    /// Let it run on.
    Continue,
}

/// Switched-out thread `g` reached its forced point (the slow path, on g0). Draws its next
/// point and says whether to preempt it now. `rip` is the hook's return address (inside the
/// preempted function), `caller` the preempted function's own return address.
pub fn at_forced_point(cpu: &PerCpu, g: &G, preemptible: bool, rip: usize, caller: usize) -> Decision {
    let now = g.explore.prologues.load(Ordering::Relaxed);
    if !preemptible {
        // Deferred, never lost: the next prologue is a point again.
        g.explore.next_forced.store(now + 1, Ordering::Relaxed);
        cpu.counters.preempt_deferred.fetch_add(1, Ordering::Relaxed);
        return Decision::Continue;
    }
    g.explore.next_forced.store(next_point(cpu, g, now), Ordering::Relaxed);
    cpu.counters.forced_points.fetch_add(1, Ordering::Relaxed);
    let preempt = !pct_active() || pct::at_step(cpu, g);
    if preempt {
        cpu.counters.forced_preempts.fetch_add(1, Ordering::Relaxed);
        g.explore.forced.fetch_add(1, Ordering::Relaxed);
        replay::record(g.explore.key.get(), now, rip, caller);
        Decision::Preempt
    } else {
        Decision::Continue
    }
}

/// Prints what the explorer did, at the end of a run (`console::exit` calls it): the strategy,
/// the schedule digest, the PCT bound, and the recorded points and coverage when asked for.
pub fn report() {
    let totals = crate::records::percpu::totals();
    let online = crate::records::percpu::CPUS_ONLINE.load(Ordering::Relaxed) as usize;
    let (digest, switches) = digest::combined(online);
    if cfg!(feature = "always-preempt") {
        crate::println!(
            "explore: strategy {}, seed {}: {} forced preemptions at {} prologue points, {} async injections",
            strategy(),
            seeded::seed(),
            totals.forced_preempts,
            totals.forced_points,
            totals.explore_injections,
        );
    }
    crate::println!("schedule digest: {digest:016x} ({switches} events on {online} CPU(s))");
    if pct_active() {
        pct::report(totals.spawns);
    }
    if RECORD.load(Ordering::Relaxed) != 0 {
        replay::print_recorded();
    }
    replay::print_coverage();
}

//! PCT, probabilistic concurrency testing (Burckhardt, Kothari, Musuvathi, Nagarakatte, ASPLOS
//! 2010), as the scheduler of one CPU.
//!
//! Every thread gets a random priority when it is spawned; the runnable thread with the highest
//! priority always runs; every prologue of a thread is a scheduling point (a *step*), and at
//! D-1 steps drawn uniformly from 1..=K (the *change points*, K = `pct_steps=`) the running
//! thread drops below every initial priority. A bug of depth D (D ordering constraints between
//! steps must hold) in a run of n threads and k steps is then hit with probability at least
//! 1/(n * k^(D-1)) per run; `report` prints that bound with the run's own n and k.
//!
//! Two rules of our own: a thread that yields drops below every thread that has not (a thread
//! spinning on `yield_now` would otherwise starve the one it waits for, for ever); and threads
//! already runnable when PCT starts keep priority 0 until they are rescheduled.
//!
//! Invariant: PCT runs on one CPU (the boot refuses `strategy=pct` with more), and every
//! function here runs on that CPU with interrupts off (on g0, or in `ready`): that is what makes
//! the plain cells of `ReadySet` safe.

use core::cell::Cell;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::records::g::G;
use crate::records::percpu::PerCpu;

/// Priorities at or above this are initial (random) priorities; below it, yields and change
/// points (change point i gets priority D - i, so later change points go lower still).
const INITIAL_BASE: u64 = 1 << 62;
const YIELD_BASE: u64 = 1 << 40;

/// The runnable threads under PCT, an intrusive list through `G::sched_link`.
struct ReadySet {
    head: Cell<*mut G>,
    len: Cell<usize>,
    /// The highest priority in the list (0 when empty).
    max: Cell<u64>,
}

// SAFETY: used on one CPU only, with interrupts off (module invariant).
unsafe impl Sync for ReadySet {}

static READY: ReadySet = ReadySet { head: Cell::new(core::ptr::null_mut()), len: Cell::new(0), max: Cell::new(0) };

static DEPTH: AtomicU64 = AtomicU64::new(1);
/// K: the change points are drawn over steps 1..=K.
static HORIZON: AtomicU64 = AtomicU64::new(1_000_000);
static STEPS: AtomicU64 = AtomicU64::new(0);
static SPAWNS_AT_PLAN: AtomicU64 = AtomicU64::new(0);
static PLANNER_THREADS: AtomicU64 = AtomicU64::new(0);
static NEXT_YIELD_PRIORITY: AtomicU64 = AtomicU64::new(YIELD_BASE);
/// The change points, sorted; unused slots are 0.
static CHANGE_POINTS: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];

/// Starts a PCT run of depth `depth` whose change points fall in steps 1..=`horizon`: draws
/// them from `cpu`'s seeded sequence and resets the step count (the boot, or a test's trial).
pub fn plan(cpu: &PerCpu, depth: u32, horizon: u64, spawns_so_far: u64, planner: &G) {
    DEPTH.store(u64::from(depth), Ordering::Relaxed);
    HORIZON.store(horizon.max(1), Ordering::Relaxed);
    STEPS.store(0, Ordering::Relaxed);
    SPAWNS_AT_PLAN.store(spawns_so_far, Ordering::Relaxed);
    // The planning thread takes part like any other (g0, at boot, does not).
    PLANNER_THREADS.store(planner.is_thread() as u64, Ordering::Relaxed);
    if planner.is_thread() {
        planner.explore.priority.set(initial_priority(cpu));
    }
    NEXT_YIELD_PRIORITY.store(YIELD_BASE, Ordering::Relaxed);
    let mut points = [0u64; 16];
    for point in points.iter_mut().take(depth as usize - 1) {
        *point = 1 + super::seeded::draw(cpu) % horizon.max(1);
    }
    points[..depth as usize - 1].sort_unstable();
    for (slot, point) in CHANGE_POINTS.iter().zip(points) {
        slot.store(point, Ordering::Relaxed);
    }
}

/// A fresh thread's random priority.
pub fn initial_priority(cpu: &PerCpu) -> u64 {
    INITIAL_BASE + super::seeded::draw(cpu) % INITIAL_BASE
}

/// Step: the running thread `g` reached a scheduling point. Applies a change point if this is
/// one, and says whether a runnable thread now has a higher priority (then `g` is preempted).
pub fn at_step(_cpu: &PerCpu, g: &G) -> bool {
    let step = STEPS.fetch_add(1, Ordering::Relaxed) + 1;
    let depth = DEPTH.load(Ordering::Relaxed);
    for (i, point) in CHANGE_POINTS.iter().enumerate().take(depth as usize - 1) {
        if point.load(Ordering::Relaxed) == step {
            g.explore.priority.set(depth - 1 - i as u64);
        }
    }
    READY.max.get() > g.explore.priority.get()
}

/// `g`, running, gives way with `yield_now`: it drops below every thread that has not yielded.
pub fn yielded(g: &G) {
    g.explore.priority.set(NEXT_YIELD_PRIORITY.fetch_sub(1, Ordering::Relaxed).max(depth_floor()));
}

fn depth_floor() -> u64 {
    DEPTH.load(Ordering::Relaxed) + 1
}

/// Makes `g` runnable under PCT.
pub fn put(g: &'static G) {
    g.sched_link.set(READY.head.get());
    READY.head.set(g as *const G as *mut G);
    READY.len.set(READY.len.get() + 1);
    READY.max.set(READY.max.get().max(g.explore.priority.get()));
}

/// Is any thread runnable under PCT?
pub fn has_ready() -> bool {
    READY.len.get() > 0
}

/// Takes the runnable thread with the highest priority.
pub fn take() -> Option<&'static G> {
    let mut best: *mut G = core::ptr::null_mut();
    let mut best_prev: *mut G = core::ptr::null_mut();
    let mut prev: *mut G = core::ptr::null_mut();
    let mut at = READY.head.get();
    let mut second = 0;
    while !at.is_null() {
        // SAFETY: every pointer in the list is a live thread record put there by `put`.
        let g = unsafe { &*at };
        // SAFETY: as above.
        let best_priority = if best.is_null() { 0 } else { unsafe { (*best).explore.priority.get() } };
        if best.is_null() || g.explore.priority.get() > best_priority {
            second = second.max(best_priority);
            best = at;
            best_prev = prev;
        } else {
            second = second.max(g.explore.priority.get());
        }
        prev = at;
        at = g.sched_link.get();
    }
    if best.is_null() {
        return None;
    }
    // SAFETY: `best` and `best_prev` are in the list (found above).
    let g: &'static G = unsafe { &*best };
    if best_prev.is_null() {
        READY.head.set(g.sched_link.get());
    } else {
        // SAFETY: as above.
        unsafe { (*best_prev).sched_link.set(g.sched_link.get()) };
    }
    g.sched_link.set(core::ptr::null_mut());
    READY.len.set(READY.len.get() - 1);
    READY.max.set(second);
    Some(g)
}

/// Steps counted since `plan`, threads spawned since, the depth, and K.
pub fn run_figures(spawns_now: u64) -> (u64, u64, u64, u64) {
    let threads = spawns_now - SPAWNS_AT_PLAN.load(Ordering::Relaxed) + PLANNER_THREADS.load(Ordering::Relaxed);
    (STEPS.load(Ordering::Relaxed), threads, DEPTH.load(Ordering::Relaxed), HORIZON.load(Ordering::Relaxed))
}

/// The PCT bound 1/(n * k^(D-1)) for `threads` threads and `steps` steps at `depth`.
pub fn bound(threads: u64, steps: u64, depth: u64) -> f64 {
    1.0 / (threads.max(1) as f64 * libm::pow(steps.max(1) as f64, (depth - 1) as f64))
}

/// Prints the run's PCT figures and its bound. The change points were drawn over 1..=K, not
/// over the k steps the run took: the guarantee is 1/(n * max(k, K)^(D-1)), and when k > K
/// it covers only bugs whose steps lie within the first K.
pub fn report(spawns_now: u64) {
    let (steps, threads, depth, horizon) = run_figures(spawns_now);
    crate::println!(
        "pct: depth {depth}, n = {threads} threads, k = {steps} steps (a step: a prologue of a thread), change points \
         drawn over steps 1..={horizon}: bound 1/(n*max(k,K)^(D-1)) = {:.3e}{}",
        bound(threads, steps.max(horizon), depth),
        if steps > horizon { " (for bugs within the first K steps)" } else { "" },
    );
}

//! The coordinator (the first thread, `run`): starts every thread, watches for starvation and
//! prints a status line, stops the run at the deadline, drains and shuts everything down, and
//! makes the final checks (memory, work done).

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;

use super::bugs::{BUGS, Bug, BugNames};
use super::lanes::{LaneWatch, lane_shape};
use super::queue::QUEUE_PRODUCERS;
use super::queue::WorkQueue;
use super::shared::{Failures, KINDS, Kind, MIX, Role, Shared, Slot};
use super::threads::{launch, print_threads};
use crate::arch::qemu::ExitCode;
use crate::console::exit;
use crate::ktest::baseline::Baseline;
use crate::records::counters::Totals;
use crate::records::percpu::totals;
use crate::sched::sleep;
use crate::sched::thread::live_threads;
use crate::sync::Mutex;
use crate::time::now;

/// Workers per online CPU.
const WORKERS_PER_CPU: usize = 3;
/// A watched thread whose progress tick stands still this long is starving.
const STARVATION: Duration = Duration::from_secs(3);
/// How often the coordinator wakes to watch.
const WATCH_PERIOD: Duration = Duration::from_millis(100);
/// How often a status line is printed.
const STATUS_PERIOD: Duration = Duration::from_millis(2500);
/// Deepest recursion, in bytes of stack (less if the stack reservation is small).
const RECURSION_MAX: usize = 150 * 1024;
/// Stack a recursing thread keeps free below its deepest frame, for its other frames.
const RECURSION_MARGIN: usize = 64 * 1024;

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
    let built = if crate::planted::BUILT { "in this build" } else { "only in a build with --features planted-bugs" };
    crate::println!("stress: planted kernel bugs (inject=NAME, {built}):");
    for info in crate::planted::BUGS {
        crate::println!("stress:   {:<26} {:<16} {}", info.name, info.subsystem, info.models);
    }
}

/// Ends a failed torture run: every thread's traceback (what each was doing when the failure was
/// seen), then the failure exit.
fn failed() -> ! {
    crate::sched::traceback::print_all();
    exit(ExitCode::Failure)
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
        // A planted kernel bug was selected at boot (`planted`): the torture test runs as usual.
        name if crate::planted::from_name(name).is_some() => None,
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
        bug.map(Bug::name).or(crate::planted::selected().map(|info| info.name)).unwrap_or("none")
    );

    let base = Baseline::take();
    let threads_before = live_threads();
    let summary = match torture(Duration::from_secs(seconds), seed, bug, cpus) {
        Ok(summary) => summary,
        Err(reason) => {
            crate::println!("stress: FAILURE: {reason}");
            failed()
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
        failed();
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
        failed();
    }
    if let Err(reason) = check_work(&summary, seconds, cpus) {
        crate::println!("stress: FAILURE: {reason}");
        failed();
    }
    let Summary { elapsed, ops, counter, during: t } = summary;
    let mut line = format!("stress: SUCCESS ({:.1} s, {} ops:", elapsed.as_secs_f64(), ops.iter().sum::<u64>());
    for kind in Kind::ALL {
        line.push_str(&format!(" {} {}", kind.name(), ops[kind as usize]));
    }
    crate::println!(
        "{line}; counter {counter} exact; {} spawns, {} switches, preemptions coop/async/deferred {}/{}/{}, \
         steals {}, migrations {}, stack growths {}; threads joined; memory: frames {} before, {} after; heap {} bytes before, \
         {} after)",
        t.spawns,
        t.switches,
        t.preempt_coop,
        t.preempt_async,
        t.preempt_deferred,
        t.steals,
        t.migrations,
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
/// threads moving between CPUs (with more than one).
///
/// Moving is checked, not stealing: a CPU steals only when it runs out of work, and in a busy
/// `always-preempt` run neither CPU may run out after the start (at 339d0ff, the 1 s runs of seeds
/// 1 and 6 under `--icount` at two CPUs stole nothing). A thread readied or spawned by a thread
/// on another CPU, or taken from the global queue, moves too; a scheduler whose CPUs never share
/// a thread moves none. (So a broken stealer alone does not fail this check: the stealing has its
/// own tests, `sched::balance_tests` and `sched::smp_tests`.)
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
    if cpus > 1 && summary.during.migrations == 0 {
        return Err(format!("no thread moved between the {cpus} CPUs: each ran only its own threads"));
    }
    Ok(())
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
                "stress: {:.1} s, {} ops, {} switches, preemptions coop/async/deferred {}/{}/{}, steals {}, migrations {}, \
                 threads {}",
                (t - started).as_secs_f64(),
                shared.ops().iter().sum::<u64>(),
                d.switches,
                d.preempt_coop,
                d.preempt_async,
                d.preempt_deferred,
                d.steals,
                d.migrations,
                live_threads()
            );
        }
    }
}

//! Short runs of the kernel's torture test (`stress=SECONDS`), as `cargo test` runs them:
//! the normal build at four CPUs and the `always-preempt` build at two must succeed, and each
//! planted bug (`inject=`) must be caught by the `always-preempt` build (the lost wake-up by the
//! normal build too); and the `always-preempt` build at two CPUs must survive thick asynchronous
//! preemption (`strategy=async:20000`), and a clean run under `--icount` at two CPUs must pass its
//! work check. A SUCCESS line must carry memory figures that match.
//!
//! Every check reads the kernel's own verdict line (`stress: SUCCESS (...)` or
//! `stress: FAILURE: reason`), not just QEMU's exit status.

use std::time::Duration;

use anyhow::{Result, ensure};
use boot::{Outcome, RunConfig, Variant};
use libtest_mimic::{Arguments, Trial};
use qemu_tests::kernels;

/// Guest seconds of the successful runs (the budget is at most 20).
const SECONDS: u64 = 15;
/// Guest seconds of the planted-bug runs (each bug is caught within a second or at the end).
const BUG_SECONDS: u64 = 5;

fn main() {
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test("normal_build_smp4_succeeds", || check(stress(&Variant::debug(), 4, "").and_then(succeeded))),
        Trial::test("always_preempt_smp2_succeeds", || check(stress(&always_preempt(), 2, "").and_then(succeeded))),
        Trial::test("always_preempt_catches_missing_recheck", || {
            check(caught("missing-recheck", "popped an empty queue"))
        }),
        Trial::test("always_preempt_catches_non_atomic_counter", || {
            check(caught("non-atomic-counter", "update(s) lost"))
        }),
        Trial::test("always_preempt_catches_lost_wakeup", || check(caught("lost-wakeup", "made no progress"))),
        Trial::test("normal_build_smp2_catches_lost_wakeup", || {
            check(caught_by(&Variant::debug(), "lost-wakeup", "made no progress"))
        }),
        Trial::test("icount_smp2_makes_progress_and_catches_a_bug", || check(icount_smp2_catches())),
        Trial::test("async_preemption_smp2_succeeds", || check(async_smp2_succeeds())),
        Trial::test("icount_smp2_clean_run_passes_its_work_check", || check(icount_smp2_clean())),
    ];
    libtest_mimic::run(&args, trials).exit();
}

fn check(result: Result<()>) -> Result<(), libtest_mimic::Failed> {
    result.map_err(|e| format!("{e:#}").into())
}

fn always_preempt() -> Variant {
    Variant::with_features(&["always-preempt"])
}

/// A torture run of `SECONDS` (or `BUG_SECONDS` with a planted bug) on `smp` CPUs.
fn stress(variant: &Variant, smp: u32, inject: &str) -> Result<(Outcome, String)> {
    let seconds = if inject.is_empty() { SECONDS } else { BUG_SECONDS };
    let mut cmdline = format!("stress={seconds} seed=1");
    if !inject.is_empty() {
        cmdline.push_str(&format!(" inject={inject}"));
    }
    let cfg = RunConfig { smp, cmdline, timeout: Some(Duration::from_secs(seconds * 6 + 120)), ..RunConfig::default() };
    let run = kernels::boot(variant, &cfg)?;
    Ok((run.outcome, run.transcript))
}

/// Asynchronous preemptions injected thick and fast (`strategy=async:20000`, a mean of 20 µs)
/// at two CPUs: a thread preempted between any two instructions, and often migrated, must come
/// to no harm. Seeds 2 and 3 of 3 s each. (Both died before: a thread preempted between loading
/// its CPU's block and that block's `in_irq` flag, and moved to the other CPU, read the flag of
/// the CPU it had left -- in a handler at that moment -- and panicked "SpinLock taken in an
/// interrupt handler".)
fn async_smp2_succeeds() -> Result<()> {
    for seed in [2, 3] {
        let cfg = RunConfig {
            smp: 2,
            cmdline: format!("stress=3 seed={seed} strategy=async:20000"),
            timeout: Some(Duration::from_secs(120)),
            ..RunConfig::default()
        };
        let run = kernels::boot(&always_preempt(), &cfg)?;
        succeeded((run.outcome, run.transcript)).map_err(|e| e.context(format!("seed {seed}")))?;
    }
    Ok(())
}

/// Under `--icount` with two CPUs (one host thread runs both, round-robin), the always-preempt
/// build must still make progress on both CPUs: a 1 s run ends, and catches the planted counter
/// bug. (It used to run until the watchdog: CPU 1 never got the host thread.)
fn icount_smp2_catches() -> Result<()> {
    let cfg = RunConfig {
        smp: 2,
        icount: true,
        cmdline: "stress=1 seed=1 inject=non-atomic-counter".into(),
        timeout: Some(Duration::from_secs(180)),
        ..RunConfig::default()
    };
    let run = kernels::boot(&always_preempt(), &cfg)?;
    let line = verdict(&run.transcript);
    ensure!(
        line.is_some_and(|l| l.starts_with("stress: FAILURE") && l.contains("update(s) lost")),
        "the icount run did not catch the planted bug; verdict: {}; outcome: {}",
        line.unwrap_or("<none>"),
        run.outcome
    );
    Ok(())
}

/// A clean 1 s always-preempt run under `--icount` at two CPUs (seed 1) must succeed, and report
/// threads moving between the CPUs. Both CPUs stay busy after the start, so they hardly steal,
/// but threads readied by the other CPU move: the work check counts moves. (It used to demand a
/// steal, and failed this very run with "no thread was stolen between the 2 CPUs".)
fn icount_smp2_clean() -> Result<()> {
    let cfg = RunConfig {
        smp: 2,
        icount: true,
        cmdline: "stress=1 seed=1".into(),
        timeout: Some(Duration::from_secs(180)),
        ..RunConfig::default()
    };
    let run = kernels::boot(&always_preempt(), &cfg)?;
    let line = verdict(&run.transcript).unwrap_or_default().to_owned();
    succeeded((run.outcome, run.transcript))?;
    let migrations = figure(&line, "migrations ");
    ensure!(migrations.is_some_and(|m| m > 0), "the SUCCESS line reports no thread moving between CPUs: {line}");
    Ok(())
}

/// The number after `name` in `line`.
fn figure(line: &str, name: &str) -> Option<u64> {
    let rest = line.split_once(name)?.1;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn verdict(transcript: &str) -> Option<&str> {
    transcript.lines().find(|l| l.starts_with("stress: SUCCESS") || l.starts_with("stress: FAILURE"))
}

fn succeeded((outcome, transcript): (Outcome, String)) -> Result<()> {
    let line = verdict(&transcript);
    ensure!(
        outcome.is_success() && line.is_some_and(|l| l.starts_with("stress: SUCCESS")),
        "the torture run failed: {outcome}; verdict: {}",
        line.unwrap_or("<none>")
    );
    let line = line.unwrap_or_default();
    let memory = memory_use(line).ok_or_else(|| anyhow::anyhow!("the verdict reports no memory figures: {line}"))?;
    ensure!(
        memory.frames_before == memory.frames_after && memory.heap_before == memory.heap_after,
        "memory not back to the baseline although the kernel said SUCCESS: {memory:?}"
    );
    Ok(())
}

/// The memory figures of a SUCCESS line: `memory: frames X before, Y after; heap A bytes before, B after`.
#[derive(Debug, PartialEq)]
struct MemoryUse {
    frames_before: u64,
    frames_after: u64,
    heap_before: u64,
    heap_after: u64,
}

fn memory_use(line: &str) -> Option<MemoryUse> {
    let rest = line.split_once("memory: frames ")?.1;
    let (frames_before, rest) = rest.split_once(" before, ")?;
    let (frames_after, rest) = rest.split_once(" after; heap ")?;
    let (heap_before, rest) = rest.split_once(" bytes before, ")?;
    let (heap_after, _) = rest.split_once(" after")?;
    Some(MemoryUse {
        frames_before: frames_before.parse().ok()?,
        frames_after: frames_after.parse().ok()?,
        heap_before: heap_before.parse().ok()?,
        heap_after: heap_after.parse().ok()?,
    })
}

/// The always-preempt build at two CPUs must fail with `expected` in its verdict.
fn caught(bug: &str, expected: &str) -> Result<()> {
    caught_by(&always_preempt(), bug, expected)
}

/// `variant` at two CPUs must fail with `expected` in its verdict.
fn caught_by(variant: &Variant, bug: &str, expected: &str) -> Result<()> {
    let (outcome, transcript) = stress(variant, 2, bug)?;
    let line = verdict(&transcript);
    ensure!(!outcome.is_success(), "the planted bug '{bug}' was not caught (the run succeeded)");
    ensure!(
        line.is_some_and(|l| l.starts_with("stress: FAILURE") && l.contains(expected)),
        "the planted bug '{bug}' did not fail the run as expected ({expected}); verdict: {}; outcome: {outcome}",
        line.unwrap_or("<none>")
    );
    Ok(())
}

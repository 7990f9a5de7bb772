//! Short runs of the kernel's torture test (`stress=SECONDS`), as `cargo test` runs them:
//! the normal build at four CPUs and the `always-preempt` build at two must succeed, and each
//! planted bug (`inject=`) must be caught by the `always-preempt` build.
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
        Trial::test("icount_smp2_makes_progress_and_catches_a_bug", || check(icount_smp2_catches())),
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
    ensure!(
        line.is_some_and(|l| l.contains("memory back to baseline")),
        "the verdict does not confirm the memory check"
    );
    Ok(())
}

/// The always-preempt build at two CPUs must fail with `expected` in its verdict.
fn caught(bug: &str, expected: &str) -> Result<()> {
    let (outcome, transcript) = stress(&always_preempt(), 2, bug)?;
    let line = verdict(&transcript);
    ensure!(!outcome.is_success(), "the planted bug '{bug}' was not caught (the run succeeded)");
    ensure!(
        line.is_some_and(|l| l.starts_with("stress: FAILURE") && l.contains(expected)),
        "the planted bug '{bug}' did not fail the run as expected ({expected}); verdict: {}; outcome: {outcome}",
        line.unwrap_or("<none>")
    );
    Ok(())
}

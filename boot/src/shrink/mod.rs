//! `cargo run -- shrink <replay arguments>`: from a failing run to the few preemptions that
//! make it fail.
//!
//! 1. The failing run is booted again with `record=on`: the kernel prints every forced
//!    preemption point it took, as (thread key, prologue ordinal) with the addresses around it.
//! 2. Each candidate list is replayed with `strategy=points preempt=off`: the kernel preempts at
//!    exactly those points and nowhere else (no timer preemption either), so whether a list fails
//!    depends on the list alone. A candidate "fails the same way" when its failure reads like the
//!    original's with every number masked (a lost-update count may differ, the bug may not).
//! 3. `ddmin` reduces the list to a 1-minimal one; the last run of it is symbolized, one line
//!    per point: the thread, the function it was preempted entering, and where that was called.
//!    It must take exactly the listed points (`settle`); a point that found its thread not
//!    preemptible is taken at the thread's next prologue, and then the list as taken is kept (if
//!    it fails the same way and replays as itself) -- of the same length, though not re-checked
//!    for 1-minimality.
//!
//! The minimal list is kept under `target/shrink/`, with the command that replays it
//! (`--points FILE`). Shrinking needs exact replay: `--icount` and the forced-preemption build.

pub mod ddmin;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::cli::{Cli, Command, Opts};
use crate::outcome::{Outcome, parse_test_results};
use crate::qemu::RunConfig;
use crate::symbols::Symbolizer;

/// One preemption point a run took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Point {
    pub key: u64,
    pub ordinal: u64,
    pub rip: u64,
    pub caller: u64,
}

/// The `point KEY ORDINAL RIP CALLER` lines of a transcript.
pub fn recorded_points(transcript: &str) -> Vec<Point> {
    transcript
        .lines()
        .filter_map(|line| {
            let mut w = line.strip_prefix("point ")?.split_whitespace();
            let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
            let point = Point {
                key: hex(w.next()?)?,
                ordinal: w.next()?.parse().ok()?,
                rip: hex(w.next()?)?,
                caller: hex(w.next()?)?,
            };
            w.next().is_none().then_some(point)
        })
        .collect()
}

/// A point list as the kernel reads it (`KEY ORDINAL` per line).
pub fn list_text(points: &[Point]) -> String {
    points.iter().map(|p| format!("{:x} {}\n", p.key, p.ordinal)).collect()
}

/// How a run failed, with every number masked (`#`): two runs with the same signature failed the
/// same way.
pub fn signature(outcome: &Outcome, transcript: &str) -> Option<String> {
    if outcome.is_success() || matches!(outcome, Outcome::Stopped) {
        return None;
    }
    let mut text = outcome.to_string();
    for test in parse_test_results(transcript) {
        if let Some(reason) = test.failed() {
            text.push_str(&format!("; {}: {reason}", test.name));
        }
    }
    let mut masked = String::with_capacity(text.len());
    for c in text.chars() {
        match (c.is_ascii_digit(), masked.ends_with('#')) {
            (true, true) => {}
            (true, false) => masked.push('#'),
            (false, _) => masked.push(c),
        }
    }
    Some(masked)
}

/// The kernel words of the run a replay line describes (a single stress run or a test run).
fn run_words(cli: &Cli) -> Result<Vec<String>> {
    match &cli.command {
        Some(Command::Stress(stress)) if stress.runs.is_none() => Ok(stress.kernel_words(stress.seed)),
        Some(Command::Test { filter }) => Ok(vec![format!("test={}", filter.as_deref().unwrap_or("all"))]),
        _ => bail!("shrink takes the arguments of a replay line: a single `stress` or `test` run"),
    }
}

/// Runs `shrink` on the replay line's arguments `replay`.
pub fn run(replay: &[String], jobs: Option<u64>) -> Result<ExitCode> {
    let cli = Cli::try_parse_from(std::iter::once("boot".to_string()).chain(replay.iter().cloned()))
        .map_err(|e| anyhow::anyhow!("the replay arguments do not parse: {e}"))?;
    let opts = &cli.opts;
    if !opts.icount || !opts.features.iter().any(|f| f == "always-preempt") {
        bail!("shrink needs an exact replay: a run with --icount and --features always-preempt");
    }
    if opts.points.is_some() {
        bail!("shrink starts from the run's own schedule: give the replay line without --points");
    }
    let words = run_words(&cli)?;
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u64)) as usize;

    let elf = crate::kernel::build(&opts.variant(), false)?;
    crate::replay::check_build_id(&elf, opts.expect_build_id.as_deref())?;
    let image = crate::image::make(&elf, opts.firmware())?;
    // A candidate's words come last on the command line, after the replay line's own
    // `--cmdline` words (its `strategy=`, say): in the kernel the last word wins.
    let boot = |points: Option<String>| -> Result<(Outcome, String)> {
        let mut cfg = RunConfig { echo: false, ..opts.run_config(words.clone(), Some(600)) };
        cfg.cmdline.push_str(" record=on");
        if points.is_some() {
            cfg.cmdline.push_str(" strategy=points preempt=off");
        }
        let result = crate::qemu::run(&image, &elf, &RunConfig { points, ..cfg })?;
        Ok((result.outcome, result.transcript))
    };

    eprintln!("shrink: running the failing run again, recording its preemption points");
    let (outcome, transcript) = boot(None)?;
    let Some(wanted) = signature(&outcome, &transcript) else {
        bail!("the run did not fail ({outcome}): nothing to shrink");
    };
    let points = recorded_points(&transcript);
    if points.is_empty() {
        bail!("the run failed ({outcome}) but took no forced preemption point: nothing to shrink");
    }
    eprintln!("shrink: it fails ({outcome}) after {} forced preemptions", points.len());

    let runs = AtomicU64::new(0);
    let fails = |list: &[Point]| -> bool {
        runs.fetch_add(1, Ordering::Relaxed);
        match boot(Some(list_text(list))) {
            Ok((outcome, transcript)) => signature(&outcome, &transcript).as_ref() == Some(&wanted),
            Err(_) => false,
        }
    };
    if fails(&[]) {
        bail!("the run fails the same way with no preemption at all: the failure does not depend on the schedule");
    }
    if !fails(&points) {
        bail!(
            "replaying exactly the {} recorded points (no timer preemption) does not fail the same way: this failure \
             needs the timer's preemptions too, which are not prologue points, so it cannot be shrunk",
            points.len()
        );
    }
    let started = std::time::Instant::now();
    let minimal = ddmin::ddmin(points, jobs, fails, |len, n| eprintln!("shrink: {len} points, trying {n} parts"));
    let (minimal, outcome, taken) = settle(minimal, &wanted, |list| boot(Some(list_text(list))))?;
    let symbols = Symbolizer::new(&elf);
    println!(
        "shrink: {} preemption point(s) make the run fail ({} runs, {:.0} s): {outcome}",
        minimal.len(),
        runs.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    for line in describe(&taken, &symbols) {
        println!("  {line}");
    }
    let file = keep(&minimal)?;
    let mut again: Vec<String> = replay.to_vec();
    again.extend(["--points".to_string(), file.display().to_string()]);
    println!("{}", crate::replay::line(&again, true));
    Ok(ExitCode::SUCCESS)
}

/// The last run of the minimal list `minimal`: returns the list to keep, the run's outcome, and
/// the points it took. It must take exactly the listed points. A listed point that finds its
/// thread not preemptible (holding a spin lock, say) is taken at that thread's next prologue
/// (`sched::explore`): then the list the kernel took is the exact one, if it fails the same way
/// (`wanted`) and replays as itself.
fn settle(
    minimal: Vec<Point>,
    wanted: &str,
    boot: impl Fn(&[Point]) -> Result<(Outcome, String)>,
) -> Result<(Vec<Point>, Outcome, Vec<Point>)> {
    let same = |a: &[Point], b: &[Point]| {
        let key = |p: &Point| (p.key, p.ordinal);
        a.len() == b.len() && a.iter().map(key).eq(b.iter().map(key))
    };
    let (outcome, transcript) = boot(&minimal)?;
    let taken = recorded_points(&transcript);
    if same(&taken, &minimal) {
        return Ok((minimal, outcome, taken));
    }
    let (again_outcome, again) = boot(&taken)?;
    let retaken = recorded_points(&again);
    if signature(&again_outcome, &again).as_deref() != Some(wanted) || !same(&retaken, &taken) {
        bail!(
            "the kernel did not take exactly the {} listed points (it took {}), and the list it took does not \
             replay as itself: the replay is not exact\n  listed: {}\n  taken: {}",
            minimal.len(),
            taken.len(),
            list_text(&minimal).trim_end().replace('\n', ", "),
            list_text(&taken).trim_end().replace('\n', ", ")
        );
    }
    eprintln!("shrink: a listed point was taken at its thread's next preemptible prologue; keeping the list as taken");
    Ok((taken, again_outcome, retaken))
}

/// One line per point: thread, the function preempted at its prologue, the call site.
pub fn describe(points: &[Point], symbols: &Symbolizer) -> Vec<String> {
    points
        .iter()
        .map(|p| {
            let function = symbols.locate(p.rip).map_or_else(|| format!("{:#x}", p.rip), |(f, _)| f);
            let call = symbols
                .locate(p.caller.saturating_sub(1))
                .map_or_else(|| format!("{:#x}", p.caller), |(f, at)| format!("{at} (in {f})"));
            format!("thread {:x}, prologue #{}: preempted entering {function}, called at {call}", p.key, p.ordinal)
        })
        .collect()
}

/// Writes the minimal list under `target/shrink/` and returns its path.
fn keep(points: &[Point]) -> Result<PathBuf> {
    let dir = crate::kernel::workspace_root().join("target").join("shrink");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let file = dir.join(format!("points-{stamp}-{}.txt", std::process::id()));
    std::fs::write(&file, list_text(points)).with_context(|| format!("writing {}", file.display()))?;
    Ok(file)
}

/// The point list a run replays (`--points FILE`), read from its file.
pub fn point_list(opts: &Opts) -> Result<Option<String>> {
    let Some(file) = &opts.points else { return Ok(None) };
    let text = std::fs::read_to_string(file).with_context(|| format!("reading the point list {}", file.display()))?;
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_recorded_points() {
        let t = "boot\npoint 1f 12 0xffffffff80001000 0xffffffff80002000\npoint x\npoints: 1 recorded\n";
        let points = recorded_points(t);
        assert_eq!(
            points,
            [Point { key: 0x1f, ordinal: 12, rip: 0xffff_ffff_8000_1000, caller: 0xffff_ffff_8000_2000 }]
        );
        assert_eq!(list_text(&points), "1f 12\n");
    }

    /// A listed point taken one prologue later (its thread was not preemptible at the listed
    /// one) is settled to the list the kernel took, if that list replays as itself.
    #[test]
    fn a_point_taken_later_is_kept_as_taken() {
        let failed = Outcome::Failure("FATAL: all threads are asleep: deadlock".into());
        let wanted = signature(&failed, "").unwrap();
        let at = |ordinal: u64| Point { key: 0xb8, ordinal, rip: 1, caller: 2 };
        let run = |took: u64| Ok((failed.clone(), format!("point b8 {took} 0x1 0x2\n")));
        // The kernel takes #51 when #50 is listed, and #51 when #51 is.
        let (kept, _, taken) = settle(vec![at(50)], &wanted, |list: &[Point]| run(list[0].ordinal.max(51))).unwrap();
        assert_eq!((kept[0].ordinal, taken[0].ordinal), (51, 51));
        // A list that keeps moving is not exact.
        let e = settle(vec![at(50)], &wanted, |list: &[Point]| run(list[0].ordinal + 1)).unwrap_err().to_string();
        assert!(e.contains("does not replay as itself") && e.contains("listed: b8 50"), "{e}");
        // Nothing moved: kept as listed, one run.
        let (kept, _, _) = settle(vec![at(7)], &wanted, |_: &[Point]| run(7)).unwrap();
        assert_eq!(kept[0].ordinal, 7);
    }

    #[test]
    fn signatures_mask_numbers() {
        let a = Outcome::Failure("stress: FAILURE: the shared counter is 7014 after 7085 increments".into());
        let b = Outcome::Failure("stress: FAILURE: the shared counter is 12 after 13 increments".into());
        assert_eq!(signature(&a, ""), signature(&b, ""));
        assert_eq!(signature(&Outcome::Success, ""), None);
    }
}

//! Running a lab's checks on a source tree, and judging each one (`cargo run -- grade LAB`).
//!
//! The checks are grouped by set-up (`catalog::Setup`): each set-up boots once for all of its
//! in-kernel tests (`test=a,b,c`), however many labs they belong to; each torture run boots on its
//! own, as many at once as the host has cores for the set-up's CPUs. A boot is watched test by
//! test (`qemu::Watch`): a test that runs past its set-up's limit counts as hung and QEMU is
//! stopped, and so does a kernel that starts no test for `BETWEEN_TESTS`. When a boot ends early
//! -- a crash, a hang, a triple fault -- the test that was running loses its points with that
//! reason, and the tests that had not run yet are booted again, without it. So one broken test
//! costs its own points, never the others', and the grader always ends: a boot that runs no test
//! at all ends the set-up (its remaining tests lose their points, with the reason).
//!
//! A test that skips itself earns nothing: a graded test that cannot run in its set-up is a
//! mistake in the set-up, and must show.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::catalog::{Check, Lab, Setup};
use crate::outcome::{Outcome, Verdict, parse_test_results, unfinished_test};
use crate::qemu::{RunConfig, Watch};
use crate::{Firmware, Variant};

/// The longest a kernel may go without starting a test (boot included).
pub const BETWEEN_TESTS: Duration = Duration::from_secs(45);

/// Guest memory of every set-up.
const MEMORY_MIB: u32 = 1024;

/// Where the kernel to grade comes from.
#[derive(Clone, Debug)]
pub struct Source {
    /// The root of the source tree (a checkout or a lab copy).
    pub root: PathBuf,
    /// Where its kernel variants are built (`TARGETS/VARIANT`); trees may share one, one at a time.
    pub targets: PathBuf,
}

impl Source {
    /// This repository, with the runner's usual build directories.
    pub fn this_tree() -> Source {
        let root = crate::kernel::workspace_root();
        Source { targets: root.join("target").join("kernel"), root }
    }

    /// Another tree (a student's copy), built in its own `target/kernel`.
    pub fn tree(root: PathBuf) -> Source {
        Source { targets: root.join("target").join("kernel"), root }
    }
}

/// How one check ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judged {
    Pass,
    /// The test failed (its own verdict), with the reason.
    Fail(String),
    /// The kernel stopped while this check ran (fatal error, triple fault).
    Crash(String),
    /// A watchdog stopped it.
    Hang(String),
    /// It could not run: the kernel did not build, did not boot, or skipped the test.
    NotRun(String),
}

impl Judged {
    /// The short word of the grade table.
    pub fn word(&self) -> &'static str {
        match self {
            Judged::Pass => "pass",
            Judged::Fail(_) => "FAIL",
            Judged::Crash(_) => "CRASH",
            Judged::Hang(_) => "HANG",
            Judged::NotRun(_) => "NOT RUN",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Judged::Pass => None,
            Judged::Fail(r) | Judged::Crash(r) | Judged::Hang(r) | Judged::NotRun(r) => Some(r),
        }
    }
}

/// The grade of one item.
#[derive(Clone, Debug)]
pub struct ItemGrade {
    pub setup: &'static str,
    pub check: String,
    pub max: u32,
    pub points: u32,
    pub judged: Judged,
}

/// The grade of one lab.
#[derive(Clone, Debug)]
pub struct LabGrade {
    pub number: u32,
    pub title: &'static str,
    pub items: Vec<ItemGrade>,
}

impl LabGrade {
    pub fn points(&self) -> u32 {
        self.items.iter().map(|i| i.points).sum()
    }

    pub fn max(&self) -> u32 {
        self.items.iter().map(|i| i.max).sum()
    }
}

/// Grades `labs` on the kernel of `source`. `say` gets one line per step (builds, boots).
pub fn grade(source: &Source, labs: &[&'static Lab], say: &mut dyn FnMut(&str)) -> Result<Vec<LabGrade>> {
    let mut judged: HashMap<(&'static str, Check), Judged> = HashMap::new();
    let mut elfs: HashMap<Vec<&'static str>, Result<PathBuf, String>> = HashMap::new();
    // Set-ups in the order the labs first name them, each with its tests in that order.
    let mut setups: Vec<(&'static Setup, Vec<Check>)> = Vec::new();
    for item in labs.iter().flat_map(|l| l.items) {
        let at = match setups.iter().position(|(s, _)| std::ptr::eq(*s, item.setup)) {
            Some(at) => at,
            None => {
                setups.push((item.setup, Vec::new()));
                setups.len() - 1
            }
        };
        if !setups[at].1.contains(&item.check) {
            setups[at].1.push(item.check);
        }
    }
    for (setup, checks) in &setups {
        let elf = elfs.entry(setup.features.to_vec()).or_insert_with(|| {
            let variant = Variant::with_features(setup.features);
            say(&format!("building the kernel ({}) of {}", variant.name(), source.root.display()));
            crate::kernel::build_in(&source.root, &source.targets, &variant, true).map_err(|e| format!("{e:#}"))
        });
        let elf = match elf {
            Ok(elf) => elf.clone(),
            Err(e) => {
                for check in checks {
                    judged.insert((setup.name, *check), Judged::NotRun(format!("the kernel does not build: {e}")));
                }
                continue;
            }
        };
        let tests: Vec<&'static str> =
            checks.iter().filter_map(|c| if let Check::Test(t) = c { Some(*t) } else { None }).collect();
        for (test, result) in run_tests(setup, &elf, &tests, say)? {
            judged.insert((setup.name, Check::Test(test)), result);
        }
        let stress: Vec<(u64, u64)> = checks
            .iter()
            .filter_map(|c| if let Check::Stress { seconds, seed } = c { Some((*seconds, *seed)) } else { None })
            .collect();
        // As many torture runs at once as the host has cores for their CPUs (a failing run waits
        // out the torture test's shutdown limit, so one at a time would take minutes).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        let at_once = (cores / setup.smp.max(1)).max(1) as usize;
        for batch in stress.chunks(at_once) {
            for (seconds, seed) in batch {
                say(&format!("{}: torture test for {seconds} s, seed {seed}", setup.name));
            }
            let elf = elf.as_path();
            let results: Vec<Result<Judged>> = std::thread::scope(|scope| {
                let runs: Vec<_> = batch
                    .iter()
                    .map(|&(seconds, seed)| scope.spawn(move || run_stress(setup, elf, seconds, seed)))
                    .collect();
                runs.into_iter()
                    .map(|r| r.join().unwrap_or_else(|_| anyhow::bail!("a torture run's thread panicked")))
                    .collect()
            });
            for (&(seconds, seed), result) in batch.iter().zip(results) {
                judged.insert((setup.name, Check::Stress { seconds, seed }), result?);
            }
        }
    }
    Ok(labs
        .iter()
        .map(|lab| LabGrade {
            number: lab.number,
            title: lab.title,
            items: lab
                .items
                .iter()
                .map(|item| {
                    let result = judged
                        .get(&(item.setup.name, item.check))
                        .cloned()
                        .unwrap_or_else(|| Judged::NotRun("the grader did not run it (a bug in the grader)".into()));
                    let points = if result == Judged::Pass { item.points } else { 0 };
                    ItemGrade {
                        setup: item.setup.name,
                        check: item.check.name(),
                        max: item.points,
                        points,
                        judged: result,
                    }
                })
                .collect(),
        })
        .collect())
}

/// The QEMU settings of `setup` for kernel command line `cmdline`.
fn run_config(setup: &Setup, cmdline: String, timeout: Duration) -> RunConfig {
    RunConfig {
        firmware: Firmware::Bios,
        smp: setup.smp,
        memory_mib: MEMORY_MIB,
        cmdline,
        timeout: Some(timeout),
        ..RunConfig::default()
    }
}

/// Boots `elf` in `setup` until every one of `tests` has a result (see the module comment).
fn run_tests(
    setup: &Setup,
    elf: &std::path::Path,
    tests: &[&'static str],
    say: &mut dyn FnMut(&str),
) -> Result<Vec<(&'static str, Judged)>> {
    let mut results: Vec<(&'static str, Judged)> = Vec::new();
    let mut left: Vec<&'static str> = tests.to_vec();
    let image = crate::image::make(elf, Firmware::Bios)?;
    let watch = Watch { test: Duration::from_secs(setup.test_limit), between: BETWEEN_TESTS };
    while !left.is_empty() {
        let cmdline = format!("test={} {}", left.join(","), setup.cmdline);
        // The watch ends a bad run long before this; it is only the last resort.
        let timeout = BETWEEN_TESTS + Duration::from_secs(setup.test_limit * left.len() as u64 + 60);
        say(&format!("{}: booting for {} test(s)", setup.name, left.len()));
        let started = Instant::now();
        let run = crate::qemu::run_watched(&image, elf, &run_config(setup, cmdline, timeout), watch)?;
        say(&format!("{}: {} ({:.1} s)", setup.name, short(&run.outcome), started.elapsed().as_secs_f64()));
        let verdicts = parse_test_results(&run.transcript);
        let running = unfinished_test(&run.transcript);
        let mut progressed = false;
        left.retain(|test| {
            let judged = match verdicts.iter().find(|v| v.name == *test).map(|v| &v.verdict) {
                Some(Verdict::Passed) => Judged::Pass,
                Some(Verdict::Failed(reason)) => Judged::Fail(reason.clone()),
                Some(Verdict::Skipped(reason)) => Judged::NotRun(format!("the test skipped itself: {reason}")),
                None if running.as_deref() == Some(*test) => stopped(&run.outcome),
                None => return true,
            };
            results.push((test, judged));
            progressed = true;
            false
        });
        if !left.is_empty() && !progressed {
            // Nothing ran: booting again would change nothing.
            let why = match &run.outcome {
                Outcome::Success => "the kernel ended without running them".to_string(),
                other => format!("the kernel stopped before running any of them: {other}"),
            };
            results.extend(left.drain(..).map(|t| (t, Judged::NotRun(why.clone()))));
        }
    }
    Ok(results)
}

/// The verdict on the test that was running when the kernel stopped with `outcome`.
fn stopped(outcome: &Outcome) -> Judged {
    match outcome {
        Outcome::Timeout { .. } | Outcome::Stalled { .. } => Judged::Hang(outcome.to_string()),
        other => Judged::Crash(other.to_string()),
    }
}

/// A one-line summary of how a boot ended.
fn short(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Success => "every test passed".into(),
        Outcome::Failure(reason) => reason.clone(),
        other => other.to_string(),
    }
}

/// A torture run of `seconds` with `seed` in `setup`: it passes only with `stress: SUCCESS`.
fn run_stress(setup: &Setup, elf: &std::path::Path, seconds: u64, seed: u64) -> Result<Judged> {
    let image = crate::image::make(elf, Firmware::Bios)?;
    let cmdline = format!("stress={seconds} seed={seed} {}", setup.cmdline);
    let timeout = Duration::from_secs(seconds * 6 + 60);
    let run = crate::run(&image, elf, &run_config(setup, cmdline, timeout))?;
    let verdict = run.transcript.lines().find(|l| l.starts_with("stress: SUCCESS") || l.starts_with("stress: FAILURE"));
    Ok(match (verdict, &run.outcome) {
        (Some(line), Outcome::Success) if line.starts_with("stress: SUCCESS") => Judged::Pass,
        (Some(line), _) if line.starts_with("stress: FAILURE") => {
            Judged::Fail(line.trim_start_matches("stress: FAILURE").trim_start_matches(':').trim().to_string())
        }
        (_, Outcome::Timeout { .. }) => Judged::Hang(run.outcome.to_string()),
        (_, outcome) => Judged::Crash(outcome.to_string()),
    })
}

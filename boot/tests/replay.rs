//! Exact replay and shrinking as a user runs them: the `boot` binary under `--icount` with the
//! forced-preemption build at one CPU, judged by its exit status, the kernel's schedule digest
//! and output, the replay line it prints, and what `shrink` prints.
//!
//! The tests run one at a time (`ONE_AT_A_TIME`): `shrink` keeps both host cores busy. A few
//! minutes in all on two cores.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const GLOBAL: [&str; 3] = ["--icount", "--features", "always-preempt"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("boot/ has a parent").to_path_buf()
}

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What one `boot` command did.
struct Ran {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `boot ARGS` in the workspace root, as `cargo run -- ARGS` would.
fn boot<S: AsRef<str>>(args: &[S]) -> Ran {
    let output = Command::new(env!("CARGO_BIN_EXE_boot"))
        .args(args.iter().map(|a| a.as_ref()))
        .current_dir(workspace_root())
        .output()
        .expect("the boot binary runs");
    Ran {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `GLOBAL` followed by `rest`.
fn with_global(rest: &[&str]) -> Vec<String> {
    GLOBAL.iter().chain(rest).map(|s| s.to_string()).collect()
}

impl Ran {
    fn context(&self) -> String {
        format!("--- stdout ---\n{}--- stderr ---\n{}", self.stdout, self.stderr)
    }

    /// The kernel's `schedule digest: HEX` value.
    fn digest(&self) -> &str {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix("schedule digest: "))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no schedule digest\n{}", self.context()))
    }

    /// The kernel's own lines: everything from its banner to its final line.
    fn kernel_output(&self) -> &str {
        let start = self.stdout.find("Prologue ").unwrap_or_else(|| panic!("no banner\n{}", self.context()));
        &self.stdout[start..]
    }

    /// The line that starts with `prefix`, on stdout or stderr.
    fn line(&self, prefix: &str) -> &str {
        self.stdout
            .lines()
            .chain(self.stderr.lines())
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?}\n{}", self.context()))
    }

    /// The arguments of the `replay: cargo run -- ...` line.
    fn replay_args(&self) -> Vec<String> {
        let line = self.line("replay: cargo run -- ");
        shell_split(line.strip_prefix("replay: cargo run -- ").unwrap())
    }
}

/// Splits `command` the way `sh` does.
fn shell_split(command: &str) -> Vec<String> {
    let out = Command::new("sh").arg("-c").arg(format!("printf '%s\\0' {command}")).output().expect("sh runs");
    assert!(out.status.success(), "sh failed on {command}");
    String::from_utf8(out.stdout).unwrap().split_terminator('\0').map(String::from).collect()
}

#[test]
fn the_same_seed_gives_the_same_schedule_under_each_strategy() {
    let _one = one_at_a_time();
    for strategy in ["every", "random:64", "async:200000", "pct:3"] {
        let run =
            |seed: &str| boot(&with_global(&["stress", "--seconds", "1", "--seed", seed, "--strategy", strategy]));
        let (a, b, other) = (run("3"), run("3"), run("4"));
        for ran in [&a, &b, &other] {
            assert!(ran.success, "{strategy}: the stress run failed\n{}", ran.context());
        }
        assert_eq!(a.digest(), b.digest(), "{strategy}: the same seed gave two schedules");
        assert_eq!(a.kernel_output(), b.kernel_output(), "{strategy}: the same seed printed differently");
        assert_ne!(a.digest(), other.digest(), "{strategy}: seeds 3 and 4 ran the same schedule");
    }
}

#[test]
fn a_failing_stress_run_replays_exactly_and_only_on_its_image() {
    let _one = one_at_a_time();
    // The first of a few seeds that catches the planted race (most do).
    let first = (1..=6)
        .map(|seed| {
            let seed = seed.to_string();
            let args = [
                "stress",
                "--seconds",
                "1",
                "--seed",
                &seed,
                "--strategy",
                "random:64",
                "--inject",
                "non-atomic-counter",
            ];
            boot(&with_global(&args))
        })
        .find(|ran| !ran.success)
        .expect("no seed of 1-6 caught the planted non-atomic-counter race");
    let failure = first.line("stress: FAILURE").to_string();
    let replay = first.replay_args();
    assert!(replay.iter().any(|a| a == "--expect-build-id"), "the replay line names no image: {replay:?}");

    let again = boot(&replay);
    assert!(!again.success, "the replay passed\n{}", again.context());
    assert_eq!(again.line("stress: FAILURE"), failure, "the replay failed differently");
    assert_eq!(again.digest(), first.digest(), "the replay ran another schedule");

    let mut wrong = replay.clone();
    let at = wrong.iter().position(|a| a == "--expect-build-id").unwrap();
    wrong[at + 1] = "0123456789abcdef0123456789abcdef".to_string();
    let refused = boot(&wrong);
    assert!(!refused.success);
    assert!(refused.stderr.contains("recorded on the kernel image with build id"), "{}", refused.context());
    assert!(!refused.stdout.contains("Prologue "), "a refused replay must not boot\n{}", refused.context());
}

#[test]
fn a_planted_ktest_race_shrinks_to_its_racy_call() {
    let _one = one_at_a_time();
    let test = "sched::explore::tests::a_planted_lost_update";
    // The first of a few seeds that catches the planted race.
    let first = (1..=8)
        .map(|seed| {
            let words = format!("inject=ktest-lost-update strategy=random:20 seed={seed}");
            boot(&with_global(&["--cmdline", &words, "test", test]))
        })
        .find(|ran| !ran.success)
        .expect("no seed of 1-8 caught the planted race of a_planted_lost_update");
    let failure = first.line("test sched::explore::tests::a_planted_lost_update ... FAILED").to_string();
    let replay = first.replay_args();
    let again = boot(&replay);
    assert_eq!(again.line("test sched::explore::tests::a_planted_lost_update ... FAILED"), failure);
    assert_eq!(again.digest(), first.digest(), "the replay ran another schedule");

    let shrunk = boot(&[&["shrink".to_string()], &replay[..]].concat());
    assert!(shrunk.success, "shrink failed\n{}", shrunk.context());
    let summary = shrunk.line("shrink: ");
    let summary =
        shrunk.stdout.lines().find(|l| l.contains("preemption point(s) make the run fail")).unwrap_or(summary);
    let points: usize = summary
        .strip_prefix("shrink: ")
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no point count\n{}", shrunk.context()));
    assert!((1..=3).contains(&points), "shrunk to {points} points\n{}", shrunk.context());
    let described: Vec<&str> = shrunk.stdout.lines().filter(|l| l.trim_start().starts_with("thread ")).collect();
    assert_eq!(described.len(), points, "{}", shrunk.context());
    assert!(
        described.iter().any(|l| l.contains("explore::tests::step") && l.contains("a_planted_lost_update")),
        "no point names the racy call\n{}",
        shrunk.context()
    );
    // The minimal list replays the failure on its own.
    let alone = boot(&shrunk.replay_args());
    assert!(!alone.success, "the minimal list does not fail\n{}", alone.context());
}

//! The stress farm as a user runs it: the `boot` binary with `stress --runs`, judged by its exit
//! status, its report on stdout and the transcripts it keeps.
//!
//! All farms boot the `always-preempt` debug build at two CPUs with 1 s runs (the build catches
//! the planted `non-atomic-counter` bug in every run, and passes without it). They run one at a
//! time (`ONE_FARM`): each already keeps both host cores busy with `--jobs 2`. About a minute in
//! all on two cores.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, PoisonError};

/// Held while a farm runs.
static ONE_FARM: Mutex<()> = Mutex::new(());

/// The options every farm here shares (before the `stress` subcommand's own).
const GLOBAL: [&str; 4] = ["--smp", "2", "--features", "always-preempt"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("boot/ has a parent").to_path_buf()
}

/// What one `boot` command did.
struct Ran {
    output: Output,
    stdout: String,
    stderr: String,
    pid: u32,
}

/// Runs `boot ARGS` in the workspace root, as `cargo run -- ARGS` would.
fn boot(args: &[&str]) -> Ran {
    let child = Command::new(env!("CARGO_BIN_EXE_boot"))
        .args(args)
        .current_dir(workspace_root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the boot binary starts");
    let pid = child.id();
    let output = child.wait_with_output().expect("boot ran");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    Ran { output, stdout, stderr, pid }
}

/// A farm of the shared options plus `stress` and `stress_args`.
fn farm(stress_args: &[&str]) -> Ran {
    let _one = ONE_FARM.lock().unwrap_or_else(PoisonError::into_inner);
    let args: Vec<&str> = GLOBAL.iter().copied().chain(["stress"]).chain(stress_args.iter().copied()).collect();
    boot(&args)
}

impl Ran {
    fn context(&self) -> String {
        format!("--- stdout ---\n{}--- stderr ---\n{}", self.stdout, self.stderr)
    }

    fn last_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or("")
    }

    /// The failing seed's table row (`   3  kernel failure: ...`) and its replay command.
    fn row(&self, seed: u64) -> (&str, &str) {
        let lines: Vec<&str> = self.stdout.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.trim_start().strip_prefix(&seed.to_string()).is_some_and(|r| r.starts_with("  ")))
            .unwrap_or_else(|| panic!("no table row for seed {seed}\n{}", self.context()));
        let replay = lines.get(at + 1).and_then(|l| l.trim_start().strip_prefix("replay: "));
        (lines[at], replay.unwrap_or_else(|| panic!("seed {seed} has no replay line\n{}", self.context())))
    }

    /// The directory the farm named for its transcripts.
    fn transcripts(&self) -> PathBuf {
        let line = self.stdout.lines().find(|l| l.contains("summary.txt are in ")).unwrap_or_else(|| {
            panic!("the farm does not say where the transcripts are\n{}", self.context());
        });
        let dir = line.split("summary.txt are in ").nth(1).unwrap().trim_end_matches('/');
        workspace_root().join(dir)
    }
}

/// The arguments of a replay command (`cargo run -- ARGS`), split the way `sh` does.
fn replay_args(command: &str) -> Vec<String> {
    let args = command.strip_prefix("cargo run -- ").unwrap_or_else(|| panic!("not a cargo run command: {command}"));
    let out = Command::new("sh").arg("-c").arg(format!("printf '%s\\0' {args}")).output().expect("sh runs");
    String::from_utf8(out.stdout).unwrap().split_terminator('\0').map(String::from).collect()
}

#[test]
fn a_planted_bug_fails_every_seed_and_each_failure_replays() {
    let ran = farm(&["--runs", "8", "--jobs", "2", "--seconds", "1", "--inject", "non-atomic-counter"]);
    assert!(!ran.output.status.success(), "the farm succeeded although every run failed\n{}", ran.context());
    assert_eq!(ran.last_line(), "stress farm: 8 runs, 8 failed, seeds 1-8; failed: 1-8", "{}", ran.context());
    assert!(ran.stdout.contains("stress farm: 8 runs failed:\n"), "{}", ran.context());

    let dir = ran.transcripts();
    for seed in 1..=8 {
        let (row, replay) = ran.row(seed);
        assert!(
            row.contains("kernel failure: stress: FAILURE: the shared counter is") && row.ends_with("update(s) lost"),
            "seed {seed}: {row}"
        );
        // The image's build id: 32 hex digits, the same for every seed of the farm.
        let (head, tail) = replay.split_once(" --expect-build-id ").unwrap_or_else(|| panic!("no build id: {replay}"));
        let (id, rest) = tail.split_once(' ').unwrap_or((tail, ""));
        assert_eq!(head, "cargo run -- --smp 2 --features always-preempt", "{replay}");
        assert!(id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()), "{replay}");
        assert_eq!(rest, format!("stress --seconds 1 --seed {seed} --inject non-atomic-counter"));
        assert_eq!(id, ran.row(1).1.split(' ').nth(8).unwrap_or(""), "seeds of one farm name one image");
        let log = std::fs::read_to_string(dir.join(format!("seed-{seed}.log")))
            .unwrap_or_else(|e| panic!("seed {seed}'s transcript was not kept in {}: {e}", dir.display()));
        assert!(log.contains(&format!("stress: 1 s, seed {seed}, ")), "seed {seed}'s log is another run's:\n{log}");
        assert!(log.lines().any(|l| l.starts_with("stress: FAILURE: ")), "seed {seed}'s log has no verdict:\n{log}");
    }
    let summary = std::fs::read_to_string(dir.join("summary.txt")).expect("summary.txt was written");
    assert!(summary.ends_with("stress farm: 8 runs, 8 failed, seeds 1-8; failed: 1-8\n"), "{summary}");

    // The printed command, run as printed, fails the same way on its own.
    let (_, replay) = ran.row(5);
    let args = replay_args(replay);
    let single = {
        let _one = ONE_FARM.lock().unwrap_or_else(PoisonError::into_inner);
        boot(&args.iter().map(String::as_str).collect::<Vec<&str>>())
    };
    assert!(!single.output.status.success(), "the replay of seed 5 succeeded\n{}", single.context());
    assert!(
        single.stdout.contains("stress: 1 s, seed 5, 6 workers on 2 CPU(s)")
            && single
                .stderr
                .lines()
                .any(|l| l.starts_with("boot: kernel failure: stress: FAILURE: the shared counter")),
        "the replay is not the same run\n{}",
        single.context()
    );
    std::fs::remove_dir_all(&dir).expect("the transcripts can be removed");
}

#[test]
fn without_a_bug_every_seed_passes_and_nothing_is_kept() {
    let ran = farm(&["--runs", "4", "--jobs", "2", "--seconds", "1", "--seed", "11"]);
    assert!(ran.output.status.success(), "the farm failed without a planted bug\n{}", ran.context());
    assert_eq!(ran.last_line(), "stress farm: 4 runs, 0 failed, seeds 11-14", "{}", ran.context());
    assert!(!ran.stdout.contains("failed:") && !ran.stdout.contains("replay:"), "{}", ran.context());
    let stress_dir = workspace_root().join("target").join("stress");
    let kept: Vec<_> = std::fs::read_dir(&stress_dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let suffix = format!("-{}", ran.pid);
    assert!(!kept.iter().any(|name: &String| name.ends_with(&suffix)), "a passing farm kept {kept:?}");
}

#[test]
fn a_strategy_the_kernel_rejects_fails_each_run_with_its_error() {
    let ran = farm(&["--runs", "2", "--seconds", "1", "--strategy", "no-such-strategy"]);
    assert!(!ran.output.status.success(), "{}", ran.context());
    assert_eq!(ran.last_line(), "stress farm: 2 runs, 2 failed, seeds 1-2; failed: 1-2", "{}", ran.context());
    for seed in 1..=2 {
        let (row, replay) = ran.row(seed);
        assert!(row.contains("kernel failure: cmdline: error:") && row.contains("strategy=no-such-strategy"), "{row}");
        assert!(replay.ends_with(&format!("--seed {seed} --strategy no-such-strategy")), "{replay}");
    }
    std::fs::remove_dir_all(ran.transcripts()).expect("the transcripts can be removed");
}

#[test]
fn bad_farm_options_are_refused_before_anything_is_built() {
    let cases: [(&[&str], &str); 5] = [
        (&["stress", "--runs", "0"], "invalid value '0' for '--runs <N>': must be at least 1"),
        (&["stress", "--runs", "4", "--jobs", "0"], "invalid value '0' for '--jobs <J>': must be at least 1"),
        (&["stress", "--jobs", "2"], "--runs <N>"),
        (&["--gdb", "stress", "--runs", "2"], "boot: error: --gdb cannot be used with --runs"),
        (&["--qemu-arg", "-s", "stress", "--runs", "2"], "boot: error: --qemu-arg -s cannot be used with --runs"),
    ];
    for (args, expected) in cases {
        let ran = boot(args);
        assert!(!ran.output.status.success(), "{args:?} was accepted\n{}", ran.context());
        assert!(ran.stderr.contains(expected), "{args:?}: expected {expected:?}\n{}", ran.context());
        assert!(!ran.stderr.contains("Finished"), "{args:?} built a kernel before refusing\n{}", ran.context());
    }
}

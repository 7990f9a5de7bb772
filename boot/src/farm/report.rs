//! What a farm leaves behind: the transcripts of its failing runs, and its final report.
//!
//! Transcripts go to `target/stress/<unix-time>-<pid>/`, one directory per farm: `seed-S.log`
//! for each failing seed (what happened, the replay command, then the whole serial output), and
//! `summary.txt` (the report). Passing runs keep nothing; the directory is made when the first
//! run fails, so a farm without failures leaves no directory at all.
//!
//! The report is a table of the failing seeds, each with its outcome (the kernel's
//! `stress: FAILURE: ...` line, or the runner's reason: triple fault, watchdog, QEMU failure)
//! and the single-run command that replays it, then one summary line.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::seeds;

/// A run that did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub seed: u64,
    /// What happened, in the runner's words (`kernel failure: stress: FAILURE: ...`).
    pub reason: String,
    /// The command that replays this seed alone.
    pub replay: String,
    /// Where its transcript was kept, or why it could not be.
    pub log: Result<PathBuf, String>,
}

/// How a farm ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Totals {
    pub first_seed: u64,
    pub last_seed: u64,
    /// Runs asked for.
    pub planned: u64,
    /// Runs that ended with a verdict.
    pub completed: u64,
    /// The failing seeds, in increasing order.
    pub failed: Vec<u64>,
    /// Stopped by an interrupt before every run was done.
    pub interrupted: bool,
}

impl Totals {
    /// The farm passed: not interrupted, something ran, nothing failed.
    pub fn succeeded(&self) -> bool {
        !self.interrupted && self.completed > 0 && self.failed.is_empty()
    }
}

/// The table of failing runs, sorted by seed (empty if none failed).
pub fn table(failures: &[Failure], interrupted: bool) -> String {
    if failures.is_empty() {
        return String::new();
    }
    let mut sorted: Vec<&Failure> = failures.iter().collect();
    sorted.sort_by_key(|f| f.seed);
    let width = sorted.iter().map(|f| f.seed.to_string().len()).max().unwrap_or(0).max("seed".len());
    let when = if interrupted { " before the interrupt" } else { "" };
    let mut text = format!("stress farm: {} failed{when}:\n", runs(failures.len() as u64));
    text.push_str(&format!("  {:>width$}  outcome, and the command that replays it\n", "seed"));
    let indent = " ".repeat(width + 4);
    for failure in sorted {
        text.push_str(&format!("  {:>width$}  {}\n", failure.seed, failure.reason));
        text.push_str(&format!("{indent}replay: {}\n", failure.replay));
        if let Err(e) = &failure.log {
            text.push_str(&format!("{indent}the transcript could not be kept: {e}\n"));
        }
    }
    text
}

/// `1 run`, `8 runs`.
fn runs(count: u64) -> String {
    if count == 1 { "1 run".to_string() } else { format!("{count} runs") }
}

/// `seeds 1-8`, or `seed 5`.
fn seed_range(first: u64, last: u64) -> String {
    if first == last { format!("seed {first}") } else { format!("seeds {first}-{last}") }
}

/// The last line: `stress farm: 8 runs, 2 failed, seeds 1-8; failed: 3, 6`.
pub fn summary_line(totals: &Totals) -> String {
    let Totals { first_seed, last_seed, planned, completed, failed, interrupted } = totals;
    let runs =
        if *interrupted { format!("interrupted after {completed} of {}", runs(*planned)) } else { runs(*completed) };
    let mut line = format!("stress farm: {runs}, {} failed, {}", failed.len(), seed_range(*first_seed, *last_seed));
    if !failed.is_empty() {
        line.push_str(&format!("; failed: {}", seeds::describe(failed)));
    }
    line
}

/// What a failing run's log starts with, before its serial output.
pub fn log_header(failure_seed: u64, reason: &str, replay: &str) -> String {
    format!("stress farm: seed {failure_seed}\noutcome: {reason}\nreplay: {replay}\n--- serial output ---\n")
}

/// `path` relative to the current directory when it is under it (`target/stress/...`).
pub fn shown(path: &Path) -> PathBuf {
    let relative = std::env::current_dir().ok().and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf));
    relative.unwrap_or_else(|| path.to_path_buf())
}

/// The directory of one farm's kept transcripts, made on first use.
pub struct Transcripts {
    dir: PathBuf,
    made: bool,
}

impl Transcripts {
    /// The directory `<root>/target/stress/<unix-time>-<pid>` for a farm started at `now`, not
    /// made yet.
    pub fn new(root: &Path, now: SystemTime, pid: u32) -> Transcripts {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Transcripts { dir: root.join("target").join("stress").join(format!("{secs}-{pid}")), made: false }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Something has been kept.
    pub fn made(&self) -> bool {
        self.made
    }

    /// Writes `contents` as the file `name` of the directory, making the directory first.
    pub fn keep(&mut self, name: &str, contents: &str) -> Result<PathBuf, String> {
        let path = self.dir.join(name);
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&path, contents))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        self.made = true;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(seed: u64) -> Failure {
        Failure {
            seed,
            reason: format!("kernel failure: stress: FAILURE: {seed} update(s) lost"),
            replay: format!("cargo run -- stress --seconds 1 --seed {seed}"),
            log: Ok(PathBuf::from(format!("seed-{seed}.log"))),
        }
    }

    #[test]
    fn the_table_lists_each_failure_with_its_replay() {
        let mut unsaved = failure(12);
        unsaved.log = Err("disk full".into());
        let text = table(&[unsaved, failure(3)], false);
        let expected = "stress farm: 2 runs failed:\n\
            \x20 seed  outcome, and the command that replays it\n\
            \x20    3  kernel failure: stress: FAILURE: 3 update(s) lost\n\
            \x20       replay: cargo run -- stress --seconds 1 --seed 3\n\
            \x20   12  kernel failure: stress: FAILURE: 12 update(s) lost\n\
            \x20       replay: cargo run -- stress --seconds 1 --seed 12\n\
            \x20       the transcript could not be kept: disk full\n";
        assert_eq!(text, expected);
        assert!(table(&[failure(1)], true).starts_with("stress farm: 1 run failed before the interrupt:\n"));
        assert_eq!(table(&[], false), "");
    }

    fn totals(failed: Vec<u64>, completed: u64, interrupted: bool) -> Totals {
        Totals { first_seed: 1, last_seed: 8, planned: 8, completed, failed, interrupted }
    }

    #[test]
    fn the_summary_line_counts_and_names_the_seeds() {
        let all_good = totals(vec![], 8, false);
        assert_eq!(summary_line(&all_good), "stress farm: 8 runs, 0 failed, seeds 1-8");
        assert!(all_good.succeeded());
        let some_bad = totals(vec![2, 3, 4, 7], 8, false);
        assert_eq!(summary_line(&some_bad), "stress farm: 8 runs, 4 failed, seeds 1-8; failed: 2-4, 7");
        assert!(!some_bad.succeeded());
        let cut_short = totals(vec![3], 5, true);
        assert_eq!(
            summary_line(&cut_short),
            "stress farm: interrupted after 5 of 8 runs, 1 failed, seeds 1-8; failed: 3"
        );
        assert!(!cut_short.succeeded() && !totals(vec![], 5, true).succeeded());
        let single = Totals { first_seed: 5, last_seed: 5, planned: 1, ..totals(vec![], 1, false) };
        assert_eq!(summary_line(&single), "stress farm: 1 run, 0 failed, seed 5");
    }

    #[test]
    fn transcripts_are_kept_only_when_asked() {
        let root = std::env::temp_dir().join(format!("prologue-farm-report-test-{}", std::process::id()));
        let mut kept = Transcripts::new(&root, UNIX_EPOCH + std::time::Duration::from_secs(1700000000), 42);
        assert_eq!(kept.dir(), root.join("target/stress/1700000000-42"));
        assert!(!kept.made() && !kept.dir().exists(), "nothing is made before a failure");
        let path = kept.keep("seed-3.log", "hello\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello\n");
        assert!(kept.made());
        std::fs::remove_dir_all(&root).unwrap();
    }
}

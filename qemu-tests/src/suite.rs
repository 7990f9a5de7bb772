//! One configuration's boot, shared by its trials, and each trial's verdict.
//!
//! A `Suite` knows which of its configuration's ktests survived libtest-mimic's filtering. The
//! first of its trials to run boots the kernel once with exactly those tests (`test=a,b,c`, or
//! `test=all` when all are selected); the others wait for that boot (`OnceLock`) and then read
//! their own line from the same transcript. The transcript is also saved to
//! `target/qemu-tests/CONFIG.log`, and a failing trial quotes what its test printed.
//!
//! Nothing is printed while a suite runs: libtest-mimic's worker threads print each trial's
//! line in two writes, and a line of ours would land in the middle of one.
//!
//! Suites boot one at a time (`BOOTING`), even though libtest-mimic runs trials of different
//! configurations on parallel threads: a 4-CPU guest already has more virtual CPUs than a small
//! host has cores, and two guests at once would slow each other and make timing-sensitive
//! tests (timeouts, preemption) flaky.
//!
//! Verdict rules (`judge`), in order:
//! 1. the test's result line decides: `test NAME ... ok` passes, `... FAILED: reason` fails,
//!    `... skipped: reason` is an ignored trial with that reason (never a pass);
//! 2. with no result line, if the kernel stopped while this test ran (it started, never
//!    finished), the trial fails with the runner's outcome (which names the test);
//! 3. otherwise the test never ran: `not run: the kernel stopped during OTHER: OUTCOME`;
//! 4. a run that reports success without this test's line fails too: a missing line is never
//!    a pass.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock, PoisonError};

use boot::outcome::unfinished_test;
use boot::{Outcome, Verdict, parse_test_results};

use crate::config::Config;
use crate::kernels;

/// The kernel reads at most this many bytes of its command line (its `CMDLINE_TEXT` buffer in
/// `kernel/src/main.rs`). A longer list of names is replaced by `test=all`: the run then has
/// more tests than selected, and only the selected trials report.
pub const KERNEL_CMDLINE_MAX: usize = 4096;

/// Held while a suite's kernel runs: one guest at a time.
static BOOTING: Mutex<()> = Mutex::new(());

/// Lines of a test's own output quoted in its failure message, at most.
const QUOTED_LINES: usize = 60;

/// How a trial that did not fail ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ran {
    Passed,
    /// The kernel skipped the test, for this reason (shown as an ignored trial).
    Skipped(String),
}

/// What one boot left behind.
struct Run {
    outcome: Outcome,
    transcript: String,
    /// Where the transcript was saved, or why it could not be.
    log: Result<PathBuf, String>,
}

/// A configuration's selected ktests and their shared boot.
pub struct Suite {
    config: &'static Config,
    /// The selected tests' kernel names, in the kernel's order.
    selected: Vec<String>,
    /// Every listed test is selected.
    everything: bool,
    run: OnceLock<Result<Run, String>>,
}

impl Suite {
    /// The suite of `config` running `selected`, out of the kernel's tests `all`.
    pub fn new(config: &'static Config, all: &[String], selected: Vec<String>) -> Suite {
        let everything = selected.len() == all.len();
        Suite { config, selected, everything, run: OnceLock::new() }
    }

    /// The kernel command line that runs the selected tests.
    pub fn cmdline(&self) -> String {
        let names = format!("test={}", self.selected.join(","));
        if self.everything || names.len() > KERNEL_CMDLINE_MAX { "test=all".to_string() } else { names }
    }

    /// The verdict on ktest `test`, booting the kernel if no trial of this suite has yet.
    pub fn verdict(&self, test: &str) -> Result<Ran, String> {
        if !self.selected.iter().any(|t| t == test) {
            return Err(format!(
                "{test} was not among the tests selected for {} (the trial filter and the suite disagree)",
                self.config.name
            ));
        }
        let run = self.run.get_or_init(|| self.boot()).as_ref().map_err(Clone::clone)?;
        judge(test, &run.outcome, &run.transcript).map_err(|reason| {
            let mut message = reason;
            let output = test_output(test, &run.transcript);
            if !output.is_empty() {
                message.push_str("\nkernel output of this test:");
                for line in output {
                    message.push_str("\n  | ");
                    message.push_str(line);
                }
            }
            match &run.log {
                Ok(path) => message.push_str(&format!("\nfull transcript: {}", path.display())),
                Err(e) => message.push_str(&format!("\nthe transcript could not be saved: {e}")),
            }
            message
        })
    }

    /// Boots the configuration with the selected tests.
    fn boot(&self) -> Result<Run, String> {
        let _one_at_a_time = BOOTING.lock().unwrap_or_else(PoisonError::into_inner);
        let result = kernels::boot(&self.config.variant(), &self.config.run_config(self.cmdline()))
            .map_err(|e| format!("{e:#}"))?;
        let log = save_log(self.config.name, &result.transcript);
        Ok(Run { outcome: result.outcome, transcript: result.transcript, log })
    }
}

/// Where transcripts are saved: `target/qemu-tests/` of the workspace.
pub fn log_dir() -> PathBuf {
    boot::kernel::workspace_root().join("target").join("qemu-tests")
}

/// Saves a transcript as `NAME.log` in `log_dir()`; the error's text if it cannot be written.
fn save_log(name: &str, transcript: &str) -> Result<PathBuf, String> {
    let dir = log_dir();
    let path = dir.join(format!("{name}.log"));
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, transcript))
        .map(|()| path.clone())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The verdict on ktest `test` from a run's outcome and transcript (rules in the module
/// documentation): `Err` holds the reason.
pub fn judge(test: &str, outcome: &Outcome, transcript: &str) -> Result<Ran, String> {
    if let Some(result) = parse_test_results(transcript).into_iter().find(|r| r.name == test) {
        return match result.verdict {
            Verdict::Passed => Ok(Ran::Passed),
            Verdict::Skipped(reason) => Ok(Ran::Skipped(reason)),
            Verdict::Failed(reason) => Err(format!("FAILED: {reason}")),
        };
    }
    match unfinished_test(transcript) {
        Some(running) if running == test => Err(outcome.to_string()),
        Some(running) => Err(format!("not run: the kernel stopped during {running}: {outcome}")),
        None if outcome.is_success() => {
            Err("the kernel reported success but printed no result line for this test".to_string())
        }
        None => Err(format!("not run: the kernel stopped before reaching it: {outcome}")),
    }
}

/// What `test` printed: the lines from its `test NAME ... ` line to its result line (or to the
/// end of the transcript, if it never finished), at most the last `QUOTED_LINES`. Empty if it
/// never started.
pub fn test_output<'t>(test: &str, transcript: &'t str) -> Vec<&'t str> {
    let prefix = format!("test {test} ...");
    let lines: Vec<&str> = transcript.lines().collect();
    let Some(start) = lines.iter().position(|l| l.starts_with(&prefix)) else { return Vec::new() };
    let is_result =
        |l: &&str| l.strip_prefix(&prefix).map(str::trim).is_some_and(|v| v == "ok" || v.starts_with("FAILED:"));
    let end = lines[start..].iter().position(is_result).map_or(lines.len(), |i| start + i + 1);
    lines[start.max(end.saturating_sub(QUOTED_LINES))..end].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CONFIGS;

    const FINISHED: &str = "running 3 tests\n\
        test a::one ... ok\n\
        test a::two ... thread a::two panicked at x.rs:1: boom\n    #0  0x10\n\
        test a::two ... FAILED: panicked: boom\n\
        test b::three ... ok\n\
        test c::four ... skipped: needs 2 CPUs (--smp 2)\n\
        2 passed, 1 failed, 1 skipped\nprologue: exit failure\n";

    fn failure() -> Outcome {
        Outcome::Failure("1 test(s) failed: a::two".into())
    }

    #[test]
    fn result_lines_decide() {
        assert_eq!(judge("a::one", &failure(), FINISHED), Ok(Ran::Passed));
        assert_eq!(judge("b::three", &failure(), FINISHED), Ok(Ran::Passed));
        assert_eq!(judge("a::two", &failure(), FINISHED), Err("FAILED: panicked: boom".into()));
        assert_eq!(judge("c::four", &failure(), FINISHED), Ok(Ran::Skipped("needs 2 CPUs (--smp 2)".into())));
    }

    #[test]
    fn a_missing_line_is_never_a_pass() {
        let err = judge("c::absent", &Outcome::Success, "test a::one ... ok\nprologue: exit success\n").unwrap_err();
        assert!(err.contains("no result line"), "{err}");
    }

    #[test]
    fn a_crash_fails_the_running_test_and_skips_the_rest() {
        let transcript = "test a::one ... ok\ntest a::two ... \nFATAL: page fault\n";
        let outcome = Outcome::Failure("FATAL: page fault (during test a::two)".into());
        assert_eq!(judge("a::one", &outcome, transcript), Ok(Ran::Passed));
        assert_eq!(
            judge("a::two", &outcome, transcript),
            Err("kernel failure: FATAL: page fault (during test a::two)".into())
        );
        assert_eq!(
            judge("b::three", &outcome, transcript),
            Err("not run: the kernel stopped during a::two: kernel failure: FATAL: page fault (during test a::two)"
                .into())
        );
    }

    #[test]
    fn a_hang_names_the_hung_test() {
        let transcript = "test a::one ... ok\ntest a::two ... spinning\n";
        let outcome = Outcome::Timeout { seconds: 600, during: unfinished_test(transcript) };
        let err = judge("a::two", &outcome, transcript).unwrap_err();
        assert!(err.contains("hung in test a::two"), "{err}");
        let err = judge("b::three", &outcome, transcript).unwrap_err();
        assert!(err.starts_with("not run: the kernel stopped during a::two: watchdog"), "{err}");
    }

    #[test]
    fn a_boot_failure_runs_nothing() {
        let err = judge("a::one", &Outcome::TripleFault, "Prologue 0.1.0: 1 CPU(s)\n").unwrap_err();
        assert!(err.starts_with("not run: the kernel stopped before reaching it: triple fault"), "{err}");
    }

    #[test]
    fn quotes_the_output_of_one_test() {
        assert_eq!(
            test_output("a::two", FINISHED),
            [
                "test a::two ... thread a::two panicked at x.rs:1: boom",
                "    #0  0x10",
                "test a::two ... FAILED: panicked: boom"
            ]
        );
        assert_eq!(test_output("a::one", FINISHED), ["test a::one ... ok"]);
        assert!(test_output("c::absent", FINISHED).is_empty());
        // An unfinished test: everything to the end, at most QUOTED_LINES.
        let long: String =
            std::iter::once("test a::one ... \n".to_string()).chain((0..100).map(|i| format!("line {i}\n"))).collect();
        let quoted = test_output("a::one", &long);
        assert_eq!(quoted.len(), QUOTED_LINES);
        assert_eq!(quoted.last(), Some(&"line 99"));
    }

    #[test]
    fn the_command_line_names_the_selection() {
        let all: Vec<String> = ["a::one", "a::two", "b::three"].map(String::from).to_vec();
        let some = Suite::new(&CONFIGS[0], &all, vec!["a::one".into(), "b::three".into()]);
        assert_eq!(some.cmdline(), "test=a::one,b::three");
        assert_eq!(Suite::new(&CONFIGS[0], &all, all.clone()).cmdline(), "test=all");
        // More than the kernel can read: run them all.
        let many: Vec<String> = (0..1000).map(|i| format!("module::test_{i}")).collect();
        let selected = many[1..].to_vec();
        assert_eq!(Suite::new(&CONFIGS[0], &many, selected).cmdline(), "test=all");
    }

    #[test]
    fn an_unselected_test_is_refused() {
        let all: Vec<String> = vec!["a::one".into(), "a::two".into()];
        let suite = Suite::new(&CONFIGS[0], &all, vec!["a::one".into()]);
        let err = suite.verdict("a::two").unwrap_err();
        assert!(err.contains("not among the tests selected"), "{err}");
    }
}

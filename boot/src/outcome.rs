//! Judging a run: QEMU's exit status plus the kernel's own output.
//!
//! The kernel leaves QEMU through `isa-debug-exit`: status 33 means it reported success, 35
//! failure. Status 0 is what QEMU returns after a triple fault (a CPU reset, with
//! `-no-reboot`), never a kernel's verdict. Success also requires the kernel's final line
//! `prologue: exit success`: a status alone proves nothing.

use std::fmt;

/// QEMU's exit status when the kernel reports success / failure.
pub const STATUS_SUCCESS: i32 = 33;
pub const STATUS_FAILURE: i32 = 35;

/// The kernel's final line on success.
pub const SUCCESS_LINE: &str = "prologue: exit success";

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The kernel reported success and printed its final line.
    Success,
    /// The kernel reported failure; the reason is taken from its output.
    Failure(String),
    /// QEMU exited with status 0: the CPU reset (a triple fault).
    TripleFault,
    /// The watchdog stopped QEMU.
    Timeout { seconds: u64, during: Option<String> },
    /// QEMU itself failed (bad option, missing file...).
    QemuError(String),
    /// The caller stopped the run before it ended (`RunConfig::stop`): no verdict.
    Stopped,
    /// A test watchdog (`qemu::Watch`) stopped QEMU: `test` ran longer than `seconds`, or (`None`)
    /// no test started for that long.
    Stalled { seconds: u64, test: Option<String> },
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        *self == Outcome::Success
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Success => write!(f, "the kernel reported success"),
            Outcome::Failure(reason) => write!(f, "kernel failure: {reason}"),
            Outcome::TripleFault => {
                write!(f, "triple fault: the CPU reset (QEMU exited with status 0 under -no-reboot)")
            }
            Outcome::Timeout { seconds, during: Some(test) } => {
                write!(f, "watchdog: the kernel did not finish within {seconds} s (hung in test {test})")
            }
            Outcome::Timeout { seconds, during: None } => {
                write!(f, "watchdog: the kernel did not finish within {seconds} s")
            }
            Outcome::QemuError(msg) => write!(f, "QEMU failed: {msg}"),
            Outcome::Stopped => write!(f, "stopped before it ended (no verdict)"),
            Outcome::Stalled { seconds, test: Some(test) } => {
                write!(f, "watchdog: test {test} did not finish within {seconds} s (hung)")
            }
            Outcome::Stalled { seconds, test: None } => {
                write!(f, "watchdog: no test started and the kernel did not finish within {seconds} s")
            }
        }
    }
}

/// What became of one in-kernel test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed(String),
    /// The test could not run in this guest or build (its reason says why).
    Skipped(String),
}

impl Verdict {
    /// Parses the text after `test NAME ... `: `ok`, `FAILED: reason` or `skipped: reason`.
    pub fn parse(text: &str) -> Option<Verdict> {
        if text == "ok" {
            return Some(Verdict::Passed);
        }
        if let Some(reason) = text.strip_prefix("FAILED: ") {
            return Some(Verdict::Failed(reason.to_string()));
        }
        text.strip_prefix("skipped: ").map(|reason| Verdict::Skipped(reason.to_string()))
    }
}

/// The result of one in-kernel test, from its `test NAME ... VERDICT` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub name: String,
    pub verdict: Verdict,
}

impl TestResult {
    pub fn failed(&self) -> Option<&str> {
        match &self.verdict {
            Verdict::Failed(reason) => Some(reason),
            _ => None,
        }
    }
}

/// Every test result in a transcript, in order.
pub fn parse_test_results(transcript: &str) -> Vec<TestResult> {
    transcript
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("test ")?;
            let (name, verdict) = rest.split_once(" ... ")?;
            if name.contains(' ') {
                return None;
            }
            Some(TestResult { name: name.to_string(), verdict: Verdict::parse(verdict)? })
        })
        .collect()
}

/// The test that started last and has no result line: the one running when output stopped.
pub fn unfinished_test(transcript: &str) -> Option<String> {
    let mut running: Option<String> = None;
    for line in transcript.lines() {
        if let Some(rest) = line.strip_prefix("test ")
            && let Some((name, verdict)) = rest.split_once(" ...")
        {
            // Anything but a verdict after the prefix is the test's own output.
            let finished = Verdict::parse(verdict.trim()).is_some();
            running = if finished { None } else { Some(name.to_string()) };
        }
    }
    running
}

/// The most telling line of a failed run's output.
fn failure_reason(transcript: &str) -> String {
    let lines: Vec<&str> = transcript.lines().collect();
    let find = |prefix: &str| lines.iter().find(|l| l.starts_with(prefix)).map(|l| l.to_string());
    if let Some(fatal) = find("FATAL:") {
        return match unfinished_test(transcript) {
            Some(test) => format!("{fatal} (during test {test})"),
            None => fatal,
        };
    }
    for prefix in ["cmdline: error", "ktest: no test matches", "stress: FAILURE"] {
        if let Some(line) = find(prefix) {
            return line;
        }
    }
    let failed: Vec<String> =
        parse_test_results(transcript).into_iter().filter(|t| t.failed().is_some()).map(|t| t.name).collect();
    if !failed.is_empty() {
        return format!("{} test(s) failed: {}", failed.len(), failed.join(", "));
    }
    let last = lines.iter().rev().find(|l| !l.trim().is_empty() && !l.starts_with("prologue: exit"));
    format!("the kernel reported failure (last line: {})", last.unwrap_or(&"<none>"))
}

/// Judges a run from QEMU's exit status (`None`: killed by the watchdog after `timeout`
/// seconds) and the transcript.
pub fn judge(status: Option<i32>, timeout: u64, transcript: &str, qemu_stderr: &str) -> Outcome {
    match status {
        None => Outcome::Timeout { seconds: timeout, during: unfinished_test(transcript) },
        Some(STATUS_SUCCESS) if transcript.lines().any(|l| l == SUCCESS_LINE) => Outcome::Success,
        Some(STATUS_SUCCESS) => Outcome::Failure("QEMU reported success but the kernel's final line is missing".into()),
        Some(STATUS_FAILURE) => Outcome::Failure(failure_reason(transcript)),
        Some(0) => Outcome::TripleFault,
        Some(code) => Outcome::QemuError(format!("exit status {code}: {}", qemu_stderr.trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_test_lines() {
        let t = "running 3 tests\ntest a::b ... ok\ntest c ... FAILED: boom\nnoise\n\
                 test d ... skipped: needs 2 CPUs\n1 passed, 1 failed, 1 skipped\n";
        let r = parse_test_results(t);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0], TestResult { name: "a::b".into(), verdict: Verdict::Passed });
        assert_eq!(r[1].failed(), Some("boom"));
        assert_eq!(r[2].verdict, Verdict::Skipped("needs 2 CPUs".into()));
    }

    #[test]
    fn finds_the_hung_test() {
        assert_eq!(unfinished_test("test a ... ok\ntest b ... "), Some("b".into()));
        assert_eq!(unfinished_test("test a ... ok\n"), None);
        assert_eq!(unfinished_test("test a ... some output\nmore"), Some("a".into()));
        assert_eq!(unfinished_test("test a ... skipped: one CPU\n"), None);
    }

    #[test]
    fn status_zero_is_a_triple_fault_not_success() {
        assert_eq!(judge(Some(0), 10, SUCCESS_LINE, ""), Outcome::TripleFault);
        assert!(judge(Some(33), 10, "prologue: exit success\n", "").is_success());
        assert!(!judge(Some(33), 10, "no final line\n", "").is_success());
    }

    #[test]
    fn fatal_reports_name_the_running_test() {
        let t = "test x ... \nFATAL: stack overflow on the interrupt stack\n";
        assert_eq!(
            judge(Some(35), 10, t, ""),
            Outcome::Failure("FATAL: stack overflow on the interrupt stack (during test x)".into())
        );
    }
}

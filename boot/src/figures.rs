//! Reading benchmark results: the kernel's (`kernel/src/bench.rs`) and the comparison programs'
//! (`bench/go`, `bench/linux`), which print them the same way. A result line is
//! `bench NAME: TOTAL UNIT / N THINGS = X.Y UNIT/THING` -- TOTAL the raw count (instructions
//! between two reads of the time-stamp counter, bytes, threads), N what it is divided by, X.Y the
//! quotient with one decimal -- e.g. `bench yield: 2380000 instructions / 20000 switches = 119.0
//! instructions/switch`. A failed check prints `FAILURE: ...`; a complete run ends with
//! `bench: done`.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

/// The last line of a complete run.
pub const DONE_LINE: &str = "bench: done";

/// One benchmark's figure as printed: `total` units over `ops` things.
#[derive(Clone, Debug, PartialEq)]
pub struct RawFigure {
    /// The raw count: for instructions, the time-stamp counter's delta over the timed region.
    pub total: u64,
    /// What it is divided by: operations in the timed region, threads, ...
    pub ops: u64,
    /// `total / ops`, as printed (one decimal).
    pub per_op: f64,
    /// What is counted and what it is counted per: "instructions" and "op", "bytes" and "thread".
    pub unit: String,
    pub per: String,
}

impl RawFigure {
    /// The unit of `per_op`, as printed: `instructions/op`.
    pub fn unit_per(&self) -> String {
        format!("{}/{}", self.unit, self.per)
    }

    /// Is it a count of instructions (a time), rather than memory or a number of threads?
    pub fn is_instructions(&self) -> bool {
        self.unit == "instructions"
    }
}

/// Everything a transcript reports.
#[derive(Debug, Default, PartialEq)]
pub struct Report {
    /// Result lines, by benchmark name.
    pub figures: BTreeMap<String, RawFigure>,
    /// The text after `FAILURE: ` of each failed check.
    pub failures: Vec<String>,
    /// Whether the `bench: done` line was printed.
    pub done: bool,
}

/// Parses a transcript. Other lines (the kernel's own messages) are ignored, but a line that
/// starts like a result and is not one, a figure that does not add up, or a benchmark reported
/// twice, is an error naming the line.
pub fn parse(transcript: &str) -> Result<Report> {
    let mut report = Report::default();
    for line in transcript.lines().map(str::trim_end) {
        if line == DONE_LINE {
            report.done = true;
        } else if let Some(failure) = line.strip_prefix("FAILURE: ") {
            report.failures.push(failure.to_string());
        } else if line.starts_with("bench ") {
            let (name, figure) = parse_line(line).with_context(|| format!("in the line `{line}`"))?;
            if report.figures.insert(name.clone(), figure).is_some() {
                bail!("benchmark {name} is reported twice");
            }
        }
    }
    Ok(report)
}

/// Parses one result line.
fn parse_line(line: &str) -> Result<(String, RawFigure)> {
    let Some((name, figure)) = line.strip_prefix("bench ").and_then(|rest| rest.split_once(": ")) else {
        bail!("expected `bench NAME: ...`");
    };
    if name.is_empty() || name.contains(char::is_whitespace) {
        bail!("`{name}` is not a benchmark name");
    }
    let shape = "expected `TOTAL UNIT / N THINGS = X.Y UNIT/THING`";
    let words: Vec<&str> = figure.split(' ').collect();
    let [total, unit, "/", ops, _things, "=", per_op, unit_per] = words[..] else { bail!(shape) };
    let Some((unit_again, per)) = unit_per.split_once('/') else { bail!(shape) };
    if unit_again != unit || per.is_empty() {
        bail!("{shape}: `{unit_per}` is not {unit}/THING");
    }
    let total: u64 = total.parse().with_context(|| format!("TOTAL `{total}` is not a whole number"))?;
    let ops: u64 = ops.parse().with_context(|| format!("N `{ops}` is not a whole number"))?;
    let per_op: f64 = per_op.parse().with_context(|| format!("`{per_op}` is not a number"))?;
    if ops == 0 {
        bail!("zero operations");
    }
    // One decimal printed: at most 0.05 from the quotient (plus floating-point slack).
    let exact = total as f64 / ops as f64;
    if (exact - per_op).abs() > 0.05 + 1e-9 * exact {
        bail!("{total} / {ops} is {exact:.3}, not {per_op}");
    }
    Ok((name.to_string(), RawFigure { total, ops, per_op, unit: unit.to_string(), per: per.to_string() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_results_failures_and_the_last_line() {
        let report = parse(
            "[    0.000000] Linux version 6.1.0\n\
             bench spawn_join: 54260000 instructions / 20000 ops = 2713.0 instructions/op\r\n\
             bench yield: 48500 instructions / 100 ops = 485.0 instructions/op\n\
             FAILURE: mutex_contended: only 3 of 9 acquisitions after the first changed hands\n\
             bench: done\n\
             Kernel panic - not syncing: Attempted to kill init!\n",
        )
        .unwrap();
        assert_eq!(report.figures.len(), 2);
        let spawn = &report.figures["spawn_join"];
        assert_eq!((spawn.total, spawn.ops, spawn.per_op), (54_260_000, 20_000, 2713.0));
        assert_eq!(spawn.unit_per(), "instructions/op");
        assert!(spawn.is_instructions());
        assert_eq!(report.figures["yield"].ops, 100);
        assert_eq!(report.failures, ["mutex_contended: only 3 of 9 acquisitions after the first changed hands"]);
        assert!(report.done);
    }

    #[test]
    fn rounding_to_one_decimal_is_accepted() {
        // 1000 / 3 = 333.33..., printed 333.3; 5 / 2 = 2.5 exactly.
        let report = parse("bench a: 1000 instructions / 3 ops = 333.3 instructions/op\n").unwrap();
        assert_eq!(report.figures["a"].total, 1000);
        assert!(!report.done);
        assert!(parse("bench b: 5 instructions / 2 ops = 2.5 instructions/op").is_ok());
    }

    #[test]
    fn other_units_are_read_too() {
        let report = parse("bench idle_thread_memory: 49990000 bytes / 10000 threads = 4999.0 bytes/thread\n").unwrap();
        let memory = &report.figures["idle_thread_memory"];
        assert_eq!((memory.unit.as_str(), memory.per.as_str(), memory.per_op), ("bytes", "thread", 4999.0));
        assert!(!memory.is_instructions());
    }

    #[test]
    fn bad_lines_are_errors_naming_them() {
        for bad in [
            "bench x: 12 instructions/op",
            "bench x: 1.5 instructions / 3 ops = 0.5 instructions/op",
            "bench x: 10 instructions / 0 ops = 0.0 instructions/op",
            "bench x: 10 instructions / 2 ops = 7.0 instructions/op",
            "bench x: 10 instructions / 2 ops = five instructions/op",
            "bench two words: 10 instructions / 2 ops = 5.0 instructions/op",
            "bench x: 10 instructions / 2 ops = 5.0 bytes/op",
        ] {
            let error = format!("{:#}", parse(bad).unwrap_err());
            assert!(error.contains(bad), "{error}");
        }
    }

    #[test]
    fn a_benchmark_reported_twice_is_an_error() {
        let line = "bench a: 10 instructions / 2 ops = 5.0 instructions/op\n";
        assert!(parse(&line.repeat(2)).is_err());
    }
}

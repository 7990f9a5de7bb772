//! The kernel command line: `key=value` words separated by spaces.
//!
//! The runner passes it through QEMU's fw_cfg (`arch::fwcfg`). Every word must be a known key
//! with a valid value; otherwise parsing fails with an error naming the word, and the kernel
//! stops before doing anything else (a mistyped option must never be silently ignored).

use core::fmt;

use crate::crash::Crash;
use crate::sched::explore::Strategy;
use crate::sched::preempt::Mode;

/// What the kernel does after booting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// The prime-sieve demo and statistics (the default).
    Demo,
    /// In-kernel tests selected by `test=`.
    Tests,
    /// The torture test (`stress=SECONDS`).
    Stress,
    /// The benchmarks (`bench=`).
    Bench,
}

/// The parsed command line.
#[derive(Debug, Clone, Copy)]
pub struct Cmdline<'a> {
    pub run: Run,
    /// `test=`: comma-separated names, `PREFIX*` patterns, `all`, or `list`.
    pub tests: &'a str,
    /// `stress=`: seconds of torture.
    pub stress_seconds: u64,
    /// `bench=`: comma-separated benchmark names, or `all`.
    pub bench: &'a str,
    /// `inject=`: a planted bug for the stress test.
    pub inject: &'a str,
    /// `seed=`: seed for stress and tests that use randomness.
    pub seed: u64,
    pub log: log::LevelFilter,
    pub heap_max_mib: usize,
    pub stack_max_kib: usize,
    pub stack_init_kib: usize,
    pub quantum_ms: u64,
    pub preempt: Mode,
    /// `shell=1`: after the demo, read commands from the serial line.
    pub shell: bool,
    /// `vcpu_share=on`: share QEMU's single icount host thread fairly between the virtual CPUs
    /// (`sched::vcpu_share`; the runner sets it with `--icount`).
    pub vcpu_share: bool,
    pub crash: Option<Crash>,
    /// `strategy=`: where the forced-preemption build preempts (`sched::explore`).
    pub strategy: Option<Strategy>,
    /// `pct_steps=`: K, the steps over which PCT draws its change points.
    pub pct_steps: u64,
    /// `record=on`: print every forced preemption point taken, at the end (for `shrink`).
    pub record: bool,
    /// `coverage=on`: print where preemptions landed, at the end.
    pub coverage: bool,
    /// `trace=on`: record the scheduler trace (`trace`), `trace_kib=` KiB per CPU.
    pub trace: bool,
    pub trace_kib: usize,
    /// `schedtrace=MS`: a line per CPU every MS milliseconds (`sched::monitor`; 0: off).
    pub schedtrace_ms: u64,
    /// `watchdog=SECONDS`: stop with every thread's traceback if the run is not over by then
    /// (`sched::monitor`; 0: off). The runner sets it a little before its own watchdog.
    pub watchdog_s: u64,
}

impl Default for Cmdline<'_> {
    fn default() -> Self {
        Cmdline {
            run: Run::Demo,
            tests: "",
            stress_seconds: 0,
            bench: "",
            inject: "",
            seed: 1,
            log: log::LevelFilter::Info,
            heap_max_mib: 512,
            stack_max_kib: crate::mm::stack::DEFAULT_RESERVE / 1024,
            stack_init_kib: crate::mm::stack::DEFAULT_INITIAL / 1024,
            quantum_ms: 10,
            preempt: Mode::Async,
            shell: false,
            vcpu_share: false,
            crash: None,
            strategy: None,
            pct_steps: 1_000_000,
            record: false,
            coverage: false,
            trace: false,
            trace_kib: 256,
            schedtrace_ms: 0,
            watchdog_s: 0,
        }
    }
}

/// A word the kernel did not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdlineError<'a> {
    pub word: &'a str,
    pub reason: &'static str,
}

impl fmt::Display for CmdlineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad command-line word '{}': {}", self.word, self.reason)
    }
}

/// Keys the kernel knows, for error messages.
pub const KEYS: &str = "test, stress, bench, inject, seed, log, heap_max_mib, stack_max_kib, \
                        stack_init_kib, quantum_ms, preempt, shell, vcpu_share, crash, strategy, pct_steps, \
                        record, coverage, trace, trace_kib, schedtrace, watchdog";

fn number<'a>(word: &'a str, value: &str, min: u64, max: u64, reason: &'static str) -> Result<u64, CmdlineError<'a>> {
    match value.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(CmdlineError { word, reason }),
    }
}

fn on_off<'a>(word: &'a str, value: &str) -> Result<bool, CmdlineError<'a>> {
    match value {
        "1" | "on" => Ok(true),
        "0" | "off" => Ok(false),
        _ => Err(CmdlineError { word, reason: "expected on or off" }),
    }
}

/// Parses `text`.
pub fn parse(text: &str) -> Result<Cmdline<'_>, CmdlineError<'_>> {
    let mut c = Cmdline::default();
    for word in text.split_ascii_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            return Err(CmdlineError { word, reason: "expected key=value" });
        };
        match key {
            "test" => {
                if value.is_empty() {
                    return Err(CmdlineError { word, reason: "expected test names, PREFIX*, all or list" });
                }
                c.run = Run::Tests;
                c.tests = value;
            }
            "stress" => {
                c.run = Run::Stress;
                c.stress_seconds = number(word, value, 1, 86_400, "expected seconds (1..=86400)")?;
            }
            "bench" => {
                c.run = Run::Bench;
                c.bench = value;
            }
            "inject" => c.inject = value,
            "seed" => c.seed = number(word, value, 0, u64::MAX, "expected a number")?,
            "log" => {
                c.log = match value {
                    "off" => log::LevelFilter::Off,
                    "error" => log::LevelFilter::Error,
                    "warn" => log::LevelFilter::Warn,
                    "info" => log::LevelFilter::Info,
                    "debug" => log::LevelFilter::Debug,
                    "trace" => log::LevelFilter::Trace,
                    _ => return Err(CmdlineError { word, reason: "expected off, error, warn, info, debug or trace" }),
                }
            }
            "heap_max_mib" => {
                c.heap_max_mib = number(word, value, 1, 65_536, "expected MiB (1..=65536)")? as usize;
            }
            "stack_max_kib" => {
                c.stack_max_kib = number(word, value, 8, 1 << 20, "expected KiB (8..=1048576)")? as usize;
            }
            "stack_init_kib" => {
                c.stack_init_kib = number(word, value, 4, 1 << 20, "expected KiB (4..=1048576)")? as usize;
            }
            "quantum_ms" => c.quantum_ms = number(word, value, 1, 10_000, "expected milliseconds (1..=10000)")?,
            "preempt" => {
                c.preempt = match value {
                    "off" => Mode::Off,
                    "coop" => Mode::Coop,
                    "async" => Mode::Async,
                    _ => return Err(CmdlineError { word, reason: "expected coop, async or off" }),
                }
            }
            "shell" => c.shell = on_off(word, value)?,
            "trace" => c.trace = on_off(word, value)?,
            "trace_kib" => {
                c.trace_kib = number(word, value, 4, 1 << 20, "expected KiB per CPU (4..=1048576)")? as usize
            }
            "schedtrace" => c.schedtrace_ms = number(word, value, 1, 3_600_000, "expected milliseconds (1..=3600000)")?,
            "watchdog" => c.watchdog_s = number(word, value, 1, 86_400, "expected seconds (1..=86400)")?,
            "vcpu_share" => c.vcpu_share = on_off(word, value)?,
            "crash" => {
                c.crash = Some(Crash::from_name(value).ok_or(CmdlineError {
                    word,
                    reason: "expected panic, triple-fault, hang, g0-overflow, irq-overflow, switch-on-g0, stuck-cpu, \
                             overflow-irqs-off, yield-holding-lock, lock-order, deadlock-chan, deadlock-waitgroup or \
                             deadlock-abba",
                })?);
            }
            "strategy" => {
                if !cfg!(feature = "always-preempt") {
                    return Err(CmdlineError {
                        word,
                        reason: "a strategy needs the forced-preemption build (--features always-preempt)",
                    });
                }
                c.strategy = Some(Strategy::parse(value).map_err(|reason| CmdlineError { word, reason })?);
            }
            "pct_steps" => c.pct_steps = number(word, value, 1, 1 << 40, "expected steps (1..=2^40)")?,
            "record" if !cfg!(feature = "always-preempt") => {
                return Err(CmdlineError {
                    word,
                    reason: "recording forced points needs the forced-preemption build (--features always-preempt)",
                });
            }
            "record" => c.record = on_off(word, value)?,
            "coverage" => c.coverage = on_off(word, value)?,
            _ => return Err(CmdlineError { word, reason: "unknown key" }),
        }
    }
    if c.stack_init_kib > c.stack_max_kib {
        return Err(CmdlineError { word: "stack_init_kib", reason: "must not exceed stack_max_kib" });
    }
    Ok(c)
}

crate::ktest! {
    /// Good words are parsed into values; defaults stay where no word is given.
    fn parses_good_words() {
        let c = parse("test=a,b* heap_max_mib=64 stack_max_kib=128 stack_init_kib=8 preempt=coop log=debug seed=7")
            .expect("valid command line");
        assert_eq!(c.run, Run::Tests);
        assert_eq!(c.tests, "a,b*");
        assert_eq!(c.heap_max_mib, 64);
        assert_eq!((c.stack_max_kib, c.stack_init_kib), (128, 8));
        assert_eq!(c.preempt, Mode::Coop);
        assert_eq!(c.log, log::LevelFilter::Debug);
        assert_eq!(c.seed, 7);
        assert_eq!(c.quantum_ms, 10, "default kept");
        assert_eq!(parse("").expect("empty is valid").run, Run::Demo);
    }
}

crate::ktest! {
    /// Each kind of bad word is rejected with an error naming that word.
    fn rejects_bad_words() {
        let cases = [
            ("bogus=1", "bogus=1", "unknown key"),
            ("log=info nokey", "nokey", "expected key=value"),
            ("heap_max_mib=lots", "heap_max_mib=lots", "expected MiB"),
            ("preempt=sometimes", "preempt=sometimes", "expected coop, async or off"),
            ("stack_max_kib=4", "stack_max_kib=4", "expected KiB"),
            ("stack_max_kib=16 stack_init_kib=32", "stack_init_kib", "must not exceed"),
        ];
        for (text, word, reason) in cases {
            let err = parse(text).expect_err(text);
            assert_eq!(err.word, word, "for {text:?}");
            assert!(err.reason.contains(reason), "for {text:?}: {}", err.reason);
        }
    }
}

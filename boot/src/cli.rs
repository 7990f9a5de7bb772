//! The `boot` command line (`cargo run -- [OPTIONS] [COMMAND]`), parsed with clap, and its
//! inverse: the parsed options written back as arguments, so that the stress farm can print
//! the exact single-run command that replays one of its seeds.
//!
//! Invariant: parsing `boot ARGS` for the ARGS that `Opts::args` returns gives back equal
//! `Opts` (the round-trip test below builds an `Opts` with every field away from its default, so
//! a new option does not compile until it is written back too).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::against::Anchor;
use crate::image::Firmware;
use crate::kernel::Variant;
use crate::qemu::RunConfig;

/// `--smp` when not given.
pub const DEFAULT_SMP: u32 = 1;
/// `--memory` when not given (MiB).
pub const DEFAULT_MEMORY_MIB: u32 = 1024;

#[derive(Parser, Debug)]
#[command(name = "boot", version, about = "Build Prologue and run it in QEMU")]
pub struct Cli {
    #[command(flatten)]
    pub opts: Opts,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The global options: how the kernel is built and how QEMU runs it.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct Opts {
    /// Boot with UEFI firmware (OVMF) instead of BIOS.
    #[arg(long, global = true)]
    pub uefi: bool,
    /// Number of CPUs.
    #[arg(long, global = true, default_value_t = DEFAULT_SMP, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub smp: u32,
    /// Guest memory in MiB (QEMU takes host memory only as the guest touches it).
    #[arg(long, global = true, default_value_t = DEFAULT_MEMORY_MIB, value_parser = clap::value_parser!(u32).range(64..=65536))]
    pub memory: u32,
    /// Build the kernel optimised, without debug assertions.
    #[arg(long, global = true)]
    pub release: bool,
    /// Build the kernel without the prologue hook (with --release; for overhead comparisons).
    #[arg(long, global = true)]
    pub plain: bool,
    /// With --plain: keep frame pointers (the hooked builds always have them).
    #[arg(long, global = true)]
    pub frame_pointers: bool,
    /// Cargo features of the kernel, comma-separated (e.g. always-preempt).
    #[arg(long, global = true, value_delimiter = ',')]
    pub features: Vec<String>,
    /// Extra kernel command-line words (key=value ...).
    #[arg(long, global = true)]
    pub cmdline: Option<String>,
    /// Stop QEMU after this many seconds (a hang is then reported).
    #[arg(long, global = true)]
    pub timeout: Option<u64>,
    /// Deterministic time: the guest clock counts executed instructions (-icount shift=0,sleep=off).
    #[arg(long, global = true)]
    pub icount: bool,
    /// Let QEMU wait for gdb on localhost:1234 (or --gdb-port), with a kernel built with full
    /// debug information; the gdb command to attach (loading the helpers of boot/gdb/prologue.py) is printed.
    #[arg(long, global = true)]
    pub gdb: bool,
    /// With --gdb: the TCP port QEMU's gdbstub listens on (default 1234).
    #[arg(long, global = true, value_name = "PORT", requires = "gdb", value_parser = clap::value_parser!(u16).range(1..))]
    pub gdb_port: Option<u16>,
    /// Pass an argument to QEMU as is (repeatable).
    #[arg(long = "qemu-arg", global = true, allow_hyphen_values = true)]
    pub qemu_args: Vec<String>,
    /// Refuse to run unless the kernel image has this build id (replay lines carry it).
    #[arg(long, global = true, value_name = "ID")]
    pub expect_build_id: Option<String>,
    /// At the end, print how many distinct functions were preempted inside, and the top ones.
    #[arg(long, global = true)]
    pub coverage: bool,
    /// Preempt exactly at the points listed in FILE and nowhere else (`shrink` writes them).
    #[arg(long, global = true, value_name = "FILE")]
    pub points: Option<PathBuf>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Boot the demo (the default).
    Run,
    /// Run the in-kernel tests: all, or those matching FILTER (NAME, PREFIX*, comma-separated).
    Test { filter: Option<String> },
    /// Run the torture test; with --runs, many seeds in parallel (the stress farm).
    Stress(StressArgs),
    /// Run the demo, tests or the torture test with the scheduler trace on, and write it to DIR as
    /// a Chrome JSON trace (trace.json, for ui.perfetto.dev) and an SVG timeline (timeline.svg).
    Trace {
        /// The directory to write trace.bin, trace.json and timeline.svg to (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// KiB of trace ring per CPU (the kernel's trace_kib=); a full ring keeps the newest events.
        #[arg(long, default_value_t = 1024)]
        kib: usize,
        #[command(subcommand)]
        what: Option<Traced>,
    },
    /// Grade a lab (or all): run its checks, print points per check, fail below full marks.
    Grade(GradeArgs),
    /// Write a student copy of the tree for a lab: its solution regions replaced by stubs.
    LabCopy {
        /// The lab's number.
        lab: String,
        /// A new (or empty) directory for the copy.
        dir: PathBuf,
    },
    /// Shrink a failing run to the few preemptions that make it fail: give it the arguments of
    /// the run's replay line (after `cargo run --`).
    Shrink {
        /// The replay line's arguments, e.g. `--icount --features always-preempt stress --seed 5 ...`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        replay: Vec<String>,
        /// How many QEMUs try candidate schedules at once (default: the host's cores).
        #[arg(long, value_parser = parse_count)]
        jobs: Option<u64>,
    },
    /// For each planted kernel bug (the planted-bugs build), and for no bug, and each preemption
    /// mode (normal; always-preempt with every, random:N, async:N, pct:D) at 1 and 2 CPUs (pct at
    /// 1): how many seeds catch it and the median runs to the first catch, with stress farms
    /// (docs/stress.md).
    Hunt {
        /// Seeds per bug and mode (1..=M).
        #[arg(long, default_value_t = 5, value_parser = parse_count)]
        seeds: u64,
        /// Seconds per run.
        #[arg(long, default_value_t = 3, value_parser = parse_count)]
        seconds: u64,
        /// Only these bugs (comma-separated; default: every planted kernel bug).
        #[arg(long, value_delimiter = ',')]
        bugs: Vec<String>,
        /// N of the random:N strategy.
        #[arg(long, default_value_t = 8, value_parser = parse_count)]
        random: u64,
        /// D of the pct:D strategy.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=16))]
        pct: u32,
        /// N of the async:N strategy (mean instructions between injections, under --icount).
        #[arg(long = "async", default_value_t = 20_000, value_parser = parse_count)]
        async_mean: u64,
        /// Only these modes, comma-separated: STRATEGY@SMP (the strategy without its number:
        /// "random:8, smp 2" is `random@2`), `normal@SMP` for the normal build.
        #[arg(long, value_delimiter = ',')]
        modes: Vec<String>,
        /// How many QEMUs run at once (default: the host's cores).
        #[arg(long, value_parser = parse_count)]
        jobs: Option<u64>,
        /// Write the table as Markdown to this file too.
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Write the table as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Run the benchmarks on release builds, instruction-counted (-icount), and compare the
    /// instrumented, plain (with and without frame pointers) and always-preempt builds.
    Bench {
        /// Benchmarks to run, comma-separated, or all (list: bench=list on the kernel).
        #[arg(default_value = "all")]
        which: String,
        /// Only the instrumented build (no plain / always-preempt comparison).
        #[arg(long)]
        no_compare: bool,
        /// Also measure the same operations in Go and/or with Linux pthreads (go, linux, or both,
        /// comma-separated), in the same QEMU with the same -icount.
        #[arg(long, value_delimiter = ',', value_parser = parse_anchor)]
        against: Vec<Anchor>,
        /// Where to write the JSON results (default target/bench.json).
        #[arg(long)]
        json: Option<PathBuf>,
        /// Also write the whole benchmarks document (docs/benchmarks.md) to this file.
        #[arg(long)]
        markdown: Option<PathBuf>,
    },
}

/// `grade`'s arguments (see `boot::labs`).
#[derive(Args, Debug, Clone)]
pub struct GradeArgs {
    /// The lab's number, or all.
    pub lab: String,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Grade this tree (a collected student copy) instead of this one.
    #[arg(long)]
    pub tree: Option<PathBuf>,
    /// With --tree: grade even if files outside the lab's regions changed.
    #[arg(long)]
    pub allow_changes: bool,
}

/// What `trace` runs.
#[derive(Subcommand, Debug, Clone)]
pub enum Traced {
    /// The demo (the default).
    Run,
    /// In-kernel tests: all, or those matching FILTER.
    Test { filter: Option<String> },
    /// The torture test (one run).
    Stress(StressArgs),
}

impl Traced {
    /// The command it traces.
    pub fn command(&self) -> Command {
        match self {
            Traced::Run => Command::Run,
            Traced::Test { filter } => Command::Test { filter: filter.clone() },
            Traced::Stress(args) => Command::Stress(args.clone()),
        }
    }
}

/// The options of `stress`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct StressArgs {
    /// Seconds to run.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Seed of the random choices (with --runs: the first seed).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Turn on a planted bug (the list is printed by `--inject list`).
    #[arg(long)]
    pub inject: Option<String>,
    /// Forced-preemption strategy, given to the kernel as `strategy=STRATEGY`.
    #[arg(long, value_parser = parse_word)]
    pub strategy: Option<String>,
    /// Run N seeds (SEED, SEED+1, ...) on one build, in parallel: the stress farm.
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub runs: Option<u64>,
    /// With --runs: how many QEMUs run at once (default: the host's cores).
    #[arg(long, value_name = "J", requires = "runs", value_parser = parse_count)]
    pub jobs: Option<u64>,
}

/// `--against` names: `go` or `linux`.
fn parse_anchor(name: &str) -> Result<Anchor, String> {
    match name {
        "go" => Ok(Anchor::Go),
        "linux" => Ok(Anchor::LinuxPthreads),
        other => Err(format!("no comparison program '{other}' (expected go or linux)")),
    }
}

/// A count of at least one (`--runs`, `--jobs`).
fn parse_count(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a count: {e}")),
    }
}

/// One kernel command-line word's value: not empty, no spaces (a space would start a new word).
fn parse_word(text: &str) -> Result<String, String> {
    if text.is_empty() || text.contains(char::is_whitespace) {
        return Err("must be one word, without spaces".to_string());
    }
    Ok(text.to_string())
}

/// The watchdog of a stress run of `seconds` when `--timeout` is not given: four times the run
/// (TCG and `always-preempt` are slow, and the end of a run joins every thread) plus two minutes
/// for booting and building nothing.
pub fn default_stress_timeout(seconds: u64) -> u64 {
    seconds.saturating_mul(4).saturating_add(120)
}

impl Opts {
    /// The kernel build these options ask for.
    pub fn variant(&self) -> Variant {
        Variant {
            release: self.release,
            features: self.features.clone(),
            plain: self.plain,
            frame_pointers: self.frame_pointers,
            // Release and plain builds keep line tables only (`run` says so).
            full_debug: self.gdb && !self.release && !self.plain,
        }
    }

    pub fn firmware(&self) -> Firmware {
        if self.uefi { Firmware::Uefi } else { Firmware::Bios }
    }

    /// How QEMU runs for these options: `words` are the command's own kernel words, followed by
    /// those of `--cmdline` (later words win in the kernel), then those of `--points`; `default_timeout` applies when
    /// `--timeout` is not given. Echoes the output, reads no input.
    pub fn run_config(&self, mut words: Vec<String>, default_timeout: Option<u64>) -> RunConfig {
        if self.coverage {
            words.push("coverage=on".to_string());
        }
        if let Some(extra) = &self.cmdline {
            words.extend(extra.split_whitespace().map(String::from));
        }
        // Last, so that they win over a `strategy=` or `preempt=` of `--cmdline`.
        if self.points.is_some() {
            words.extend(["strategy=points".to_string(), "preempt=off".to_string()]);
        }
        RunConfig {
            firmware: self.firmware(),
            smp: self.smp,
            memory_mib: self.memory,
            cmdline: words.join(" "),
            timeout: self.timeout.or(default_timeout).map(Duration::from_secs),
            icount: self.icount,
            gdb: self.gdb,
            gdb_port: self.gdb_port.unwrap_or(crate::qemu::DEFAULT_GDB_PORT),
            qemu_args: self.qemu_args.clone(),
            interactive: false,
            input: None,
            echo: true,
            stop: None,
            points: None,
            debugcon: None,
        }
    }

    /// The arguments that give these options again (defaults left out), in a fixed order.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut flag = |on: bool, name: &str| {
            if on {
                args.push(name.to_string());
            }
        };
        flag(self.uefi, "--uefi");
        flag(self.release, "--release");
        flag(self.plain, "--plain");
        flag(self.frame_pointers, "--frame-pointers");
        flag(self.icount, "--icount");
        flag(self.gdb, "--gdb");
        flag(self.coverage, "--coverage");
        let mut valued = |name: &str, value: String| args.extend([name.to_string(), value]);
        if self.smp != DEFAULT_SMP {
            valued("--smp", self.smp.to_string());
        }
        if self.memory != DEFAULT_MEMORY_MIB {
            valued("--memory", self.memory.to_string());
        }
        if !self.features.is_empty() {
            valued("--features", self.features.join(","));
        }
        if let Some(cmdline) = &self.cmdline {
            valued("--cmdline", cmdline.clone());
        }
        if let Some(timeout) = self.timeout {
            valued("--timeout", timeout.to_string());
        }
        if let Some(port) = self.gdb_port {
            valued("--gdb-port", port.to_string());
        }
        if let Some(id) = &self.expect_build_id {
            valued("--expect-build-id", id.clone());
        }
        if let Some(points) = &self.points {
            valued("--points", points.display().to_string());
        }
        // `--qemu-arg=VALUE`: a value that starts with `-` stays the option's value.
        args.extend(self.qemu_args.iter().map(|a| format!("--qemu-arg={a}")));
        args
    }
}

impl StressArgs {
    /// The kernel command-line words of one torture run with `seed`.
    pub fn kernel_words(&self, seed: u64) -> Vec<String> {
        let mut words = vec![format!("stress={}", self.seconds), format!("seed={seed}")];
        if let Some(bug) = &self.inject {
            words.push(format!("inject={bug}"));
        }
        if let Some(strategy) = &self.strategy {
            words.push(format!("strategy={strategy}"));
        }
        words
    }
}

/// The single-run command that replays one seed of a farm: the same global options, the same
/// stress options, that seed, no `--runs`.
#[derive(Clone, Debug)]
pub struct Replay {
    global: Vec<String>,
    stress: StressArgs,
}

impl Replay {
    pub fn new(opts: &Opts, stress: &StressArgs) -> Replay {
        Replay { global: opts.args(), stress: stress.clone() }
    }

    /// The arguments after `cargo run --` that run `seed` alone.
    pub fn args(&self, seed: u64) -> Vec<String> {
        let mut args = self.global.clone();
        args.extend(["stress", "--seconds"].map(String::from));
        args.push(self.stress.seconds.to_string());
        args.push("--seed".to_string());
        args.push(seed.to_string());
        if let Some(bug) = &self.stress.inject {
            args.extend(["--inject".to_string(), bug.clone()]);
        }
        if let Some(strategy) = &self.stress.strategy {
            args.extend(["--strategy".to_string(), strategy.clone()]);
        }
        args
    }

    /// The command, ready to paste into a POSIX shell.
    pub fn command(&self, seed: u64) -> String {
        let words: Vec<String> = self.args(seed).iter().map(|a| shell_quote(a)).collect();
        format!("cargo run -- {}", words.join(" "))
    }
}

/// `word` as a POSIX shell reads it back: as is when it has only characters that no shell treats
/// specially, otherwise in single quotes (a single quote inside becomes `'\''`).
pub fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_.,/:=+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Options with every field away from its default.
    fn unusual_opts() -> Opts {
        Opts {
            uefi: true,
            smp: 2,
            memory: 512,
            release: true,
            plain: true,
            frame_pointers: true,
            features: vec!["always-preempt".into(), "other".into()],
            cmdline: Some("preempt=coop quantum_ms=3".into()),
            timeout: Some(77),
            icount: true,
            gdb: true,
            gdb_port: Some(4321),
            qemu_args: vec!["-d".into(), "int,cpu_reset".into(), "it's".into()],
            expect_build_id: Some("00112233445566778899aabbccddeeff".into()),
            coverage: true,
            points: Some("target/shrink/points.txt".into()),
        }
    }

    fn parse(args: &[String]) -> Cli {
        let argv = std::iter::once("boot".to_string()).chain(args.iter().cloned());
        Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?} does not parse: {e}"))
    }

    /// Splits `command` the way `sh` does (the real shell, not a model of it).
    fn shell_split(command: &str) -> Vec<String> {
        let script = format!("printf '%s\\0' {command}");
        let out = std::process::Command::new("sh").arg("-c").arg(&script).output().expect("sh runs");
        assert!(out.status.success(), "sh failed on {command}");
        let text = String::from_utf8(out.stdout).unwrap();
        text.split_terminator('\0').map(String::from).collect()
    }

    #[test]
    fn global_options_round_trip() {
        for opts in [unusual_opts(), parse(&[]).opts] {
            assert_eq!(parse(&opts.args()).opts, opts);
        }
        assert!(parse(&[]).opts.args().is_empty(), "defaults are left out");
    }

    #[test]
    fn replay_command_parses_back_to_the_same_run() {
        let stress = StressArgs {
            seconds: 2,
            seed: 1,
            inject: Some("non-atomic-counter".into()),
            strategy: Some("random:7".into()),
            runs: Some(8),
            jobs: Some(2),
        };
        let replay = Replay::new(&unusual_opts(), &stress);
        let command = replay.command(5);
        let words = shell_split(&command);
        assert_eq!(words[..2], ["cargo", "run"]);
        assert_eq!(words[2], "--");
        let cli = parse(&words[3..]);
        assert_eq!(cli.opts, unusual_opts());
        let Some(Command::Stress(replayed)) = cli.command else { panic!("not a stress command: {command}") };
        assert_eq!(replayed, StressArgs { seed: 5, runs: None, jobs: None, ..stress });
    }

    #[test]
    fn a_plain_replay_reads_plainly() {
        let cli = parse(
            &["--smp", "2", "--features", "always-preempt", "stress", "--seconds", "1", "--runs", "8"]
                .map(String::from),
        );
        let Some(Command::Stress(stress)) = cli.command else { panic!("not stress") };
        assert_eq!(
            Replay::new(&cli.opts, &stress).command(3),
            "cargo run -- --smp 2 --features always-preempt stress --seconds 1 --seed 3"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("preempt=coop"), "preempt=coop");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_split(&shell_quote("$HOME `x` * \" \\")), ["$HOME `x` * \" \\"]);
    }

    #[test]
    fn stress_words() {
        let cli = parse(&["stress", "--seconds", "3", "--seed", "9", "--strategy", "every"].map(String::from));
        let Some(Command::Stress(stress)) = cli.command else { panic!("not stress") };
        assert_eq!(stress.kernel_words(9), ["stress=3", "seed=9", "strategy=every"]);
        let cfg = Opts { cmdline: Some("log=off".into()), ..cli.opts }.run_config(stress.kernel_words(4), Some(10));
        assert_eq!(cfg.cmdline, "stress=3 seed=4 strategy=every log=off");
        assert_eq!(cfg.timeout, Some(Duration::from_secs(10)));
    }

    #[test]
    fn bad_counts_and_words_are_refused() {
        let refused = |args: &[&str]| {
            let argv = std::iter::once("boot").chain(args.iter().copied());
            Cli::try_parse_from(argv).expect_err("accepted").to_string()
        };
        assert!(refused(&["stress", "--runs", "0"]).contains("must be at least 1"));
        assert!(refused(&["stress", "--runs", "4", "--jobs", "0"]).contains("must be at least 1"));
        assert!(refused(&["stress", "--jobs", "2"]).contains("--runs"));
        assert!(refused(&["stress", "--strategy", "a b"]).contains("without spaces"));
    }
}

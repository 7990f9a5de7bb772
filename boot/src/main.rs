//! `boot`: Prologue's runner, the default `cargo run` binary.
//!
//! `cargo run` builds the kernel, makes a disk image and boots it in QEMU with the serial port on
//! this terminal. `cargo run -- test [FILTER]` runs the in-kernel tests; `stress` and `bench`
//! run the torture test and the benchmarks; `grade` and `lab-copy` serve the labs (`boot::labs`). The exit status is 0 only if the kernel reported
//! success (and printed its final line); otherwise a one-line reason goes to stderr.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use boot::{Firmware, Outcome, RunConfig, Variant, image, kernel, parse_test_results};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "boot", version, about = "Build Prologue and run it in QEMU")]
struct Cli {
    #[command(flatten)]
    opts: Opts,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args)]
struct Opts {
    /// Boot with UEFI firmware (OVMF) instead of BIOS.
    #[arg(long, global = true)]
    uefi: bool,
    /// Number of CPUs.
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    smp: u32,
    /// Guest memory in MiB (QEMU takes host memory only as the guest touches it).
    #[arg(long, global = true, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(64..=65536))]
    memory: u32,
    /// Build the kernel optimised, without debug assertions.
    #[arg(long, global = true)]
    release: bool,
    /// Build the kernel without the prologue hook (with --release; for overhead comparisons).
    #[arg(long, global = true)]
    plain: bool,
    /// With --plain: keep frame pointers (the hooked builds always have them).
    #[arg(long, global = true)]
    frame_pointers: bool,
    /// Cargo features of the kernel, comma-separated (e.g. always-preempt).
    #[arg(long, global = true, value_delimiter = ',')]
    features: Vec<String>,
    /// Extra kernel command-line words (key=value ...).
    #[arg(long, global = true)]
    cmdline: Option<String>,
    /// Stop QEMU after this many seconds (a hang is then reported).
    #[arg(long, global = true)]
    timeout: Option<u64>,
    /// Deterministic time: the guest clock counts executed instructions (-icount shift=0,sleep=off).
    #[arg(long, global = true)]
    icount: bool,
    /// Let QEMU wait for gdb on localhost:1234 (the command to attach is printed).
    #[arg(long, global = true)]
    gdb: bool,
    /// Pass an argument to QEMU as is (repeatable).
    #[arg(long = "qemu-arg", global = true, allow_hyphen_values = true)]
    qemu_args: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Boot the demo (the default).
    Run,
    /// Run the in-kernel tests: all, or those matching FILTER (NAME, PREFIX*, comma-separated).
    Test { filter: Option<String> },
    /// Run the torture test.
    Stress {
        /// Seconds to run.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Seed of the random choices.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Turn on a planted bug (the list is printed by `--inject list`).
        #[arg(long)]
        inject: Option<String>,
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
        against: Vec<boot::against::Anchor>,
        /// Where to write the JSON results (default target/bench.json).
        #[arg(long)]
        json: Option<std::path::PathBuf>,
        /// Also write the whole benchmarks document (docs/benchmarks.md) to this file.
        #[arg(long)]
        markdown: Option<std::path::PathBuf>,
    },
    /// Grade a lab (or all): run its checks, print points per check, fail below full marks.
    Grade(GradeArgs),
    /// Write a student copy of the tree for a lab: its solution regions replaced by stubs.
    LabCopy {
        /// The lab's number.
        lab: String,
        /// A new (or empty) directory for the copy.
        dir: std::path::PathBuf,
    },
}

/// `grade`'s arguments (see `boot::labs`).
#[derive(Args)]
struct GradeArgs {
    /// The lab's number, or all.
    lab: String,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Grade this tree (a collected student copy) instead of this one.
    #[arg(long)]
    tree: Option<std::path::PathBuf>,
    /// With --tree: grade even if files outside the lab's regions changed.
    #[arg(long)]
    allow_changes: bool,
}

/// `--against` names: `go` or `linux`.
fn parse_anchor(name: &str) -> Result<boot::against::Anchor, String> {
    match name {
        "go" => Ok(boot::against::Anchor::Go),
        "linux" => Ok(boot::against::Anchor::LinuxPthreads),
        other => Err(format!("no comparison program '{other}' (expected go or linux)")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("boot: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let opts = &cli.opts;
    let command = cli.command.unwrap_or(Command::Run);
    let (mut words, default_timeout, interactive): (Vec<String>, Option<u64>, bool) = match &command {
        Command::Run => {
            // In a terminal, the demo ends in the kernel's shell, reading what is typed here.
            let interactive = std::io::stdin().is_terminal();
            let words = if interactive { vec!["shell=on".to_string()] } else { Vec::new() };
            (words, None, interactive)
        }
        Command::Test { filter } => (vec![format!("test={}", filter.as_deref().unwrap_or("all"))], Some(900), false),
        Command::Stress { seconds, seed, inject } => {
            let mut words = vec![format!("stress={seconds}"), format!("seed={seed}")];
            if let Some(bug) = inject {
                words.push(format!("inject={bug}"));
            }
            (words, Some(seconds * 4 + 120), false)
        }
        Command::Bench { which, no_compare, against, json, markdown } => {
            // Benchmarks build and boot their own kernels (release builds, -icount).
            let options = boot::bench::Options {
                which: which.clone(),
                compare: !no_compare,
                against: against.clone(),
                json: json.clone(),
                markdown: markdown.clone(),
            };
            boot::bench::bench(&options)?;
            return Ok(ExitCode::SUCCESS);
        }
        // The labs build and boot their own kernels (see `boot::labs`).
        Command::Grade(args) => {
            let options = boot::labs::GradeOptions {
                which: args.lab.clone(),
                json: args.json.clone(),
                tree: args.tree.clone(),
                allow_changes: args.allow_changes,
            };
            let full = boot::labs::grade_command(&options)?;
            return Ok(if full { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        Command::LabCopy { lab, dir } => {
            boot::labs::lab_copy(lab, dir)?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    let variant = Variant {
        release: opts.release,
        features: opts.features.clone(),
        plain: opts.plain,
        frame_pointers: opts.frame_pointers,
    };
    let elf = kernel::build(&variant, false)?;
    let firmware = if opts.uefi { Firmware::Uefi } else { Firmware::Bios };
    let image = image::make(&elf, firmware)?;

    if let Some(extra) = &opts.cmdline {
        words.extend(extra.split_whitespace().map(String::from));
    }
    let cfg = RunConfig {
        firmware,
        smp: opts.smp,
        memory_mib: opts.memory,
        cmdline: words.join(" "),
        timeout: opts.timeout.or(default_timeout).map(Duration::from_secs),
        icount: opts.icount,
        gdb: opts.gdb,
        qemu_args: opts.qemu_args.clone(),
        interactive,
        input: None,
        echo: true,
    };
    let result = boot::run(&image, &elf, &cfg)?;

    if let Command::Test { .. } = command {
        let results = parse_test_results(&result.transcript);
        let failed: Vec<(&str, &str)> = results.iter().filter_map(|t| Some((t.name.as_str(), t.failed()?))).collect();
        if !failed.is_empty() {
            eprintln!("boot: {} of {} tests failed:", failed.len(), results.len());
            for (name, reason) in &failed {
                eprintln!("  {name}: {reason}");
            }
        }
    }
    match result.outcome {
        Outcome::Success => Ok(ExitCode::SUCCESS),
        outcome => {
            eprintln!("boot: {outcome}");
            Ok(ExitCode::FAILURE)
        }
    }
}

//! `boot`: Prologue's runner, the default `cargo run` binary.
//!
//! `cargo run` builds the kernel, makes a disk image and boots it in QEMU with the serial port on
//! this terminal. `cargo run -- test [FILTER]` runs the in-kernel tests; `stress` and `bench`
//! run the torture test and the benchmarks; `stress --runs N` runs many seeds of the torture
//! test (the stress farm, `boot::farm`); `trace` runs the demo, tests or a stress run with the
//! scheduler trace on and draws it; `shrink` reduces a failing run's preemptions; `grade` and
//! `lab-copy` serve the labs (`boot::labs`). The exit status is 0 only if the kernel reported
//! success (and printed its final line), or for a farm, if every run did; otherwise a one-line
//! reason goes to stderr. The options themselves are in `boot::cli`.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, Result};
use boot::cli::{Cli, Command, Opts, StressArgs, Traced, default_stress_timeout};
use boot::{Outcome, RunConfig, farm, image, kernel, parse_test_results};
use clap::Parser;

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
    let outer = cli.command.unwrap_or(Command::Run);
    // `trace` runs another command, with the trace on and collected into its directory.
    let (command, trace_dir) = match &outer {
        Command::Trace { out, kib, what } => {
            std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
            (what.as_ref().unwrap_or(&Traced::Run).command(), Some((out.clone(), *kib)))
        }
        other => (other.clone(), None),
    };
    let (mut words, default_timeout, interactive): (Vec<String>, Option<u64>, bool) = match &command {
        Command::Run => {
            // In a terminal, the demo ends in the kernel's shell, reading what is typed here.
            let interactive = std::io::stdin().is_terminal();
            let words = if interactive { vec!["shell=on".to_string()] } else { Vec::new() };
            (words, None, interactive)
        }
        Command::Test { filter } => (vec![format!("test={}", filter.as_deref().unwrap_or("all"))], Some(900), false),
        Command::Stress(stress) if stress.runs.is_some() => return stress_farm(opts, stress),
        Command::Shrink { replay, jobs } => {
            // The global options of the replay line were taken by the outer parser, wherever they
            // stood: give them back in front of the rest.
            let args: Vec<String> = opts.args().into_iter().chain(replay.iter().cloned()).collect();
            return boot::shrink::run(&args, *jobs);
        }
        Command::Stress(stress) => {
            (stress.kernel_words(stress.seed), Some(default_stress_timeout(stress.seconds)), false)
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
        Command::Hunt { seeds, seconds, bugs, random, pct, async_mean, modes, jobs, markdown, json } => {
            let args = boot::hunt::HuntArgs {
                seeds: *seeds,
                seconds: *seconds,
                bugs: bugs.clone(),
                random: *random,
                pct: *pct,
                async_mean: *async_mean,
                modes: modes.clone(),
                jobs: *jobs,
                markdown: markdown.clone(),
                json: json.clone(),
            };
            // The command as typed, for the table's caption.
            let typed: Vec<String> = std::env::args().skip(1).map(|a| boot::cli::shell_quote(&a)).collect();
            boot::hunt::run(opts, &args, &format!("cargo run -- {}", typed.join(" ")))?;
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
        Command::Trace { .. } => anyhow::bail!("trace runs run, test or stress, not another trace"),
    };
    if let Some((_, kib)) = &trace_dir {
        words.extend(["trace=on".to_string(), format!("trace_kib={kib}")]);
    }
    if opts.gdb && (opts.release || opts.plain) {
        eprintln!(
            "boot: note: --gdb with --release or --plain keeps that build's line tables only (no types, locals \
             or paths in gdb; the helpers of boot/gdb/prologue.py need them): drop --release for the kernel-gdb build"
        );
    }
    let elf = kernel::build(&opts.variant(), false)?;
    boot::replay::check_build_id(&elf, opts.expect_build_id.as_deref())?;
    let image = image::make(&elf, opts.firmware())?;
    let points = boot::shrink::point_list(opts)?;
    let debugcon = trace_dir.as_ref().map(|(dir, _)| boot::trace::raw_path(dir));
    if let Some(raw) = &debugcon {
        // QEMU appends nothing: a trace from an earlier run must not be read as this one's.
        let _ = std::fs::remove_file(raw);
    }
    let cfg = RunConfig { interactive, points, debugcon, ..opts.run_config(words, default_timeout) };
    let result = boot::run(&image, &elf, &cfg)?;
    if let Some((dir, _)) = &trace_dir {
        let title = format!("Prologue: {} ({} CPU(s))", cfg.cmdline, opts.smp);
        match boot::trace::write_views(dir, &title) {
            Ok(w) => eprintln!(
                "boot: trace: {} events ({} overwritten in full rings), {} threads, {} CPU(s), {:.1} ms; \
                 {} (open it in https://ui.perfetto.dev) and {}",
                w.events,
                w.overwritten,
                w.threads,
                w.cpus,
                w.span_us / 1000.0,
                w.json.display(),
                w.svg.display()
            ),
            Err(e) => eprintln!("boot: trace: {e:#}"),
        }
    }
    if opts.coverage {
        let functions = boot::coverage::by_function(&result.transcript, &boot::symbols::Symbolizer::new(&elf));
        print!("{}", boot::coverage::report(&functions, 15));
    }

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
            if let Some(args) = replay_args(opts, &command, &elf)? {
                eprintln!("{}", boot::replay::line(&args, opts.icount));
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The arguments that run a failed stress or test run again, on the same image.
fn replay_args(opts: &Opts, command: &Command, elf: &std::path::Path) -> Result<Option<Vec<String>>> {
    let opts = Opts { expect_build_id: Some(boot::replay::build_id(elf)?), ..opts.clone() };
    Ok(match command {
        Command::Stress(stress) => Some(boot::cli::Replay::new(&opts, stress).args(stress.seed)),
        Command::Test { filter } => {
            let mut args = opts.args();
            args.push("test".to_string());
            args.extend(filter.clone());
            Some(args)
        }
        _ => None,
    })
}

/// `stress --runs N`: checks the options, builds once, then runs the farm; Ctrl-C stops it.
fn stress_farm(opts: &Opts, stress: &StressArgs) -> Result<ExitCode> {
    let mut plan = farm::Plan::new(opts, stress)?;
    let kernel = plan.build()?;
    let stop = farm::stop_on_interrupt()?;
    let totals = farm::run(&plan, &kernel, &stop);
    Ok(if totals.succeeded() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

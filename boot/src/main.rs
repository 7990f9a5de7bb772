//! `boot`: Prologue's runner, the default `cargo run` binary.
//!
//! `cargo run` builds the kernel, makes a disk image and boots it in QEMU with the serial port on
//! this terminal. `cargo run -- test [FILTER]` runs the in-kernel tests; `stress` and `bench`
//! run the torture test and the benchmarks; `stress --runs N` runs many seeds of the torture
//! test (the stress farm, `boot::farm`). The exit status is 0 only if the kernel reported
//! success (and printed its final line), or for a farm, if every run did; otherwise a one-line
//! reason goes to stderr. The options themselves are in `boot::cli`.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use boot::cli::{Cli, Command, Opts, StressArgs, default_stress_timeout};
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
    let command = cli.command.unwrap_or(Command::Run);
    let (words, default_timeout, interactive): (Vec<String>, Option<u64>, bool) = match &command {
        Command::Run => {
            // In a terminal, the demo ends in the kernel's shell, reading what is typed here.
            let interactive = std::io::stdin().is_terminal();
            let words = if interactive { vec!["shell=on".to_string()] } else { Vec::new() };
            (words, None, interactive)
        }
        Command::Test { filter } => (vec![format!("test={}", filter.as_deref().unwrap_or("all"))], Some(900), false),
        Command::Stress(stress) if stress.runs.is_some() => return stress_farm(opts, stress),
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
    };
    let elf = kernel::build(&opts.variant(), false)?;
    let image = image::make(&elf, opts.firmware())?;
    let cfg = RunConfig { interactive, ..opts.run_config(words, default_timeout) };
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

/// `stress --runs N`: checks the options, builds once, then runs the farm; Ctrl-C stops it.
fn stress_farm(opts: &Opts, stress: &StressArgs) -> Result<ExitCode> {
    let plan = farm::Plan::new(opts, stress)?;
    let kernel = plan.build()?;
    let stop = farm::stop_on_interrupt()?;
    let totals = farm::run(&plan, &kernel, &stop);
    Ok(if totals.succeeded() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

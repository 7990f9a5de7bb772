//! The stress farm, `cargo run -- stress --runs N [--jobs J] ...`: the torture test for seeds
//! FIRST, FIRST+1, ..., FIRST+N-1 on one kernel build and one disk image, up to J QEMUs at once.
//! Like Go's `stress` tool, it runs something many times to make a rare failure show; unlike it,
//! every run is a seed, so each failure comes with the single-run command that replays it.
//!
//! Shape: J worker threads take seeds in increasing order (`seeds`) and run each with
//! `qemu::run`, without echo or input; the main thread collects what they report, keeps the
//! transcript of every failing run (`report::Transcripts`), draws the progress line (`progress`)
//! and at the end prints the table of failing seeds and the summary line (`report`).
//!
//! Stopping (Ctrl-C): the signal handler only raises a flag (`stop_on_interrupt`). Workers take
//! no seed once it is up, and every running run watches the same flag and kills its QEMU
//! (`RunConfig::stop`). Such runs have no verdict and are not counted; the report of what
//! completed is printed, saying that the farm was interrupted.
//!
//! Rejected: letting the terminal's SIGINT reach the QEMUs (the runner's process group) and end
//! them. A QEMU ended by a signal exits with status 0, which the runner rightly judges a triple
//! fault, so every run in flight would be reported as a failing seed; and a `kill -INT` sent to
//! the runner alone would leave its QEMUs running. So QEMUs run in their own process group and
//! the farm kills them itself.
//!
//! Invariants: a farm has at least one run and one job, never more jobs than runs; no run of a
//! farm has gdb on (they would all wait on port 1234); a run that passed leaves nothing behind.

mod progress;
mod report;
mod seeds;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};

use crate::cli::{Opts, Replay, StressArgs, default_stress_timeout};
use crate::outcome::Outcome;
use crate::qemu::{RunConfig, RunResult};
use progress::{Counts, Progress};
use report::Transcripts;
pub use report::{Failure, Totals};
use seeds::Seeds;

/// How often the collector wakes up without news: redraws the progress line, notices Ctrl-C.
const TICK: Duration = Duration::from_millis(500);

/// A farm whose options were checked: what to run, how many at once.
pub struct Plan {
    opts: Opts,
    stress: StressArgs,
    seeds: Seeds,
    jobs: u64,
}

/// The kernel a farm boots: built once, one disk image for every run.
pub struct Kernel {
    elf: PathBuf,
    image: PathBuf,
}

impl Plan {
    /// Checks the options of `stress --runs` before anything is built. `--jobs` defaults to the
    /// host's cores, and is cut down to the number of runs.
    pub fn new(opts: &Opts, stress: &StressArgs) -> Result<Plan> {
        let Some(runs) = stress.runs else { bail!("a stress farm needs --runs") };
        if opts.gdb {
            bail!(
                "--gdb cannot be used with --runs: every run would wait for a debugger on port 1234 \
                 (debug one seed: the single-run command of a failing seed, with --gdb)"
            );
        }
        if opts.points.is_some() {
            bail!("--points replays one schedule; a farm runs many seeds (drop --runs to replay the list)");
        }
        if let Some(arg) = opts.qemu_args.iter().find(|a| is_gdbstub_arg(a)) {
            bail!(
                "--qemu-arg {arg} cannot be used with --runs: the runs would share one gdb port or wait for a debugger"
            );
        }
        let seeds = Seeds::new(stress.seed, runs)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let jobs = stress.jobs.unwrap_or(cores).min(runs);
        Ok(Plan { opts: opts.clone(), stress: stress.clone(), seeds, jobs })
    }

    /// Builds the kernel variant and makes its disk image, once for all runs. Also finds QEMU
    /// (and OVMF for `--uefi`) now, so that if they must be installed, one apt-get does it, not
    /// one per worker at the same time. The replay commands it prints then carry the image's
    /// build id.
    pub fn build(&mut self) -> Result<Kernel> {
        crate::host::qemu()?;
        if self.opts.uefi {
            crate::host::ovmf()?;
        }
        let elf = crate::kernel::build(&self.opts.variant(), false)?;
        crate::replay::check_build_id(&elf, self.opts.expect_build_id.as_deref())?;
        self.opts.expect_build_id = Some(crate::replay::build_id(&elf)?);
        let image = crate::image::make(&elf, self.opts.firmware())?;
        Ok(Kernel { elf, image })
    }

    /// How QEMU runs `seed`: quietly, stopped by `stop`.
    fn run_config(&self, seed: u64, stop: &Arc<AtomicBool>) -> RunConfig {
        let words = self.stress.kernel_words(seed);
        let timeout = default_stress_timeout(self.stress.seconds);
        RunConfig { echo: false, stop: Some(stop.clone()), ..self.opts.run_config(words, Some(timeout)) }
    }
}

/// QEMU's gdbstub options (`-s`, `-S`, `-gdb ...`), which parallel runs cannot share.
fn is_gdbstub_arg(arg: &str) -> bool {
    let name = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'));
    name.is_some_and(|n| n == "s" || n == "S" || n.starts_with("gdb"))
}

/// A flag that Ctrl-C (SIGINT; also SIGTERM and SIGHUP) raises. Call it once per process, after
/// the build (a Ctrl-C during the build ends the runner as usual).
pub fn stop_on_interrupt() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let raise = stop.clone();
    ctrlc::set_handler(move || raise.store(true, Ordering::Relaxed)).context("installing the Ctrl-C handler")?;
    Ok(stop)
}

/// What a worker reports.
enum Event {
    Started,
    Ended { seed: u64, end: RunEnd },
}

/// How one run ended.
enum RunEnd {
    Passed,
    Failed {
        reason: String,
        transcript: String,
    },
    /// Killed by the stop flag: no verdict.
    Stopped,
}

/// Runs every seed of `plan` on `kernel` until done or `stop` is raised, prints the progress
/// (stderr) and the report (stdout), and returns how it ended.
pub fn run(plan: &Plan, kernel: &Kernel, stop: &Arc<AtomicBool>) -> Totals {
    run_keeping_failures(plan, kernel, stop).0
}

/// `run`, also returning each failing run (its seed, reason, replay command and transcript's
/// place), for callers that tabulate farms (`boot::hunt`).
pub fn run_keeping_failures(plan: &Plan, kernel: &Kernel, stop: &Arc<AtomicBool>) -> (Totals, Vec<Failure>) {
    eprintln!(
        "stress farm: {} runs of {} s (seeds {}-{}), {} at a time, build {}; Ctrl-C stops it",
        plan.seeds.count(),
        plan.stress.seconds,
        plan.seeds.first(),
        plan.seeds.last(),
        plan.jobs,
        plan.opts.variant().name()
    );
    let mut tally = Tally::new(plan);
    let mut stop_announced = false;
    let (events, inbox) = mpsc::channel::<Event>();
    std::thread::scope(|scope| {
        for _ in 0..plan.jobs {
            let events = events.clone();
            scope.spawn(move || work(plan, kernel, stop, events));
        }
        drop(events);
        loop {
            match inbox.recv_timeout(TICK) {
                Ok(Event::Started) => tally.counts.running += 1,
                Ok(Event::Ended { seed, end }) => tally.ended(seed, end),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if stop.load(Ordering::Relaxed) && !stop_announced {
                stop_announced = true;
                // No count of the runs being stopped: some may already have reported that.
                tally.notice("stress farm: interrupted: starting no more runs, killing the running QEMUs");
            }
            tally.progress.update(&tally.counts, Instant::now());
        }
    });
    tally.finish(plan)
}

/// What the main thread knows of a farm: the counts, the failures and their kept transcripts.
struct Tally {
    counts: Counts,
    failures: Vec<Failure>,
    transcripts: Transcripts,
    replay: Replay,
    progress: Progress<std::io::Stderr>,
}

impl Tally {
    fn new(plan: &Plan) -> Tally {
        let root = crate::kernel::workspace_root();
        Tally {
            counts: Counts { total: plan.seeds.count(), ..Counts::default() },
            failures: Vec::new(),
            transcripts: Transcripts::new(&root, SystemTime::now(), std::process::id()),
            replay: Replay::new(&plan.opts, &plan.stress),
            progress: Progress::new(std::io::stderr(), std::io::stderr().is_terminal(), Instant::now()),
        }
    }

    /// Counts the run of `seed` that ended; a failure is kept and announced at once.
    fn ended(&mut self, seed: u64, end: RunEnd) {
        self.counts.running -= 1;
        let (reason, transcript) = match end {
            RunEnd::Passed => {
                self.counts.done += 1;
                return;
            }
            RunEnd::Stopped => return,
            RunEnd::Failed { reason, transcript } => (reason, transcript),
        };
        self.counts.done += 1;
        self.counts.failed += 1;
        let command = self.replay.command(seed);
        let contents = format!("{}{transcript}", report::log_header(seed, &reason, &command));
        let log = self.transcripts.keep(&format!("seed-{seed}.log"), &contents);
        let kept = match &log {
            Ok(path) => format!("transcript: {}", report::shown(path).display()),
            Err(e) => format!("the transcript could not be kept: {e}"),
        };
        self.notice(&format!("stress farm: seed {seed} failed: {reason} ({kept})"));
        self.failures.push(Failure { seed, reason, replay: command, log });
    }

    fn notice(&mut self, text: &str) {
        self.progress.notice(text, &self.counts, Instant::now());
    }

    /// The last progress line, then the report; returns the totals and the failures.
    fn finish(mut self, plan: &Plan) -> (Totals, Vec<Failure>) {
        self.progress.finish(&self.counts, Instant::now());
        let mut failed: Vec<u64> = self.failures.iter().map(|f| f.seed).collect();
        failed.sort_unstable();
        let totals = Totals {
            first_seed: plan.seeds.first(),
            last_seed: plan.seeds.last(),
            planned: self.counts.total,
            completed: self.counts.done,
            failed,
            // Every run that started and was not stopped has a verdict.
            interrupted: self.counts.done < self.counts.total,
        };
        print_report(plan, &totals, &self.failures, &mut self.transcripts);
        (totals, self.failures)
    }
}

/// A worker: runs seeds until there are none left or `stop` is raised.
fn work(plan: &Plan, kernel: &Kernel, stop: &Arc<AtomicBool>, events: mpsc::Sender<Event>) {
    while !stop.load(Ordering::Relaxed) {
        let Some(seed) = plan.seeds.take() else { return };
        if events.send(Event::Started).is_err() {
            return;
        }
        let end = match crate::qemu::run(&kernel.image, &kernel.elf, &plan.run_config(seed, stop)) {
            Ok(RunResult { outcome: Outcome::Success, .. }) => RunEnd::Passed,
            Ok(RunResult { outcome: Outcome::Stopped, .. }) => RunEnd::Stopped,
            Ok(RunResult { outcome, transcript }) => RunEnd::Failed { reason: outcome.to_string(), transcript },
            Err(e) => {
                RunEnd::Failed { reason: format!("the runner could not run QEMU: {e:#}"), transcript: String::new() }
            }
        };
        if events.send(Event::Ended { seed, end }).is_err() {
            return;
        }
    }
}

/// The table of failures, where their transcripts are, and the summary line, on stdout; the same
/// in `summary.txt` beside the transcripts, if any run failed.
fn print_report(plan: &Plan, totals: &Totals, failures: &[Failure], transcripts: &mut Transcripts) {
    let table = report::table(failures, totals.interrupted);
    let summary = report::summary_line(totals);
    print!("{table}");
    if transcripts.made() {
        let contents = format!(
            "stress farm: seeds {}-{}, {} at a time, build {}\n{table}{summary}\n",
            totals.first_seed,
            totals.last_seed,
            plan.jobs,
            plan.opts.variant().name()
        );
        match transcripts.keep("summary.txt", &contents) {
            Ok(_) => println!(
                "stress farm: the failing runs' transcripts (seed-S.log) and summary.txt are in {}/",
                report::shown(transcripts.dir()).display()
            ),
            Err(e) => println!("stress farm: summary.txt could not be written: {e}"),
        }
    }
    println!("{summary}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn plan(args: &[&str]) -> Result<Plan> {
        let cli = Cli::try_parse_from(std::iter::once("boot").chain(args.iter().copied())).unwrap();
        let Some(Command::Stress(stress)) = cli.command else { panic!("not a stress command") };
        Plan::new(&cli.opts, &stress)
    }

    #[test]
    fn jobs_never_exceed_runs() {
        assert_eq!(plan(&["stress", "--runs", "3", "--jobs", "8"]).unwrap().jobs, 3);
        assert_eq!(plan(&["stress", "--runs", "30", "--jobs", "2"]).unwrap().jobs, 2);
        let cores = std::thread::available_parallelism().unwrap().get() as u64;
        assert_eq!(plan(&["stress", "--runs", "1000"]).unwrap().jobs, cores);
    }

    #[test]
    fn debuggers_are_refused() {
        let err = |args: &[&str]| plan(args).err().expect("accepted").to_string();
        assert!(err(&["--gdb", "stress", "--runs", "2"]).starts_with("--gdb cannot be used with --runs"));
        assert!(err(&["--qemu-arg", "-s", "stress", "--runs", "2"]).contains("--qemu-arg -s cannot"));
        assert!(err(&["--qemu-arg=-gdb", "--qemu-arg", "tcp::1", "stress", "--runs", "2"]).contains("-gdb"));
        assert!(plan(&["--qemu-arg", "-d", "--qemu-arg", "int", "stress", "--runs", "2"]).is_ok());
        assert!(err(&["stress", "--seed", &u64::MAX.to_string(), "--runs", "2"]).contains("do not fit"));
    }

    #[test]
    fn each_run_is_quiet_stoppable_and_seeded() {
        let plan =
            plan(&["--cmdline", "log=off", "stress", "--seconds", "2", "--runs", "4", "--strategy", "every"]).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let cfg = plan.run_config(7, &stop);
        assert_eq!(cfg.cmdline, "stress=2 seed=7 strategy=every log=off");
        assert!(!cfg.echo && !cfg.interactive && cfg.input.is_none() && cfg.stop.is_some());
        assert_eq!(cfg.timeout, Some(Duration::from_secs(default_stress_timeout(2))));
    }
}

//! The figures Prologue is compared against: the same operations measured in Go 1.19
//! (goroutines, channels, `sync.Mutex`) and with Linux pthreads, counted in instructions exactly
//! as the kernel's own benchmarks are.
//!
//! The guest programs live in `bench/` at the repository root: `bench/go/` (a static Go program,
//! `GOMAXPROCS=1`) and `bench/linux/pthreads.c` (a static C program). Each is built on the host,
//! packed as `/init` into a tiny initramfs, and booted with Debian's Linux kernel in QEMU under
//! `-icount shift=0,sleep=off` on one CPU, where the time-stamp counter counts executed
//! instructions. The program prints one line per benchmark,
//! `bench NAME: TOTAL instructions / N THINGS = X.Y instructions/THING`, then `bench: done`, and exits;
//! the kernel then panics (`panic=-1`) and QEMU, under `-no-reboot`, ends.
//!
//! The counts are exact: the same kernel image, program and command line give the same totals,
//! run after run. They are not stable against unrelated changes, though: anything that shifts
//! the work before a benchmark (a changed program, one more word on the kernel command line, a
//! newer kernel from `linux-image-amd64`) moves where the timer ticks, the Go runtime's
//! `sysmon` wake-ups and the schedulers' decisions fall. Most figures then move by less than
//! 0.2%, a few by more: with one extra kernel argument of different lengths, Linux `spawn_join`
//! ranged over 47,000-50,400 instructions, Go `chan_unbuffered_round_trip` over 2,250-2,370,
//! and Go `mutex_contended` was 2,500 in one run and 2,850-2,870 in four others.
//!
//! [`measure`] does all of it for one [`Anchor`]. What is missing on the host (Go, gcc, a Linux
//! kernel image) is installed with apt-get when running as root, when `measure` runs.
//!
//! - `tools`: finding or installing `go`, `gcc` and the kernel image;
//! - `programs`: building the guest programs (only when a source changed);
//! - `initramfs`: writing the newc cpio archive;
//! - `vm`: booting it in QEMU and collecting the output.
//!
//! The result lines are read by `crate::figures`, as the kernel's are.

mod initramfs;
mod programs;
mod tools;
mod vm;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

pub use crate::figures::{DONE_LINE, RawFigure, Report, parse};
use initramfs::archive;

/// Which comparison figures to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Anchor {
    /// Go 1.19 at `GOMAXPROCS=1`: `bench/go/`.
    Go,
    /// C with POSIX threads on Linux 6.1: `bench/linux/pthreads.c`.
    LinuxPthreads,
}

impl Anchor {
    /// A short name, as a later `bench --against NAME` would take it.
    pub fn name(self) -> &'static str {
        match self {
            Anchor::Go => "go",
            Anchor::LinuxPthreads => "linux",
        }
    }

    /// The benchmarks its program reports (names shared with the kernel's benchmarks).
    pub fn benchmarks(self) -> &'static [&'static str] {
        match self {
            Anchor::Go => &[
                "spawn_join",
                "yield",
                "chan_unbuffered_round_trip",
                "chan_buffered_send_recv",
                "chan_buffered_pipeline",
                "mutex_uncontended",
                "mutex_contended",
                "select_two_ready",
            ],
            Anchor::LinuxPthreads => {
                &["spawn_join", "yield", "chan_unbuffered_round_trip", "mutex_uncontended", "mutex_contended"]
            }
        }
    }
}

/// What measures `which`: the compiler's version and the Linux kernel image, in a few words (for
/// reports).
pub fn environment(which: Anchor) -> Result<String> {
    let kernel = tools::linux_kernel()?;
    let kernel = kernel.file_name().map_or_else(|| kernel.display().to_string(), |n| n.to_string_lossy().into_owned());
    let compiler = match which {
        Anchor::Go => programs::version(&tools::go()?, "version")?,
        Anchor::LinuxPthreads => programs::version(&tools::gcc()?, "--version")?,
    };
    Ok(format!("{compiler}, on Linux {kernel}"))
}

/// How long one boot may take before it is stopped (it takes well under a minute on an idle
/// machine; the margin is for a busy one).
const WATCHDOG: Duration = Duration::from_secs(300);

/// How many of the last output lines an error shows.
const TAIL_LINES: usize = 15;

/// Builds the program of `which`, boots it, and returns its figures, by benchmark name.
///
/// Fails unless every benchmark of [`Anchor::benchmarks`] and the final `bench: done` line were
/// printed and no check failed; the error then shows the last lines of the output.
pub fn measure(which: Anchor) -> Result<BTreeMap<String, RawFigure>> {
    let kernel = tools::linux_kernel()?;
    let init = programs::build(which)?;
    let cpio = init.with_file_name("initramfs.cpio");
    let binary = std::fs::read(&init).with_context(|| format!("reading {}", init.display()))?;
    let tmp = cpio.with_extension(format!("cpio.{}.tmp", std::process::id()));
    std::fs::write(&tmp, archive(&binary)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &cpio).with_context(|| format!("renaming {} to {}", tmp.display(), cpio.display()))?;

    eprintln!("boot: booting {} with the {} benchmarks as /init (-icount)", kernel.display(), which.name());
    let run = vm::boot(&kernel, &cpio, WATCHDOG)?;
    let failed = |problem: String| {
        anyhow!("the {} benchmarks: {problem} ({})\n{}", which.name(), run.ending(), run.tail(TAIL_LINES))
    };
    let report = parse(&run.transcript).map_err(|e| failed(format!("{e:#}")))?;
    if !report.failures.is_empty() {
        return Err(failed(format!("failed checks: {}", report.failures.join("; "))));
    }
    let expected = which.benchmarks();
    let missing: Vec<&str> = expected.iter().copied().filter(|name| !report.figures.contains_key(*name)).collect();
    if !missing.is_empty() {
        return Err(failed(format!("no result for {}", missing.join(", "))));
    }
    if !report.done {
        return Err(failed(format!("no final `{DONE_LINE}` line")));
    }
    let unknown: Vec<&str> =
        report.figures.keys().map(String::as_str).filter(|name| !expected.contains(name)).collect();
    if !unknown.is_empty() {
        return Err(failed(format!("results for unknown benchmarks: {}", unknown.join(", "))));
    }
    Ok(report.figures)
}

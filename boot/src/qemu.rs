//! Running a kernel image in QEMU and collecting what it prints.
//!
//! QEMU runs with the serial port on its stdio, no display, no network, `-no-reboot` (a triple
//! fault ends QEMU instead of looping) and the `isa-debug-exit` device (the kernel's way out).
//! The kernel command line travels through fw_cfg as the file `opt/prologue/cmdline` (and a
//! `shrink` candidate's preemption points as `opt/prologue/points`). The disk
//! image is attached with `snapshot=on`: QEMU only reads it (writes would go to a throwaway
//! overlay), so several QEMUs can boot the same image at once -- without it, each takes the
//! image's write lock and a second one fails with `Failed to get "write" lock`.
//!
//! The output is read line by line: firmware escape codes and carriage returns are removed,
//! backtrace lines are symbolized, and each line is echoed (if asked) and kept for judging. A
//! watchdog kills QEMU after the timeout, or as soon as the caller raises the run's stop flag.
//!
//! Several runs may go on at once (the stress farm): each has its own command-line file (named
//! by process and a counter, removed on every way out), its own pipes, no terminal input, and no
//! listening port -- except `gdb` (port 1234 unless `gdb_port` says otherwise), which only one
//! run at a time can have on one port.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::image::Firmware;
use crate::outcome::{Outcome, judge};
use crate::symbols::Symbolizer;

/// The port of QEMU's gdbstub unless told otherwise (QEMU's own `-s` default).
pub const DEFAULT_GDB_PORT: u16 = 1234;

/// How to run QEMU.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub firmware: Firmware,
    pub smp: u32,
    pub memory_mib: u32,
    /// The kernel command line.
    pub cmdline: String,
    /// Kill QEMU after this long (`None`: never).
    pub timeout: Option<Duration>,
    /// Deterministic, instruction-counted time (`-icount shift=0,sleep=off`; the kernel is also
    /// told `vcpu_share=on`, see `kernel::sched::vcpu_share`).
    pub icount: bool,
    /// Wait for a debugger on `gdb_port` (QEMU starts with the CPUs stopped).
    pub gdb: bool,
    /// The TCP port of QEMU's gdbstub with `gdb`.
    pub gdb_port: u16,
    /// More QEMU arguments, as given.
    pub qemu_args: Vec<String>,
    /// Connect QEMU's stdin to ours, so typed input reaches the serial port.
    pub interactive: bool,
    /// Text to type on the serial port (for tests of the kernel's shell).
    pub input: Option<Input>,
    /// Print the output as it arrives.
    pub echo: bool,
    /// When the caller sets this flag, QEMU is killed within ~20 ms and the outcome is
    /// `Outcome::Stopped`. With a flag, QEMU also runs in a process group of its own, so that a
    /// Ctrl-C typed in the terminal reaches only the caller, which decides what stops.
    pub stop: Option<Arc<AtomicBool>>,
    /// A preemption-point list for a `strategy=points` run (`shrink`), given to the kernel as
    /// the fw_cfg file `opt/prologue/points`.
    pub points: Option<String>,
    /// Where QEMU writes the guest's debug console (port 0xe9: the scheduler trace), if anywhere.
    pub debugcon: Option<PathBuf>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            firmware: Firmware::Bios,
            smp: 1,
            memory_mib: 1024,
            cmdline: String::new(),
            timeout: Some(Duration::from_secs(300)),
            icount: false,
            gdb: false,
            gdb_port: DEFAULT_GDB_PORT,
            qemu_args: Vec::new(),
            interactive: false,
            input: None,
            echo: false,
            stop: None,
            points: None,
            debugcon: None,
        }
    }
}

/// Text typed on the serial port once the kernel printed a given line. (Typed earlier, it
/// would be lost: the UART is reset when the kernel initializes it.) QEMU then takes the bytes
/// only as fast as the guest's UART accepts them, so none is lost.
#[derive(Clone, Debug)]
pub struct Input {
    /// Type once a line starting with this has been printed.
    pub after_line: String,
    pub bytes: Vec<u8>,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunResult {
    pub outcome: Outcome,
    /// The cleaned, symbolized output.
    pub transcript: String,
}

/// Removes ANSI escape sequences (UEFI firmware writes them) and carriage returns.
pub fn clean_line(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ params final-byte; other escapes: ESC + one char.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' => {}
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// The QEMU command line for `image`.
fn qemu_command(qemu: &Path, image: &Path, cfg: &RunConfig, cmdline_file: &Path) -> Result<Command> {
    let mut cmd = Command::new(qemu);
    cmd.arg("-drive").arg(format!("format=raw,snapshot=on,file={}", image.display()));
    if cfg.firmware == Firmware::Uefi {
        cmd.arg("-bios").arg(crate::host::ovmf()?);
    }
    cmd.args(["-serial", "stdio", "-display", "none", "-no-reboot", "-net", "none"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .args(["-smp", &cfg.smp.to_string(), "-m", &cfg.memory_mib.to_string()])
        .arg("-fw_cfg")
        .arg(format!("name=opt/prologue/cmdline,file={}", cmdline_file.display()));
    if cfg.icount {
        // One instruction per nanosecond of virtual time; and while every CPU sleeps, virtual time
        // jumps to the next timer instead of following the host's clock (`sleep=off`), so that a
        // run does not depend on how fast the host is.
        cmd.args(["-icount", "shift=0,sleep=off"]);
    }
    if cfg.gdb {
        // `-S`: the CPUs wait for the debugger's `continue`.
        cmd.arg("-gdb").arg(format!("tcp:localhost:{}", cfg.gdb_port)).arg("-S");
    }
    if let Some(file) = &cfg.debugcon {
        cmd.arg("-debugcon").arg(format!("file:{}", file.display()));
    }
    cmd.args(&cfg.qemu_args);
    Ok(cmd)
}

/// Watchdogs that follow the kernel's test lines (`test NAME ... `), for runs that must not
/// spend a whole boot's timeout on one hung test: the grader's.
#[derive(Clone, Copy, Debug)]
pub struct Watch {
    /// The longest one test may run (from its `test NAME ... ` line to its verdict).
    pub test: Duration,
    /// The longest the kernel may go without running a test: from the start to the first test,
    /// and from each verdict to the next test or the end.
    pub between: Duration,
}

/// What the reader thread last saw of the tests, for the `Watch`.
struct Progress {
    running: Option<String>,
    since: Instant,
}

impl Progress {
    /// Follows one output line: a test starting (its `test NAME ... ` line; the repeated prefix of
    /// a test that prints keeps its start) or finishing (a verdict after the prefix).
    fn see(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("test ")
            && let Some((name, after)) = rest.split_once(" ...")
            && !name.contains(' ')
        {
            if crate::outcome::Verdict::parse(after.trim()).is_some() {
                self.running = None;
                self.since = Instant::now();
            } else if self.running.as_deref() != Some(name) {
                self.running = Some(name.to_string());
                self.since = Instant::now();
            }
        }
    }

    /// Why the watch ends the run now, if it does.
    fn expired(&self, watch: &Watch) -> Option<Outcome> {
        let waited = self.since.elapsed();
        match &self.running {
            Some(test) if waited >= watch.test => {
                Some(Outcome::Stalled { seconds: watch.test.as_secs(), test: Some(test.clone()) })
            }
            None if waited >= watch.between => Some(Outcome::Stalled { seconds: watch.between.as_secs(), test: None }),
            _ => None,
        }
    }
}

/// Runs `image` (built from `elf`, used for symbolization and `--gdb`) and judges the outcome.
pub fn run(image: &Path, elf: &Path, cfg: &RunConfig) -> Result<RunResult> {
    run_with(image, elf, cfg, None)
}

/// `run`, with the test watchdogs of `watch` besides the run's own timeout.
pub fn run_watched(image: &Path, elf: &Path, cfg: &RunConfig, watch: Watch) -> Result<RunResult> {
    run_with(image, elf, cfg, Some(watch))
}

fn run_with(image: &Path, elf: &Path, cfg: &RunConfig, watch: Option<Watch>) -> Result<RunResult> {
    let qemu = crate::host::qemu()?;
    let cmdline_file = TempFile::new("cmdline", kernel_cmdline(cfg).as_bytes())?;
    let points_file = cfg.points.as_ref().map(|p| TempFile::new("points", p.as_bytes())).transpose()?;
    let mut cmd = qemu_command(&qemu, image, cfg, &cmdline_file.0)?;
    if let Some(points) = &points_file {
        cmd.arg("-fw_cfg").arg(format!("name=opt/prologue/points,file={}", points.0.display()));
    }
    if cfg.stop.is_some() {
        cmd.process_group(0);
    }
    if cfg.gdb {
        eprintln!("boot: QEMU waits for a debugger; in another terminal run:");
        eprintln!("  {}", crate::gdb::command(elf, cfg.gdb_port));
        if let Some(missing) = crate::gdb::missing() {
            eprintln!("boot: note: {missing}");
        }
    }
    let stdin = match (&cfg.input, cfg.interactive) {
        (Some(_), _) => Stdio::piped(),
        (None, true) => Stdio::inherit(),
        (None, false) => Stdio::null(),
    };
    cmd.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("starting {}", qemu.display()))?;
    // Type the input from a thread, once the reader saw the awaited line (the pipe may fill up
    // until the guest reads); keep QEMU's stdin open afterwards, as a terminal would be.
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let awaited = cfg.input.as_ref().map(|i| i.after_line.clone());
    let typist = match (cfg.input.clone(), child.stdin.take()) {
        (Some(input), Some(mut stdin)) => Some(std::thread::spawn(move || {
            if ready_rx.recv().is_ok() {
                let _ = stdin.write_all(&input.bytes);
                let _ = stdin.flush();
            }
            stdin
        })),
        _ => None,
    };

    // Read stdout on a thread: lines go to a channel, so the watchdog below can wait for exit.
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let symbolizer = if elf.exists() { Symbolizer::new(elf) } else { Symbolizer::none() };
    let echo = cfg.echo;
    let (tx, rx) = mpsc::channel::<String>();
    // Interactively, bytes go to the terminal as they arrive (a prompt has no newline, and
    // typed characters are echoed one by one); a backtrace line's symbol then follows on a line
    // of its own. Otherwise whole lines are echoed, cleaned and symbolized in place.
    let passthrough = echo && cfg.interactive;
    let progress = std::sync::Arc::new(std::sync::Mutex::new(Progress { running: None, since: Instant::now() }));
    let seen = std::sync::Arc::clone(&progress);
    let reader = std::thread::spawn(move || {
        let mut stdout_pipe = stdout;
        let mut chunk = [0u8; 4096];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = match stdout_pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if passthrough {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&chunk[..n]);
                let _ = out.flush();
            }
            pending.extend_from_slice(&chunk[..n]);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = pending.drain(..=end).collect();
                let clean = clean_line(&String::from_utf8_lossy(&raw));
                let line = symbolizer.annotate(&clean);
                seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).see(&line);
                if awaited.as_deref().is_some_and(|a| line.starts_with(a)) {
                    let _ = ready_tx.send(());
                }
                if echo {
                    let mut out = std::io::stdout().lock();
                    let _ = if passthrough {
                        match line.strip_prefix(clean.as_str()) {
                            Some(symbol) if !symbol.is_empty() => writeln!(out, "         {symbol}"),
                            _ => Ok(()),
                        }
                    } else {
                        writeln!(out, "{line}")
                    };
                    let _ = out.flush();
                }
                if tx.send(line).is_err() {
                    return;
                }
            }
        }
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let started = Instant::now();
    let stop_requested = || cfg.stop.as_ref().is_some_and(|stop| stop.load(Ordering::Relaxed));
    let mut stopped = false;
    let mut stalled = None;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for QEMU")? {
            break Some(status);
        }
        stopped = stop_requested();
        if let Some(watch) = &watch {
            stalled = progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner).expired(watch);
        }
        if stopped || stalled.is_some() || cfg.timeout.is_some_and(|t| started.elapsed() >= t) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = reader.join();
    drop(typist.and_then(|t| t.join().ok()));
    let transcript: String = rx.try_iter().map(|l| l + "\n").collect();
    let qemu_stderr = stderr_reader.join().unwrap_or_default();

    let timeout_secs = cfg.timeout.map_or(0, |t| t.as_secs());
    let code = status.map(|s| s.code().unwrap_or(-1));
    let outcome = if stopped {
        Outcome::Stopped
    } else {
        stalled.unwrap_or_else(|| judge(code, timeout_secs, &transcript, &qemu_stderr))
    };
    Ok(RunResult { outcome, transcript })
}

/// The command line the kernel gets: under icount, `vcpu_share=on` first; with a timeout (and no
/// debugger, which may hold the guest stopped), `watchdog=` a little before it, so that the
/// kernel reports a hang with every thread's traceback before QEMU is killed. Both come first, so
/// that the caller's own words, later on the line, win.
fn kernel_cmdline(cfg: &RunConfig) -> String {
    let mut words = Vec::new();
    if cfg.icount {
        words.push("vcpu_share=on".to_string());
    }
    if let Some(timeout) = cfg.timeout.filter(|_| !cfg.gdb) {
        words.push(format!("watchdog={}", kernel_watchdog(timeout.as_secs())));
    }
    words.push(cfg.cmdline.clone());
    words.join(" ").trim().to_string()
}

/// The kernel's watchdog for a run the runner stops after `timeout` seconds: 10% earlier, and at
/// least 10 s earlier (the kernel's clock starts after the firmware and the boot loader, and its
/// calibration against the PIT may be a little off on a busy host), but at least 1 s.
pub fn kernel_watchdog(timeout: u64) -> u64 {
    timeout.saturating_sub((timeout / 10).max(10)).max(1)
}

/// A temporary file, removed when dropped (so also when a run fails before QEMU starts). Its
/// name holds the process id and a per-process counter: no two runs share one.
struct TempFile(PathBuf);

impl TempFile {
    /// Writes `contents` to a fresh temporary file.
    fn new(what: &str, contents: &[u8]) -> Result<TempFile> {
        use std::sync::atomic::AtomicU64;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("prologue-{what}-{}-{n}", std::process::id()));
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        Ok(TempFile(path))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::clean_line;

    #[test]
    fn icount_runs_share_the_host_thread() {
        let cfg = super::RunConfig {
            icount: true,
            timeout: None,
            cmdline: "test=all vcpu_share=off".into(),
            ..Default::default()
        };
        assert_eq!(super::kernel_cmdline(&cfg), "vcpu_share=on test=all vcpu_share=off");
        let cfg = super::RunConfig { timeout: None, cmdline: "test=all".into(), ..Default::default() };
        assert_eq!(super::kernel_cmdline(&cfg), "test=all");
    }

    #[test]
    fn the_kernel_watchdog_fires_before_the_runner_s() {
        let cfg = super::RunConfig { cmdline: "test=all".into(), ..Default::default() };
        assert_eq!(super::kernel_cmdline(&cfg), "watchdog=270 test=all", "300 s by default");
        assert_eq!(super::kernel_watchdog(15), 5);
        assert_eq!(super::kernel_watchdog(60), 50);
        assert_eq!(super::kernel_watchdog(900), 810);
        assert_eq!(super::kernel_watchdog(3), 1);
        let cfg = super::RunConfig { gdb: true, ..Default::default() };
        assert_eq!(super::kernel_cmdline(&cfg), "", "no watchdog while a debugger may hold the guest");
    }

    #[test]
    fn the_watch_follows_test_lines() {
        use std::time::{Duration, Instant};
        let watch = super::Watch { test: Duration::from_secs(5), between: Duration::from_secs(9) };
        let mut p = super::Progress { running: None, since: Instant::now() };
        p.see("test a::b ... ");
        assert_eq!(p.running.as_deref(), Some("a::b"));
        let started = p.since;
        p.see("test a::b ... some output of the test");
        assert_eq!(p.since, started, "a test's repeated prefix keeps its start");
        p.see("test a::b ... ok");
        assert_eq!(p.running, None);
        p.since = Instant::now() - Duration::from_secs(10);
        assert_eq!(p.expired(&watch), Some(crate::Outcome::Stalled { seconds: 9, test: None }));
        p.see("test c ... ");
        p.since = Instant::now() - Duration::from_secs(6);
        assert_eq!(p.expired(&watch), Some(crate::Outcome::Stalled { seconds: 5, test: Some("c".into()) }));
        p.since = Instant::now();
        assert_eq!(p.expired(&watch), None);
    }

    #[test]
    fn strips_escape_codes() {
        assert_eq!(clean_line("\u{1b}[2J\u{1b}[01;01Hhello\r\n"), "hello");
        assert_eq!(clean_line("plain"), "plain");
    }
}

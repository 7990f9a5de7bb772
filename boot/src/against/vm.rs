//! Booting Linux with a comparison program as `/init`, in QEMU, and collecting what it prints.
//!
//! QEMU runs the kernel directly (`-kernel`, `-initrd`), on one CPU with 1 GiB, under
//! `-icount shift=0,sleep=off`: the guest clock advances by one nanosecond per executed
//! instruction, so the time-stamp counter counts instructions, and `sleep=off` makes idle time
//! jump ahead instead of following the host's clock. The kernel command line
//! `console=ttyS0 quiet panic=-1` puts the console on the serial port (QEMU's stdout), keeps the
//! boot messages out, and turns the panic that follows the end of `/init` into an immediate
//! reboot, which `-no-reboot` turns into QEMU's exit. A watchdog stops QEMU if that never
//! happens.
//!
//! Determinism: the run must be a pure function of the kernel and the archive, or the timer
//! interrupts would fall at other points of the timed loops from run to run (one tick costs a few
//! thousand instructions). The one input that came from the host was the real-time clock: Linux
//! reads the date at boot (it goes into its random-number generator, hence into address-space
//! randomization and the Go runtime's random seed), and with QEMU's default clock the RTC's
//! update cycle, which the kernel polls, follows the host's time. Without `-rtc`, two runs
//! differed by up to 3% (a benchmark of 2M instructions by one timer tick). With
//! `-rtc base=2020-01-01T00:00:00,clock=vm` -- a fixed date, advancing with the virtual clock --
//! runs are identical. (QEMU's default CPU model has no RDRAND, whose values would come from the
//! host.)

use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::qemu::clean_line;

/// The kernel command line.
const CMDLINE: &str = "console=ttyS0 quiet panic=-1";

/// The real-time clock: a fixed date, advancing with the virtual clock.
const RTC: &str = "base=2020-01-01T00:00:00,clock=vm";

/// What the kernel prints when `/init` has ended.
const PANIC_LINE: &str = "Kernel panic - not syncing: Attempted to kill init!";

/// What one boot produced.
#[derive(Debug)]
pub struct Run {
    /// The serial output, line by line, without carriage returns or control characters.
    pub transcript: String,
    /// QEMU's exit status (`None`: the watchdog stopped it).
    pub status: Option<ExitStatus>,
    /// What QEMU wrote on its stderr.
    pub qemu_stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Run {
    /// How the run ended, in words.
    pub fn ending(&self) -> String {
        let secs = self.elapsed.as_secs();
        let mut ending = match self.status {
            None => format!("stopped by the watchdog after {secs} s"),
            Some(status) => format!("QEMU exited with {status} after {secs} s"),
        };
        let stderr = self.qemu_stderr.trim();
        if !stderr.is_empty() {
            ending.push_str(&format!("; QEMU's stderr: {stderr}"));
        }
        ending
    }

    /// The last `n` lines of the output, indented, or a note that there was none. The kernel's
    /// backtrace after its panic line (which gives the exit code of `/init`) is left out: the
    /// program's own last words come before it.
    pub fn tail(&self, n: usize) -> String {
        let mut lines: Vec<&str> = self.transcript.lines().collect();
        if let Some(panic) = lines.iter().position(|line| line.contains(PANIC_LINE)) {
            lines.truncate(panic + 1);
        }
        if lines.is_empty() {
            return "(no output)".to_string();
        }
        let start = lines.len().saturating_sub(n);
        let shown: Vec<String> = lines[start..].iter().map(|line| format!("    {line}")).collect();
        format!("last {} lines of output:\n{}", shown.len(), shown.join("\n"))
    }
}

/// Boots `kernel` with `initrd` and waits until QEMU exits or `timeout` passes.
pub fn boot(kernel: &Path, initrd: &Path, timeout: Duration) -> Result<Run> {
    let qemu = crate::host::qemu()?;
    let mut cmd = Command::new(&qemu);
    cmd.arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", CMDLINE])
        .args(["-icount", "shift=0,sleep=off", "-rtc", RTC, "-smp", "1", "-m", "1024"])
        .args(["-serial", "stdio", "-display", "none", "-no-reboot", "-net", "none"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {}", qemu.display()))?;
    // Both pipes are read on threads, so neither can fill up while we wait for the exit.
    let mut stdout = child.stdout.take().context("QEMU's stdout is not a pipe")?;
    let mut stderr = child.stderr.take().context("QEMU's stderr is not a pipe")?;
    let stdout_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });

    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for QEMU")? {
            break Some(status);
        }
        if started.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = started.elapsed();
    let stdout = stdout_reader.join().unwrap_or_default();
    let stderr = stderr_reader.join().unwrap_or_default();
    let transcript: String = String::from_utf8_lossy(&stdout).lines().map(|line| clean_line(line) + "\n").collect();
    Ok(Run { transcript, status, qemu_stderr: String::from_utf8_lossy(&stderr).into_owned(), elapsed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_stops_at_the_panic_line() {
        let transcript = format!("a\nb\nc\n[    2.2] {PANIC_LINE} exitcode=0x00000100\n[    2.3] Call Trace:\n");
        let run = Run { transcript, status: None, qemu_stderr: String::new(), elapsed: Duration::from_secs(3) };
        assert_eq!(
            run.tail(2),
            format!("last 2 lines of output:\n    c\n    [    2.2] {PANIC_LINE} exitcode=0x00000100")
        );
        assert_eq!(run.ending(), "stopped by the watchdog after 3 s");
        let silent = Run { transcript: String::new(), ..run };
        assert_eq!(silent.tail(5), "(no output)");
    }
}

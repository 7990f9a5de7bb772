//! The farm's live progress line on stderr: runs done out of all, failures, runs running, runs
//! per minute, time elapsed.
//!
//! In a terminal the line is redrawn in place (`\r`, the line, then "erase to the end of the
//! line") whenever the farm calls `update`, about once a second; a notice (a run that failed, the
//! interrupt) is printed on a line of its own above it. Elsewhere (a pipe, a CI log), where `\r`
//! would pile up, a progress line is printed at most every `LOG_INTERVAL`, and once at the end.
//!
//! Invariant: in a terminal, the cursor is at the end of the drawn line while `drawn` is set,
//! so whatever is printed next must first return to the start of the line and erase it.

use std::io::Write;
use std::time::{Duration, Instant};

/// How often a progress line is printed when stderr is not a terminal.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Erases from the cursor to the end of the line (ANSI "erase in line").
const ERASE_LINE: &str = "\x1b[K";

/// Where the farm is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Runs that ended with a verdict.
    pub done: u64,
    /// Runs the farm was asked for.
    pub total: u64,
    pub failed: u64,
    /// Runs whose QEMU is running now.
    pub running: u64,
}

/// The progress line (no newline): `stress farm: 5/8 done, 1 failed, 2 running, 12.5 runs/min, 0:24`.
pub fn line(counts: &Counts, elapsed: Duration) -> String {
    let Counts { done, total, failed, running } = counts;
    let minutes = elapsed.as_secs_f64() / 60.0;
    let rate = if minutes > 0.0 { *done as f64 / minutes } else { 0.0 };
    format!(
        "stress farm: {done}/{total} done, {failed} failed, {running} running, {rate:.1} runs/min, {}",
        clock(elapsed)
    )
}

/// Elapsed time as `m:ss`, or `h:mm:ss` from an hour on.
pub fn clock(elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    let (hours, minutes, seconds) = (secs / 3600, secs / 60 % 60, secs % 60);
    if hours > 0 { format!("{hours}:{minutes:02}:{seconds:02}") } else { format!("{minutes}:{seconds:02}") }
}

/// The progress display, writing to `out` (stderr, or a buffer in tests).
pub struct Progress<W: Write> {
    out: W,
    terminal: bool,
    started: Instant,
    /// When a progress line was last printed (not a terminal).
    last_logged: Instant,
    /// A progress line is on the screen, the cursor at its end (terminal).
    drawn: bool,
}

impl<W: Write> Progress<W> {
    /// A display for a farm that started at `started`; `terminal`: `out` is a terminal.
    pub fn new(out: W, terminal: bool, started: Instant) -> Progress<W> {
        Progress { out, terminal, started, last_logged: started, drawn: false }
    }

    /// Shows `counts` as of `now`: redrawn in a terminal, otherwise printed if `LOG_INTERVAL`
    /// has passed since the last line.
    pub fn update(&mut self, counts: &Counts, now: Instant) {
        if self.terminal {
            self.redraw(counts, now);
        } else if now.duration_since(self.last_logged) >= LOG_INTERVAL {
            self.log(counts, now);
        }
    }

    /// Prints `text` on a line of its own (above the progress line, in a terminal).
    pub fn notice(&mut self, text: &str, counts: &Counts, now: Instant) {
        self.erase();
        let _ = writeln!(self.out, "{text}");
        if self.terminal {
            self.redraw(counts, now);
        }
        let _ = self.out.flush();
    }

    /// The last progress line, which stays (ends with a newline).
    pub fn finish(&mut self, counts: &Counts, now: Instant) {
        self.erase();
        self.log(counts, now);
    }

    fn redraw(&mut self, counts: &Counts, now: Instant) {
        let text = line(counts, now.duration_since(self.started));
        let _ = write!(self.out, "\r{text}{ERASE_LINE}");
        let _ = self.out.flush();
        self.drawn = true;
    }

    fn log(&mut self, counts: &Counts, now: Instant) {
        let _ = writeln!(self.out, "{}", line(counts, now.duration_since(self.started)));
        let _ = self.out.flush();
        self.last_logged = now;
    }

    /// Takes the drawn line off the screen, leaving the cursor at the start of its line.
    fn erase(&mut self) {
        if self.drawn {
            let _ = write!(self.out, "\r{ERASE_LINE}");
            self.drawn = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COUNTS: Counts = Counts { done: 5, total: 8, failed: 1, running: 2 };

    #[test]
    fn the_line_says_where_the_farm_is() {
        assert_eq!(
            line(&COUNTS, Duration::from_secs(24)),
            "stress farm: 5/8 done, 1 failed, 2 running, 12.5 runs/min, 0:24"
        );
        assert_eq!(
            line(&Counts { total: 3, ..Counts::default() }, Duration::ZERO),
            "stress farm: 0/3 done, 0 failed, 0 running, 0.0 runs/min, 0:00"
        );
    }

    #[test]
    fn clock_reads_like_a_clock() {
        assert_eq!(clock(Duration::from_millis(65_900)), "1:05");
        assert_eq!(clock(Duration::from_secs(3 * 3600 + 61)), "3:01:01");
    }

    fn output(terminal: bool, steps: impl FnOnce(&mut Progress<&mut Vec<u8>>, Instant)) -> String {
        let mut buffer = Vec::new();
        let start = Instant::now();
        steps(&mut Progress::new(&mut buffer, terminal, start), start);
        String::from_utf8(buffer).unwrap()
    }

    #[test]
    fn a_terminal_redraws_in_place() {
        let text = output(true, |p, start| {
            p.update(&COUNTS, start + Duration::from_secs(1));
            p.notice("seed 3 failed", &COUNTS, start + Duration::from_secs(2));
            p.finish(&COUNTS, start + Duration::from_secs(3));
        });
        let expected = [
            "\rstress farm: 5/8 done, 1 failed, 2 running, 300.0 runs/min, 0:01\x1b[K",
            "\r\x1b[Kseed 3 failed\n",
            "\rstress farm: 5/8 done, 1 failed, 2 running, 150.0 runs/min, 0:02\x1b[K",
            "\r\x1b[Kstress farm: 5/8 done, 1 failed, 2 running, 100.0 runs/min, 0:03\n",
        ];
        assert_eq!(text, expected.concat());
    }

    #[test]
    fn a_log_gets_a_line_every_ten_seconds_and_at_the_end() {
        let text = output(false, |p, start| {
            for second in 1..=25 {
                p.update(&COUNTS, start + Duration::from_secs(second));
            }
            p.notice("seed 3 failed", &COUNTS, start + Duration::from_secs(26));
            p.finish(&COUNTS, start + Duration::from_secs(27));
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].ends_with(" 0:10") && lines[1].ends_with(" 0:20"), "{text}");
        assert_eq!(lines[2], "seed 3 failed");
        assert!(lines[3].ends_with(" 0:27"), "{text}");
        assert!(!text.contains('\r') && !text.contains('\x1b'), "{text:?}");
    }
}

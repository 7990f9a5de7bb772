//! A small interactive shell on the serial console, for looking inside the running kernel.
//!
//! `cargo run` in a terminal passes `shell=on`: after the demo, the first thread reads command
//! lines typed on the serial line. The shell is an ordinary thread: while it waits for input it
//! sleeps (polling the UART every few milliseconds), so other threads keep running.
//!
//! Commands: `help`, `ps` (every thread: id, name, state, what it waits on, stack), `bt` (every
//! thread's traceback, `sched::traceback`), `stats`,
//! `mem`, `sieve N` (the prime sieve again, with N threads), `spin N` (N threads that spin for
//! a second: watch preemption in `stats`), `exit`.

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use core::time::Duration;

use crate::records::g::GState;

/// Reads one line from the serial console, echoing it; handles backspace.
fn read_line() -> String {
    let mut line = String::new();
    loop {
        let Some(byte) = crate::console::try_read_byte() else {
            crate::sched::sleep(Duration::from_millis(5));
            continue;
        };
        match byte {
            b'\r' | b'\n' => {
                crate::println!();
                return line;
            }
            0x08 | 0x7f => {
                if line.pop().is_some() {
                    crate::print!("\x08 \x08");
                }
            }
            b if b.is_ascii_graphic() || b == b' ' => {
                line.push(b as char);
                crate::print!("{}", b as char);
            }
            _ => {}
        }
    }
}

fn ps() {
    crate::println!(
        "{:>7}  {:<24} {:<9} {:<13} {:>7} {:>7} {:>8}",
        "id",
        "name",
        "state",
        "waiting on",
        "mapped",
        "peak",
        "growths"
    );
    crate::sched::thread::for_each_thread(|g| {
        let state = match g.state() {
            GState::Runnable => "runnable",
            GState::Running => "running",
            GState::Waiting => "waiting",
            GState::Dead => "dead",
            GState::Idle => "idle",
        };
        let (lo, hi) = g.stack_bounds();
        crate::println!(
            "{:>7}  {:<24} {:<9} {:<13} {:>6}K {:>6}K {:>8}",
            g.id.get(),
            g.name().as_str(),
            state,
            if g.state() == GState::Waiting { g.wait_reason.get().as_str() } else { "-" },
            (hi - lo) / 1024,
            g.stack_peak.load(Ordering::Relaxed).div_ceil(1024),
            g.stack_growths.load(Ordering::Relaxed)
        );
    });
}

fn mem() {
    let frames = crate::mm::frame::stats();
    let heap = crate::mm::heap::stats();
    crate::println!("frames: {} used of {} ({} MiB free)", frames.used(), frames.total, (frames.free * 4096) >> 20);
    crate::println!(
        "heap: {} bytes used, {} mapped, peak {}, limit {}; {} allocations, {} frees",
        heap.used,
        heap.mapped,
        heap.peak,
        heap.max,
        heap.allocs,
        heap.frees
    );
    crate::println!(
        "thread stacks: {} live, {} pooled, {} pages mapped, {} growths",
        crate::mm::stack::COUNTERS.live.load(Ordering::Relaxed),
        crate::mm::stack::pooled(),
        crate::mm::stack::COUNTERS.pages_mapped.load(Ordering::Relaxed),
        crate::mm::stack::COUNTERS.growths.load(Ordering::Relaxed)
    );
}

fn spin(n: usize) {
    let threads: Vec<_> = (0..n)
        .map(|_| {
            crate::sched::spawn("spinner", || {
                let end = crate::time::now() + Duration::from_secs(1);
                let mut laps = 0u64;
                while crate::time::now() < end {
                    laps += 1;
                }
                laps
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        match t.join() {
            Ok(laps) => crate::println!("spinner {i}: {laps} laps"),
            Err(death) => crate::println!("spinner {i}: {death}"),
        }
    }
}

/// Reads and runs commands until `exit`; then leaves QEMU.
pub fn run() -> ! {
    crate::println!("shell: type `help` for commands, `exit` to leave");
    loop {
        crate::print!("prologue> ");
        let line = read_line();
        let mut words = line.split_whitespace();
        let number = |w: Option<&str>, default: usize, max: usize| {
            w.map_or(Ok(default), |w| w.parse::<usize>().map_err(|_| ())).ok().filter(|n| (1..=max).contains(n))
        };
        match words.next() {
            None => {}
            Some("help") => crate::println!("commands: ps, bt, stats, mem, sieve [N], spin [N], exit"),
            Some("ps") => ps(),
            Some("bt") => crate::sched::traceback::print_all(),
            Some("stats") => crate::stats::print(),
            Some("mem") => mem(),
            Some("sieve") => match number(words.next(), 100, 5000) {
                Some(n) => {
                    let primes = crate::demo::sieve(n);
                    crate::println!("the first {n} primes end with {:?}", &primes[n.saturating_sub(5)..]);
                }
                None => crate::println!("usage: sieve N (1..=5000)"),
            },
            Some("spin") => match number(words.next(), 4, 64) {
                Some(n) => spin(n),
                None => crate::println!("usage: spin N (1..=64)"),
            },
            Some("exit") => crate::console::exit(crate::arch::qemu::ExitCode::Success),
            Some(other) => crate::println!("unknown command '{other}' (try help)"),
        }
    }
}

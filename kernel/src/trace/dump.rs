//! Sending the trace out of the machine: the rings of every CPU, with a header, written to QEMU's
//! debug console (`arch::debugcon`), which the runner's `trace` command has QEMU write to a file.
//! Called once, at the end of the run (`console::exit`: after success, a failed test, a failed
//! stress run, or a fatal report), so a crash comes with its last events.
//!
//! The format (little-endian; `boot/src/trace/decode.rs` reads it):
//!
//! ```text
//! "PTRACE01"  u32 version = 1  u32 cpus  u64 tsc_hz  u32 event size = 32  u32 counters = 8
//! u64 × 8     the kernel's own counters, summed over CPUs, when the trace stopped: spawns,
//!             switches, cooperative and asynchronous preemptions, deferred requests, steals,
//!             stack growths, overflows (the runner checks the events against them)
//! per CPU:    u32 cpu  u32 0  u64 events written  u64 events kept  then the kept events, oldest first
//! "PTRACEND"
//! ```
//!
//! The counters are read after the trace stopped and the other CPUs had a moment to finish an
//! event they were recording: a CPU still running may count one more switch, preemption or steal
//! than it recorded (the runner allows that many per other CPU).

use core::sync::atomic::Ordering;

use super::ring::{Event, RINGS, on, stop};
use crate::arch::debugcon::write;

/// What `dump` sent: events kept in the rings, events overwritten before, CPUs.
pub struct Dumped {
    pub kept: u64,
    pub overwritten: u64,
    pub cpus: usize,
}

/// Stops the trace and writes it to the debug console, if it was on; says how much it sent (the
/// console prints it: the trace sits below the console and does not print).
pub fn dump() -> Option<Dumped> {
    if !on() {
        return None;
    }
    stop();
    // Let a CPU that was half-way through recording an event finish it (a few hundred
    // instructions; 20 µs is far more).
    let hz = crate::time::tsc_hz();
    let stopped = crate::arch::cpu::rdtsc();
    while crate::arch::cpu::rdtsc().wrapping_sub(stopped) < hz / 50_000 {
        crate::arch::cpu::relax();
    }
    let cpus = crate::records::percpu::CPUS_ONLINE.load(Ordering::Relaxed) as usize;
    let t = crate::records::percpu::totals();
    write(b"PTRACE01");
    write(&1u32.to_le_bytes());
    write(&(cpus as u32).to_le_bytes());
    write(&hz.to_le_bytes());
    write(&(core::mem::size_of::<Event>() as u32).to_le_bytes());
    let counters = [
        t.spawns,
        t.switches,
        t.preempt_coop,
        t.preempt_async,
        t.preempt_deferred,
        t.steals,
        t.stack_growths,
        t.overflows,
    ];
    write(&(counters.len() as u32).to_le_bytes());
    for c in counters {
        write(&c.to_le_bytes());
    }
    let (mut written, mut kept) = (0u64, 0u64);
    for (cpu, ring) in RINGS.iter().enumerate().take(cpus) {
        let runs = ring.kept();
        let n = (runs[0].len() + runs[1].len()) as u64;
        write(&(cpu as u32).to_le_bytes());
        write(&0u32.to_le_bytes());
        write(&ring.written().to_le_bytes());
        write(&n.to_le_bytes());
        for run in runs {
            // SAFETY: `Event` is `repr(C)`, 32 bytes with no implicit padding (the `_pad` field
            // fills the gap), so every byte of the run is initialised.
            let bytes = unsafe { core::slice::from_raw_parts(run.as_ptr().cast::<u8>(), core::mem::size_of_val(run)) };
            write(bytes);
        }
        written += ring.written();
        kept += n;
    }
    write(b"PTRACEND");
    Some(Dumped { kept, overwritten: written - kept, cpus })
}

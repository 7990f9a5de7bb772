//! The schedule digest: a hash of the sequence of switches each CPU made, (thread, why) for
//! every thread switched in and out (recorded here, once, for the digest and the trace), printed at the end of every run. Two runs with the same
//! digest ran the same schedule (up to a hash collision); under `--icount` at `--smp 1` the
//! same image, command line and seed must give the same digest, which the replay tests check.
//!
//! Each CPU hashes its own sequence (no shared cache line, no lock); the printed digest combines
//! the CPUs' digests in CPU order. So at `--smp 2` and more it says "each CPU ran the same
//! sequence", not how the CPUs' sequences interleaved in time.
//!
//! Invariant: `note` runs on the CPU whose digest it updates, on g0 or with interrupts off.

use crate::records::g::G;
use crate::records::percpu::PerCpu;
use crate::trace::Stop;

/// One step of the hash: FNV-1a's multiply over a 64-bit word, with a final avalanche.
#[inline(always)]
pub fn mix(hash: u64, word: u64) -> u64 {
    let h = (hash ^ word).wrapping_mul(0x0000_0100_0000_01b3);
    h ^ (h >> 29)
}

/// Mixes one switch event of `cpu` into its digest: `g` with why it stopped, 0 if it started.
#[inline(always)]
fn note(cpu: &PerCpu, g: &G, why: u64) {
    let event = (g.id.get() << 8) | why;
    cpu.explore.digest.set(mix(cpu.explore.digest.get(), event));
    cpu.explore.events.set(cpu.explore.events.get() + 1);
}

/// `g` stops running on `cpu`, for `why`: the one record of a switch out, for the digest and,
/// when it is on, the trace.
#[inline(always)]
pub fn stopped(cpu: &PerCpu, g: &G, why: Stop) {
    note(cpu, g, why as u64);
    crate::trace::stopped(g, why);
}

/// `g` starts running on `cpu` (`inherit`: in the time slice of the thread before it).
#[inline(always)]
pub fn started(cpu: &PerCpu, g: &G, inherit: bool) {
    note(cpu, g, 0);
    crate::trace::started(g, inherit);
}

/// The digest of the whole run so far, and the number of events in it: the CPUs' digests
/// combined in CPU order (read at the end of a run, when the numbers no longer change).
pub fn combined(online: usize) -> (u64, u64) {
    let mut hash = 0xcbf2_9ce4_8422_2325;
    let mut events = 0;
    for id in 0..online {
        let cpu = crate::records::percpu::cpu(id);
        hash = mix(mix(hash, id as u64), cpu.explore.digest.get());
        events += cpu.explore.events.get();
    }
    (hash, events)
}

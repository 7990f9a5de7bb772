//! How a benchmark measures: a `Figure` (a raw count, what it is divided by, and the unit), and
//! `time_loop`, which times `n` repetitions of an operation between two TSC reads.

use crate::arch::cpu::rdtsc;

/// A measured figure: `total` `unit`s over `ops` `things` (singular `thing`).
pub struct Figure {
    pub total: u64,
    pub ops: u64,
    pub unit: &'static str,
    pub things: &'static str,
    pub thing: &'static str,
}

/// `total` instructions over `ops` operations named `things` / `thing`.
pub fn instructions(total: u64, ops: u64, things: &'static str, thing: &'static str) -> Figure {
    Figure { total, ops, unit: "instructions", things, thing }
}

/// Runs `op(i)` for `i` in `0..n` between two TSC reads: instructions per `thing` (`things`
/// in the plural).
pub fn time_loop(n: u64, things: &'static str, thing: &'static str, mut op: impl FnMut(u64)) -> Figure {
    let start = rdtsc();
    for i in 0..n {
        op(i);
    }
    instructions(rdtsc() - start, n, things, thing)
}

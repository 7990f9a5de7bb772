//! wyrand, the small random-number generator behind every random choice in the kernel: the
//! order in which `select!` polls its cases, the CPU that stealing visits first (one state per
//! CPU, `PerCpu::fastrand`), and the torture test's choices (one state per thread).
//!
//! One 64-bit add and one 128-bit multiply per number; statistically good enough for choosing,
//! not for anything secret.

/// Advances `state` and returns the next number of its sequence.
#[inline]
pub fn wyrand(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0xa076_1d64_78bd_642f);
    let t = u128::from(*state).wrapping_mul(u128::from(*state ^ 0xe703_7ed1_a0b4_28db));
    ((t >> 64) as u64) ^ (t as u64)
}

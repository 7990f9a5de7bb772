//! The schedule explorer's random numbers: one sequence per CPU, seeded from `seed=` and the
//! CPU number, so that every draw of a run is fixed by its seed.
//!
//! Invariant: a CPU's state is touched only by that CPU (on g0 or with interrupts off). A
//! `set_seed` starts a new epoch; each CPU re-seeds at its first draw in the new epoch, so a
//! test can re-seed the whole explorer between trials without reaching into other CPUs.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::records::percpu::PerCpu;

static SEED: AtomicU64 = AtomicU64::new(1);
/// Bumped by `set_seed`: a CPU whose state was seeded in an older epoch re-seeds.
static EPOCH: AtomicU64 = AtomicU64::new(1);

/// Seeds every CPU's sequence from `seed` (each at its next draw).
pub fn set_seed(seed: u64) {
    SEED.store(seed, Ordering::Relaxed);
    EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// The seed in force.
pub fn seed() -> u64 {
    SEED.load(Ordering::Relaxed)
}

/// The next number of `cpu`'s sequence.
pub fn draw(cpu: &PerCpu) -> u64 {
    let epoch = EPOCH.load(Ordering::Relaxed);
    if cpu.explore.epoch.get() != epoch {
        let mut state = SEED.load(Ordering::Relaxed) ^ (u64::from(cpu.id) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        crate::rand::wyrand(&mut state);
        cpu.explore.rand.set(state);
        cpu.explore.epoch.set(epoch);
    }
    let mut state = cpu.explore.rand.get();
    let n = crate::rand::wyrand(&mut state);
    cpu.explore.rand.set(state);
    n
}

/// A number in `1..=2n-1` (mean `n`), for the `async:N` delays.
pub fn uniform_around(cpu: &PerCpu, n: u64) -> u64 {
    1 + draw(cpu) % (2 * n - 1)
}

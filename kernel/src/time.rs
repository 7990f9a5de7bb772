//! Kernel time: a monotonic clock from the time-stamp counter.
//!
//! The TSC frequency is measured once at boot against the PIT (`arch::apic::calibrate`). Under
//! QEMU with `-icount shift=0` the TSC counts executed instructions, which makes benchmarks
//! deterministic; the clock then runs in "virtual" nanoseconds, which is what the guest's
//! timers use too.

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use crate::arch::cpu::rdtsc;

static TSC_HZ: AtomicU64 = AtomicU64::new(1_000_000_000);
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);

/// Records the measured TSC frequency; time starts now.
pub fn init(tsc_hz: u64) {
    TSC_HZ.store(tsc_hz.max(1), Ordering::Relaxed);
    TSC_AT_BOOT.store(rdtsc(), Ordering::Relaxed);
}

/// The TSC frequency in Hz.
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// The TSC value at time `when` (since boot): timers keep their deadlines in TSC units, so
/// that checking for a due timer is one `rdtsc` and one comparison.
pub fn tsc_at(when: Duration) -> u64 {
    let hz = TSC_HZ.load(Ordering::Relaxed);
    let ticks = (when.as_nanos() * u128::from(hz) / 1_000_000_000).min(u128::from(u64::MAX / 2)) as u64;
    TSC_AT_BOOT.load(Ordering::Relaxed).saturating_add(ticks)
}

/// Time since boot.
pub fn now() -> Duration {
    let ticks = rdtsc().wrapping_sub(TSC_AT_BOOT.load(Ordering::Relaxed));
    let hz = TSC_HZ.load(Ordering::Relaxed);
    let nanos = (u128::from(ticks) * 1_000_000_000 / u128::from(hz)) as u64;
    Duration::from_nanos(nanos)
}

//! Benchmarks of the scheduler trace: what one event costs at a call site when the trace is off
//! (the inlined load and branch) and when it is on (the out-of-line recording into this CPU's
//! ring: interrupts off, the TSC read, a 32-byte store).

use core::hint::black_box;
use core::sync::atomic::Ordering;

use super::measure::{Figure, time_loop};

/// Call sites timed per benchmark.
const EVENTS: u64 = 100_000;

pub(super) fn trace_event_off() -> Figure {
    assert!(!crate::trace::on(), "the trace is on: this benchmark measures it off");
    time_loop(EVENTS, "events", "event", |i| {
        black_box(i);
        crate::trace::idle();
    })
}

pub(super) fn trace_event_on() -> Figure {
    let cpus = crate::records::percpu::CPUS_ONLINE.load(Ordering::Relaxed) as usize;
    crate::trace::start(64, cpus);
    let figure = time_loop(EVENTS, "events", "event", |i| {
        black_box(i);
        crate::trace::idle();
    });
    crate::trace::stop();
    figure
}

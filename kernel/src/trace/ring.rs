//! The per-CPU rings of the trace: each CPU writes only its own ring, so recording takes no lock
//! and shares no cache line; when a ring is full the oldest events are overwritten (a flight
//! recorder: a crash comes with its last events), and `written` still counts them all.
//!
//! Also here, because recording needs them: the event record (`Event`) and the switch (`ON`).
//!
//! Invariants: a ring is allocated once (`start`, before the first thread runs) and never freed;
//! `written` only grows, and slot `written % capacity` is the next to be written. Recording runs
//! with interrupts disabled, so nothing else on this CPU records meanwhile (NMIs never record):
//! the slot and the count are written by one party at a time, without atomic read-modify-write.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crate::arch::MAX_CPUS;

/// Is the trace recording? Written by `start` (before the first thread) and `dump` (at the end).
static ON: AtomicBool = AtomicBool::new(false);

/// Is the trace recording now?
#[inline(always)]
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// One event, as it sits in a ring and leaves the machine (little-endian, 32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Event {
    /// Time-stamp counter when it happened.
    pub tsc: u64,
    /// The thread it is about (its id; 0: none).
    pub g: u32,
    /// A `Kind`.
    pub kind: u8,
    /// Depends on the kind.
    pub detail: u8,
    pub _pad: u16,
    pub arg: u64,
    pub arg2: u64,
}

const _: () = assert!(core::mem::size_of::<Event>() == 32);

/// One CPU's ring.
pub(super) struct Ring {
    /// `capacity` events, or null before `start`.
    events: AtomicPtr<Event>,
    /// A power of two.
    capacity: AtomicUsize,
    /// Events ever recorded here (the ones overwritten included).
    written: AtomicU64,
}

impl Ring {
    const fn new() -> Ring {
        Ring {
            events: AtomicPtr::new(core::ptr::null_mut()),
            capacity: AtomicUsize::new(0),
            written: AtomicU64::new(0),
        }
    }

    /// Events ever recorded in this ring.
    pub(super) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// The events still in the ring, oldest first, as two runs of slots (the ring's end, then
    /// its start). Only while nothing records here: after the trace was stopped.
    pub(super) fn kept(&self) -> [&[Event]; 2] {
        let events = self.events.load(Ordering::Acquire);
        if events.is_null() {
            return [&[], &[]];
        }
        let capacity = self.capacity.load(Ordering::Relaxed);
        let written = self.written();
        // SAFETY: the ring is an allocation of `capacity` initialised events made by `start` and
        // never freed; nobody records meanwhile (the caller's promise).
        let all = unsafe { core::slice::from_raw_parts(events, capacity) };
        if written <= capacity as u64 {
            return [&all[..written as usize], &[]];
        }
        let next = (written % capacity as u64) as usize;
        [&all[next..], &all[..next]]
    }
}

/// The rings, by CPU id.
pub(super) static RINGS: [Ring; MAX_CPUS] = [const { Ring::new() }; MAX_CPUS];

/// Allocates a ring of `kib` KiB (rounded down to a power of two of events) for each of the
/// first `cpus` CPUs and turns the trace on. Called once, by CPU 0 before the first thread runs.
pub fn start(kib: usize, cpus: usize) {
    let wanted = (kib * 1024 / core::mem::size_of::<Event>()).max(2);
    let capacity = 1usize << (usize::BITS - 1 - wanted.leading_zeros());
    for ring in RINGS.iter().take(cpus) {
        if !ring.events.load(Ordering::Relaxed).is_null() {
            continue; // started before (the benchmark of the trace starts it itself)
        }
        let mut events: Vec<Event> = Vec::with_capacity(capacity);
        events.resize(capacity, Event::default());
        ring.capacity.store(capacity, Ordering::Relaxed);
        ring.events.store(events.leak().as_mut_ptr(), Ordering::Release);
    }
    ON.store(true, Ordering::Release);
}

/// Stops recording (the rings keep what they hold).
pub fn stop() {
    ON.store(false, Ordering::Release);
}

/// Stamps `event` and writes it into this CPU's ring.
#[inline(always)]
pub(super) fn record(mut event: Event) {
    let _irq = crate::arch::cpu::IrqGuard::new();
    let ring = &RINGS[crate::records::percpu::this_cpu_unchecked().id as usize];
    let events = ring.events.load(Ordering::Acquire);
    if events.is_null() {
        return; // a CPU that came online after `start` (none does today)
    }
    event.tsc = crate::arch::cpu::rdtsc();
    let i = ring.written.load(Ordering::Relaxed);
    let slot = (i as usize) & (ring.capacity.load(Ordering::Relaxed) - 1);
    // SAFETY: `slot` < capacity of this ring's allocation; only this CPU writes it, with
    // interrupts disabled (module invariant).
    unsafe { events.add(slot).write(event) };
    ring.written.store(i + 1, Ordering::Release);
}

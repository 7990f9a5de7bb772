//! The scheduler trace: what every CPU did, event by event, stamped with the time-stamp counter
//! (Go's `runtime/trace`, much reduced). `trace=on` turns it on, `trace_kib=` sizes each CPU's
//! ring; the runner's `trace` command collects it and draws it (docs/tracing.md).
//!
//! What is recorded (`Kind`): a thread created (by whom, and its name), started on a CPU,
//! stopped (why: a yield, a park with its wait reason, a cooperative or asynchronous preemption,
//! its exit), readied (by whom), stolen (from which CPU), an asynchronous preemption injected, a
//! preemption request deferred, a stack grown, a stack overflow, a death, a timer fired, a CPU
//! gone idle. Each event is one fixed-size record (`Event`, 32 bytes) in the ring of the CPU
//! where it happened (`ring`).
//!
//! Cost when off: every emitter below is inlined into its call site as one load of `ON` and one
//! branch, predicted not taken; the recording itself is a cold function out of line. `bench`
//! measures both (`trace_event_off`, `trace_event_on`).
//!
//! Layering: the trace sits on the records floor, beside the console, so that every floor above
//! may emit (the scheduler, memory, sync) and the fatal report and the console's final exit may
//! dump it (`dump`). It knows `G` records, and nothing of the scheduler's code.

mod dump;
mod ring;

pub use dump::dump;
use ring::Event;
pub use ring::{on, start, stop};

use crate::records::g::G;

/// What an event records. The numbers are the trace format (`boot/src/trace/decode.rs` reads them).
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// `g` was created; `arg` = the creating thread's id (0: not a thread).
    Create = 1,
    /// 16 bytes of `g`'s name in `arg`, `arg2`; `detail` = which 16 (0 or 1).
    Name = 2,
    /// `g` started running on this CPU; `detail` = 1 if it kept the time slice (from `runnext`).
    Start = 3,
    /// `g` stopped running; `detail` = a `Stop`, `arg` = the wait reason of a park.
    Stop = 4,
    /// `g` was made runnable; `arg` = the readying thread's id (0: the scheduler, a timer).
    Ready = 5,
    /// This CPU stole `g`; `arg` = the CPU it was taken from.
    Steal = 6,
    /// The timer injected an asynchronous preemption into `g`.
    AsyncInject = 7,
    /// A preemption request to `g` was deferred; `detail` = 0 at a prologue, 1 at the timer.
    Deferred = 8,
    /// `g`'s stack grew; `arg` = its mapped size now, in bytes.
    StackGrow = 9,
    /// `g` overflowed its stack; `arg` = the stack pointer.
    Overflow = 10,
    /// A timer fired on this CPU; `g` = the thread it woke (0: a callback).
    TimerFired = 11,
    /// This CPU found nothing to run and halts.
    Idle = 12,
    /// `g` died; `detail` = 0 panic, 1 CPU exception, 2 stack overflow.
    Death = 13,
}

/// Why a thread stopped running (`Kind::Stop`'s `detail`).
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stop {
    Yield = 1,
    Park = 2,
    PreemptCoop = 3,
    PreemptAsync = 4,
    Exit = 5,
    /// At a forced preemption point of the `always-preempt` build (`sched::explore`).
    PreemptForced = 6,
}

/// Records an event (out of line: only reached when the trace is on).
#[cold]
#[inline(never)]
fn emit(kind: Kind, detail: u8, g: u64, arg: u64, arg2: u64) {
    ring::record(Event { tsc: 0, g: g as u32, kind: kind as u8, detail, _pad: 0, arg, arg2 });
}

/// The id of `g` if it is a thread, else 0 (a scheduler, an interrupt handler).
fn thread_id(g: &G) -> u64 {
    if g.is_thread() { g.id.get() } else { 0 }
}

/// `g` was created by the current context.
#[inline(always)]
pub fn created(g: &G) {
    if on() {
        created_slow(g);
    }
}

#[cold]
#[inline(never)]
fn created_slow(g: &G) {
    emit(Kind::Create, 0, g.id.get(), thread_id(crate::records::percpu::current()), 0);
    let name = g.name();
    let bytes = name.as_str().as_bytes();
    for (part, chunk) in bytes.chunks(16).enumerate() {
        let mut raw = [0u8; 16];
        raw[..chunk.len()].copy_from_slice(chunk);
        let lo = u64::from_le_bytes(raw[..8].try_into().unwrap_or_default());
        let hi = u64::from_le_bytes(raw[8..].try_into().unwrap_or_default());
        emit(Kind::Name, part as u8, g.id.get(), lo, hi);
    }
}

/// `g` starts running on this CPU (`inherit`: in the time slice of the thread before it).
#[inline(always)]
pub fn started(g: &G, inherit: bool) {
    if on() {
        emit(Kind::Start, inherit as u8, g.id.get(), 0, 0);
    }
}

/// `g` stopped running, for `why` (a park's wait reason is read from `g`).
#[inline(always)]
pub fn stopped(g: &G, why: Stop) {
    if on() {
        emit(Kind::Stop, why as u8, g.id.get(), g.wait_reason.get() as u64, 0);
    }
}

/// `g` was made runnable by the current context.
#[inline(always)]
pub fn readied(g: &G) {
    if on() {
        emit(Kind::Ready, 0, g.id.get(), thread_id(crate::records::percpu::current()), 0);
    }
}

/// This CPU stole `g` from CPU `victim`.
#[inline(always)]
pub fn stolen(g: &G, victim: u32) {
    if on() {
        emit(Kind::Steal, 0, g.id.get(), victim as u64, 0);
    }
}

/// The timer injected an asynchronous preemption into `g`.
#[inline(always)]
pub fn async_injected(g: &G) {
    if on() {
        emit(Kind::AsyncInject, 0, g.id.get(), 0, 0);
    }
}

/// A preemption request to `g` was deferred, at a prologue (`at_timer` false) or at the timer.
#[inline(always)]
pub fn deferred(g: &G, at_timer: bool) {
    if on() {
        emit(Kind::Deferred, at_timer as u8, g.id.get(), 0, 0);
    }
}

/// `g`'s stack grew to `mapped` bytes.
#[inline(always)]
pub fn stack_grown(g: &G, mapped: usize) {
    if on() {
        emit(Kind::StackGrow, 0, g.id.get(), mapped as u64, 0);
    }
}

/// `g` overflowed its stack at stack pointer `rsp`.
#[inline(always)]
pub fn overflowed(g: &G, rsp: usize) {
    if on() {
        emit(Kind::Overflow, 0, g.id.get(), rsp as u64, 0);
    }
}

/// A timer fired on this CPU, waking `woken` (None: it called a function).
#[inline(always)]
pub fn timer_fired(woken: Option<&G>) {
    if on() {
        emit(Kind::TimerFired, woken.is_none() as u8, woken.map_or(0, |g| g.id.get()), 0, 0);
    }
}

/// This CPU halts for lack of work.
#[inline(always)]
pub fn idle() {
    if on() {
        emit(Kind::Idle, 0, 0, 0, 0);
    }
}

/// How a thread died (`Kind::Death`'s `detail`).
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DeathKind {
    Panic = 0,
    Fault = 1,
    StackOverflow = 2,
}

/// `g` died of `how`.
#[inline(always)]
pub fn died(g: &G, how: DeathKind) {
    if on() {
        emit(Kind::Death, how as u8, g.id.get(), 0, 0);
    }
}

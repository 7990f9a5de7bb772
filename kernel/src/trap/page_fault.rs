//! The page-fault handler: stack growth, guard pages, and everything else.
//!
//! A page fault in a stack region is one of three things:
//! - in the running thread's own reservation, below its mapped part, a read or write of a page
//!   that is not present: a frame larger than the guard zone skipped the prologue check. The
//!   stack grows, exactly as the slow path would grow it, and the faulting instruction is retried.
//!   Any other fault there (an instruction fetch from the stack, which is never executable; a
//!   protection fault on a mapped page) is a bug of the thread, which dies of it: growing would
//!   change nothing, and retrying would fault again for ever.
//! - in the running thread's own guard page, or its reservation when growth is impossible: a
//!   stack overflow, with the same report and outcome as one the prologue check catches.
//! - in another stack's guard page: a "stack guard page hit" naming that stack.
//!
//! Any other page fault is a bug in the faulting code (`trap::oops::fault`).

use crate::arch::cpu::read_cr2;
use crate::mm::stack::{self, GrowError, StackArea};
use crate::records::trap_entry::TrapFrame;
use crate::sched::thread::Death;
use crate::trap::oops::fault;

/// Bits of a page fault's error code.
const PRESENT: u64 = 1 << 0;
const WRITE: u64 = 1 << 1;
const FETCH: u64 = 1 << 4;

/// What the error code of a page fault says.
fn describe_error(code: u64) -> (&'static str, &'static str) {
    let access = if code & FETCH != 0 {
        "instruction fetch"
    } else if code & WRITE != 0 {
        "write"
    } else {
        "read"
    };
    let cause = if code & PRESENT != 0 { "protection violation" } else { "page not present" };
    (access, cause)
}

/// Can a fault with `code` at `addr` be cured by growing `stack`: a read or write of a page that
/// is not present, below the mapped part?
fn growth_cures(code: u64, addr: usize, stack: &stack::Stack) -> bool {
    code & (PRESENT | FETCH) == 0 && addr < stack.mapped_lo
}

pub fn page_fault(frame: &mut TrapFrame) {
    let addr = read_cr2() as usize;
    let g = frame.interrupted();
    let (access, cause) = describe_error(frame.error_code);
    let own_stack = g.stack.get();

    match stack::classify(addr) {
        Some(StackArea::Reservation { slot, .. })
            if own_stack.is_some_and(|s| s.slot == slot && growth_cures(frame.error_code, addr, &s)) =>
        {
            // LAB 4 BEGIN: grow the stack down to the fault (and count it), so that returning retries the access
            // LAB 4 STUB: let _ = g;
            // LAB 4 STUB: overflow(frame, addr, "lab 4: the page-fault path does not grow stacks yet")
            let sp = (frame.rsp as usize).min(addr);
            match stack::grow(g, sp) {
                Ok(()) => {
                    let cpu = crate::records::percpu::this_cpu();
                    // Returning retries the instruction on the grown stack.
                    cpu.counters.fault_growths.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
                }
                Err(GrowError::NotNow) => fatal_overflow(frame, addr, "while holding the frame allocator's lock"),
                Err(GrowError::OutOfFrames) => overflow(frame, addr, "no memory to grow the stack"),
                Err(GrowError::ReservationExhausted) => overflow(frame, addr, "reservation used up"),
            }
            // LAB 4 END
        }
        Some(StackArea::GuardPage { slot, .. }) if own_stack.is_some_and(|s| s.slot == slot) => {
            overflow(frame, addr, "stack guard page hit")
        }
        Some(StackArea::GuardPage { slot, base, top }) => fault(
            frame,
            Some(format_args!(
                "stack guard page hit: {access} at {addr:#x}, in the guard page of stack #{slot} ({base:#x}..{top:#x})"
            )),
        ),
        Some(StackArea::SystemGuard { slot }) => crate::fatal::fatal_trap(
            frame,
            format_args!("stack guard page hit: {access} at {addr:#x}, in system stack #{slot}"),
        ),
        _ => fault(frame, Some(format_args!("page fault: {access} at {addr:#x} ({cause})"))),
    }
}

/// The thread overflowed its stack (its guard page, or growth failed): the same report and
/// outcome as the prologue check's. A fault cannot be deferred (the instruction cannot go on),
/// so a thread that may not die alone stops the kernel.
fn overflow(frame: &mut TrapFrame, addr: usize, why: &str) {
    let g = frame.interrupted();
    let rsp = frame.rsp as usize;
    if let Err(must_not) = crate::sched::death::may_die_alone(g, frame.interrupts_were_enabled()) {
        let line = crate::sched::death::OverflowLine { g, rsp };
        crate::fatal::fatal_trap(frame, format_args!("{line} at {addr:#x}: {why}; it cannot die alone: {must_not}"));
    }
    let (lo, hi) = g.stack_bounds();
    let trace = crate::fatal::backtrace::Backtrace::from_frame(frame.rip as usize, frame.rbp as usize, lo, hi);
    crate::sched::death::report_overflow(g, rsp, format_args!("the page-fault handler at {addr:#x}: {why}"), &trace);
    crate::sched::thread::kill_from_trap(frame, Death::StackOverflow { rsp: rsp as u64, lo: lo as u64, hi: hi as u64 });
}

fn fatal_overflow(frame: &TrapFrame, addr: usize, why: &str) -> ! {
    crate::fatal::fatal_trap(frame, format_args!("stack overflow at {addr:#x} that cannot be handled: {why}"))
}

//! CPU exceptions: what each one means, how it is reported, and who survives it.
//!
//! Policy (like Linux's "oops"): an exception in a thread that holds no spin lock and had
//! interrupts enabled kills that thread alone -- it gets a report naming it, its join handle
//! returns `Death::Fault`, and the kernel goes on. An exception anywhere else (g0, an
//! interrupt handler, a thread holding a lock, before the scheduler runs) is fatal: the report,
//! then the QEMU failure exit (`crate::fatal`).
//!
//! Special cases: a breakpoint (`int3`) is counted and execution resumes after it; a page fault
//! is first offered to `mm::fault` (stack growth, guard pages); an NMI is the stop signal of a
//! fatal report on another CPU.
//!
//! An exception that arrives while this CPU already handles an interrupt on IST1 restarts at the
//! top of the same interrupt stack and overwrites the first handler's frame, which can then never
//! return: that case is reported as fatal at once.

use core::sync::atomic::Ordering;

use crate::arch::vectors::{VECTOR_DOUBLE_FAULT, VECTOR_MACHINE_CHECK, VECTOR_NMI, VECTOR_PAGE_FAULT};
use crate::records::percpu::this_cpu;
use crate::records::trap_entry::TrapFrame;
use crate::sched::thread::Death;

/// Handles exception `frame.vector` (0..=31).
pub fn handle(frame: &mut TrapFrame) {
    let cpu = this_cpu();
    let vector = frame.vector;
    if vector == VECTOR_NMI {
        if crate::fatal::in_progress() {
            // Another CPU is reporting a fatal error and asked everyone to stop.
            crate::arch::cpu::halt_forever();
        }
        // Counted, not printed: the NMI may have interrupted this very CPU inside the console's
        // lock (which masks interrupts, but not this one). Statistics show the count.
        cpu.counters.nmis.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let critical = vector == VECTOR_DOUBLE_FAULT || vector == VECTOR_MACHINE_CHECK;
    if !critical && core::ptr::eq(frame.interrupted, cpu.gintr) {
        crate::fatal::fatal_trap(
            frame,
            format_args!("exception inside an interrupt handler (the interrupt stack was reused)"),
        );
    }
    cpu.counters.exceptions.fetch_add(1, Ordering::Relaxed);
    match vector {
        3 => breakpoint(frame),
        VECTOR_PAGE_FAULT => crate::trap::page_fault::page_fault(frame),
        VECTOR_DOUBLE_FAULT => crate::fatal::fatal_trap(frame, format_args!("double fault")),
        VECTOR_MACHINE_CHECK => crate::fatal::fatal_trap(frame, format_args!("machine check")),
        _ => fault(frame, None),
    }
}

/// `int3`: count it, remember where the handler's stack was (a test checks that it is the
/// interrupt stack), and resume after the instruction.
fn breakpoint(frame: &mut TrapFrame) {
    let cpu = this_cpu();
    cpu.counters.breakpoints.fetch_add(1, Ordering::Relaxed);
    cpu.counters.last_trap_frame.store(frame as *const TrapFrame as usize, Ordering::Relaxed);
    log::debug!("breakpoint at {:#x} on CPU {}", frame.rip - 1, cpu.id);
}

/// An exception that is a bug in the interrupted code: kill the thread if it can die alone,
/// otherwise stop the kernel. `extra` adds a line to the report (e.g. the page-fault address).
pub fn fault(frame: &mut TrapFrame, extra: Option<core::fmt::Arguments<'_>>) {
    let g = frame.interrupted();
    if let Err(why) = crate::sched::death::may_die_alone(g, frame.interrupts_were_enabled()) {
        let (mnemonic, name) = crate::arch::vectors::exception_name(frame.vector);
        match extra {
            Some(extra) => crate::fatal::fatal_trap(frame, format_args!("{name} ({mnemonic}): {extra} ({why})")),
            None => crate::fatal::fatal_trap(frame, format_args!("{name} ({mnemonic}) ({why})")),
        }
    }
    crate::fatal::report_trap(frame, extra);
    let cr2 = if frame.vector == VECTOR_PAGE_FAULT { crate::arch::cpu::read_cr2() } else { 0 };
    crate::sched::thread::kill_from_trap(
        frame,
        Death::Fault { vector: frame.vector as u8, error_code: frame.error_code, rip: frame.rip, cr2 },
    );
}

/// Test-only handler of `interrupts::TEST_RECURSE`: recurses on the interrupt stack until the
/// prologue check catches the overflow (which is fatal by design).
#[inline(never)]
pub fn test_recurse(depth: u64) {
    let mut pad = [0u8; 256];
    core::hint::black_box(&mut pad);
    if depth < u64::MAX {
        test_recurse(depth + 1);
    }
    core::hint::black_box(&pad);
}

//! CPU exceptions: what each one means. Most are a bug of the interrupted code (`trap::oops`:
//! the thread dies alone, or the kernel stops); a double fault and a machine check are always
//! fatal.
//!
//! Special cases: a breakpoint (`int3`) is counted and execution resumes after it; a page fault
//! goes to `trap::page_fault` (stack growth, guard pages); an NMI is the stop signal of a fatal
//! report on another CPU, or else only counted.
//!
//! An exception that arrives while this CPU already handles an interrupt on IST1 restarts at the
//! top of the same interrupt stack and overwrites the first handler's frame, which can then never
//! return: that case is reported as fatal at once.

use core::sync::atomic::Ordering;

use crate::arch::vectors::{VECTOR_DOUBLE_FAULT, VECTOR_MACHINE_CHECK, VECTOR_NMI, VECTOR_PAGE_FAULT};
use crate::records::percpu::this_cpu;
use crate::records::trap_entry::TrapFrame;

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
        _ => crate::trap::oops::fault(frame, None),
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

/// Test-only handler of `vectors::TEST_RECURSE`: recurses on the interrupt stack until the
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

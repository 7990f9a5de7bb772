//! An exception that is a bug of the interrupted code, like Linux's "oops": the thread that
//! took it dies alone -- reported, killed, its join handle told `Death::Fault` -- if it may
//! (`sched::death::may_die_alone`, the one rule); otherwise the kernel stops with the report.

use crate::arch::vectors::VECTOR_PAGE_FAULT;
use crate::records::trap_entry::TrapFrame;
use crate::sched::thread::Death;

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

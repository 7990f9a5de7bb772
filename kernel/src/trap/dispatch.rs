//! The dispatch of every trap to its handler: the door up from the trap entry stubs
//! (`records::trap_entry`), and the only place that knows which floor serves which vector.
//!
//! - 0..=31: CPU exceptions (`trap::exceptions`).
//! - 0x20..=0x2f: spurious interrupts of the masked legacy PIC, ignored.
//! - `TIMER`: the scheduler's tick (`sched::preempt::timer_interrupt`).
//! - `WAKEUP`: nothing to do: the halted CPU woke up, and the scheduler looks for work.
//! - `TLB_SHOOTDOWN`: `mm::tlb`.
//! - anything else no handler claims: acknowledged (EOI), counted and logged.

use crate::arch::vectors::{SPURIOUS, TEST_RECURSE, TIMER, TLB_SHOOTDOWN, WAKEUP};
use crate::records::trap_entry::TrapFrame;

/// Routes one trap to its handler: called by `trap_common` (by name, the door up from the trap
/// entry stubs) for every interrupt and exception, on the handler's stack, with interrupts
/// disabled and `curg` already switched to the handler's context.
#[unsafe(no_mangle)]
pub extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    let vector = frame.vector;
    if vector >= 32 {
        let cpu = crate::records::percpu::this_cpu();
        cpu.in_irq.store(true, core::sync::atomic::Ordering::Relaxed);
        dispatch_interrupt(frame);
        cpu.in_irq.store(false, core::sync::atomic::Ordering::Relaxed);
    } else {
        crate::trap::exceptions::handle(frame);
    }
}

/// Routes an asynchronous interrupt (vector 32 and up).
fn dispatch_interrupt(frame: &mut TrapFrame) {
    let vector = frame.vector;
    match vector {
        0x20..=0x2f => {} // spurious from the masked legacy PIC
        v if v == u64::from(TIMER) => {
            crate::arch::apic::end_of_interrupt();
            crate::sched::preempt::timer_interrupt(frame);
        }
        v if v == u64::from(WAKEUP) => crate::arch::apic::end_of_interrupt(),
        v if v == u64::from(TLB_SHOOTDOWN) => {
            crate::mm::tlb::handle_shootdown();
            crate::arch::apic::end_of_interrupt();
        }
        v if v == u64::from(TEST_RECURSE) => crate::trap::exceptions::test_recurse(0),
        v if v == u64::from(SPURIOUS) => {} // the APIC's spurious vector takes no EOI
        _ => {
            // No handler claims it, but the local APIC still has it in service: without the EOI
            // it would block every interrupt of its priority or lower, the timer's included.
            crate::arch::apic::end_of_interrupt();
            crate::records::percpu::this_cpu()
                .counters
                .unclaimed_irqs
                .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            log::warn!("unclaimed interrupt vector {vector:#x} at {:#x}", frame.rip);
        }
    }
}

//! The interrupt descriptor table and the dispatch of vectors to their handlers.
//!
//! One IDT serves all CPUs. Every entry is an interrupt gate (interrupts stay disabled in the
//! handler) pointing at the vector's stub in `arch::trap`; the IST slot of each entry picks the
//! stack (see `arch::gdt`).
//!
//! Vector map:
//! - 0..=31: CPU exceptions (`arch::exceptions`).
//! - 0x20..=0x2f: the legacy 8259 PIC after remapping; it is fully masked, so only its
//!   spurious interrupts can arrive, and they are ignored.
//! - anything else no handler claims: acknowledged (EOI), counted and logged.
//! - `TIMER`: the local APIC timer (`sched::preempt::timer_tick`).
//! - `WAKEUP`: an IPI that only wakes a halted CPU (the scheduler looks for work on return).
//! - `TLB_SHOOTDOWN`: invalidate unmapped pages (`mm::tlb`).
//! - `TEST_RECURSE`: test-only, a handler that recurses until the interrupt stack overflows.
//! - `SPURIOUS`: the local APIC's spurious vector.

use x86_64::VirtAddr;
use x86_64::structures::idt::InterruptDescriptorTable;

use crate::arch::cpu::{IST_DOUBLE_FAULT, IST_INTERRUPT, IST_MACHINE_CHECK, IST_NMI};
use crate::arch::vectors::{SPURIOUS, TEST_RECURSE, TIMER, TLB_SHOOTDOWN, WAKEUP};
use crate::records::trap_entry::{TrapFrame, stub_address};

static IDT: spin::Once<InterruptDescriptorTable> = spin::Once::new();

fn build_idt() -> InterruptDescriptorTable {
    let mut idt = InterruptDescriptorTable::new();
    // SAFETY (for every `set_handler_addr` below): each address is the entry stub of that very
    // vector, which saves state, runs the handler and returns with `iretq`; each IST slot is
    // filled in the TSS of every CPU before it enables interrupts.
    macro_rules! set {
        ($entry:expr, $vector:expr, $ist:expr) => {
            unsafe {
                $entry.set_handler_addr(VirtAddr::new(stub_address($vector))).set_stack_index($ist - 1);
            }
        };
    }
    set!(idt.divide_error, 0, IST_INTERRUPT);
    set!(idt.debug, 1, IST_INTERRUPT);
    set!(idt.non_maskable_interrupt, 2, IST_NMI);
    set!(idt.breakpoint, 3, IST_INTERRUPT);
    set!(idt.overflow, 4, IST_INTERRUPT);
    set!(idt.bound_range_exceeded, 5, IST_INTERRUPT);
    set!(idt.invalid_opcode, 6, IST_INTERRUPT);
    set!(idt.device_not_available, 7, IST_INTERRUPT);
    set!(idt.double_fault, 8, IST_DOUBLE_FAULT);
    set!(idt.invalid_tss, 10, IST_INTERRUPT);
    set!(idt.segment_not_present, 11, IST_INTERRUPT);
    set!(idt.stack_segment_fault, 12, IST_INTERRUPT);
    set!(idt.general_protection_fault, 13, IST_INTERRUPT);
    set!(idt.page_fault, 14, IST_INTERRUPT);
    set!(idt.x87_floating_point, 16, IST_INTERRUPT);
    set!(idt.alignment_check, 17, IST_INTERRUPT);
    set!(idt.machine_check, 18, IST_MACHINE_CHECK);
    set!(idt.simd_floating_point, 19, IST_INTERRUPT);
    set!(idt.virtualization, 20, IST_INTERRUPT);
    set!(idt.cp_protection_exception, 21, IST_INTERRUPT);
    set!(idt.hv_injection_exception, 28, IST_INTERRUPT);
    set!(idt.vmm_communication_exception, 29, IST_INTERRUPT);
    set!(idt.security_exception, 30, IST_INTERRUPT);
    for vector in 32..=255u8 {
        set!(idt[vector], vector, IST_INTERRUPT);
    }
    idt
}

/// Loads the IDT on this CPU (building it on first use).
pub fn load() {
    IDT.call_once(build_idt).load();
}

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
        crate::arch::exceptions::handle(frame);
    }
}

/// Routes an asynchronous interrupt (vector 32 and up).
fn dispatch_interrupt(frame: &mut TrapFrame) {
    let vector = frame.vector;
    match vector {
        0x20..=0x2f => {} // spurious from the masked legacy PIC
        v if v == u64::from(TIMER) => {
            crate::arch::apic::end_of_interrupt();
            crate::sched::preempt::timer_tick(frame);
        }
        v if v == u64::from(WAKEUP) => crate::arch::apic::end_of_interrupt(),
        v if v == u64::from(TLB_SHOOTDOWN) => {
            crate::mm::tlb::handle_shootdown();
            crate::arch::apic::end_of_interrupt();
        }
        v if v == u64::from(TEST_RECURSE) => crate::arch::exceptions::test_recurse(0),
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

//! Bringing a CPU's records and tables up: CPU 0's descriptor tables and interrupt handling on
//! early stacks at boot, and every CPU's interrupt stacks bound into its TSS and its handler
//! contexts' records.

use crate::arch::cpu::{CRITICAL_STACK_SIZE, IST_DOUBLE_FAULT, IST_INTERRUPT, IST_MACHINE_CHECK, IST_NMI, StackRange};
use crate::records::percpu::PerCpu;

/// Early stacks for CPU 0's interrupt stack table, used until memory management can give it
/// guarded ones (`smp_boot::alloc_cpu_stacks`, then `bind_interrupt_stacks`).
#[repr(C, align(4096))]
struct EarlyStacks([[u8; CRITICAL_STACK_SIZE]; 4]);
static mut EARLY_STACKS: EarlyStacks = EarlyStacks([[0; CRITICAL_STACK_SIZE]; 4]);

fn early_stack(i: usize) -> StackRange {
    // SAFETY: only the address is taken; the stacks are used by CPU 0's interrupts only.
    let lo = unsafe { core::ptr::addr_of!(EARLY_STACKS.0[i]) } as usize;
    StackRange { lo, hi: lo + CRITICAL_STACK_SIZE }
}

/// Brings up CPU 0's descriptor tables and interrupt handling on early stacks.
///
/// # Safety
/// Once, on CPU 0, first thing after `_start`, with interrupts disabled.
pub unsafe fn init_bsp_early(cpu: &'static PerCpu) {
    // SAFETY: by the contract.
    unsafe {
        cpu.bind_records();
        cpu.arch.tables.load();
        let stacks = [early_stack(0), early_stack(1), early_stack(2), early_stack(3)];
        bind_interrupt_stacks(cpu, stacks[0], [stacks[1], stacks[2], stacks[3]]);
    }
    crate::records::trap_entry::load_idt();
    crate::arch::pit::disable_legacy_pic();
}

/// Points the TSS and the handler contexts at this CPU's interrupt and critical stacks.
///
/// # Safety
/// On the owning CPU, interrupts disabled; the stacks are mapped and owned by it for good.
pub unsafe fn bind_interrupt_stacks(cpu: &PerCpu, interrupt: StackRange, critical: [StackRange; 3]) {
    // SAFETY: by the contract.
    unsafe {
        cpu.arch.tables.set_ist(IST_INTERRUPT, interrupt);
        cpu.arch.tables.set_ist(IST_DOUBLE_FAULT, critical[0]);
        cpu.arch.tables.set_ist(IST_NMI, critical[1]);
        cpu.arch.tables.set_ist(IST_MACHINE_CHECK, critical[2]);
    }
    cpu.arch.interrupt_stack.set(interrupt);
    cpu.arch.critical_stacks.set(critical);
    // SAFETY: the records belong to this CPU, which is not in a handler now.
    cpu.gintr().bind_stack(interrupt.lo, interrupt.hi);
    // Critical handlers run with the check disabled (stackguard0 = 0); their bounds are the
    // double-fault stack's, for backtraces.
    let gcrit = cpu.gcrit();
    gcrit.stack_lo.store(critical[0].lo, core::sync::atomic::Ordering::Relaxed);
    gcrit.stack_hi.store(critical[0].hi, core::sync::atomic::Ordering::Relaxed);
    gcrit.stackguard0.store(0, core::sync::atomic::Ordering::Relaxed);
}

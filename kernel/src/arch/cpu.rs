//! Small CPU facilities: the interrupt flag, halting, the time-stamp counter, control registers,
//! and the sizes and IST slots of the per-CPU stacks (the per-CPU architectural state that holds
//! them, `ArchCpu`: GDT, TSS and the interrupt stacks, is in `arch::gdt`).
//!
//! Invariant: `IrqGuard` restores exactly the interrupt flag it found, so guards nest.

use core::arch::asm;

use x86_64::registers::rflags::{self, RFlags};

/// Are interrupts enabled on this CPU?
#[inline(always)]
pub fn interrupts_enabled() -> bool {
    rflags::read().contains(RFlags::INTERRUPT_FLAG)
}

/// Disables interrupts until dropped, then restores the previous state. While it lives, the
/// current thread cannot be preempted or migrate, so it may touch its CPU's per-CPU data.
#[must_use]
pub struct IrqGuard {
    was_enabled: bool,
    // Not Send: it must be dropped on the CPU that took it.
    _not_send: core::marker::PhantomData<*const ()>,
}

impl IrqGuard {
    #[inline(always)]
    pub fn new() -> IrqGuard {
        let was_enabled = interrupts_enabled();
        if was_enabled {
            x86_64::instructions::interrupts::disable();
        }
        IrqGuard { was_enabled, _not_send: core::marker::PhantomData }
    }
}

impl Drop for IrqGuard {
    #[inline(always)]
    fn drop(&mut self) {
        if self.was_enabled {
            x86_64::instructions::interrupts::enable();
        }
    }
}

/// Enables interrupts and halts until one arrives, atomically (`sti; hlt`: the interrupt
/// cannot slip in between, because `sti` takes effect after the next instruction). Returns
/// with interrupts disabled again.
#[inline(always)]
pub fn enable_and_halt_then_disable() {
    x86_64::instructions::interrupts::enable_and_hlt();
    x86_64::instructions::interrupts::disable();
}

/// Halts this CPU for good, with interrupts disabled (NMIs still wake it; the NMI handler
/// halts again).
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// The time-stamp counter. Under QEMU `-icount shift=0` it counts executed instructions.
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The faulting address of the last page fault.
pub fn read_cr2() -> u64 {
    let cr2: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack, preserves_flags)) };
    cr2
}

/// The current stack pointer.
#[inline(always)]
pub fn read_rsp() -> usize {
    let rsp: usize;
    // SAFETY: reads a register.
    unsafe { asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags)) };
    rsp
}

/// The current frame pointer.
#[inline(always)]
pub fn read_rbp() -> usize {
    let rbp: usize;
    // SAFETY: reads a register.
    unsafe { asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags)) };
    rbp
}

/// Spin-wait hint.
#[inline(always)]
pub fn relax() {
    core::hint::spin_loop();
}

/// `pause`: on real hardware a hint that the core is spinning; under QEMU's TCG it also ends this
/// virtual CPU's turn on the host thread, so the next one runs (see `sched::vcpu_share`).
#[inline(always)]
pub fn end_host_turn() {
    core::hint::spin_loop();
}

/// Sizes of the stacks every CPU has besides its threads'.
pub const G0_STACK_SIZE: usize = 64 * 1024;
pub const INTERRUPT_STACK_SIZE: usize = 32 * 1024;
pub const CRITICAL_STACK_SIZE: usize = 16 * 1024;

/// Interrupt stack table slots (1-based in the TSS; the IDT stores the same numbers).
pub const IST_INTERRUPT: u16 = 1;
pub const IST_DOUBLE_FAULT: u16 = 2;
pub const IST_NMI: u16 = 3;
pub const IST_MACHINE_CHECK: u16 = 4;

/// A stack a CPU owns, described by its bounds.
#[derive(Clone, Copy, Default, Debug)]
pub struct StackRange {
    pub lo: usize,
    pub hi: usize,
}

impl StackRange {
    pub fn contains(&self, addr: usize) -> bool {
        self.lo <= addr && addr < self.hi
    }
}

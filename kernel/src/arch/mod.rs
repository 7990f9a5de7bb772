//! Floor 1, the machine: the x86-64 CPU (instructions, registers, descriptor tables), the
//! devices Prologue drives (local APIC, PIT, QEMU's fw_cfg and exit port), the firmware's ACPI
//! tables, the direct map of physical memory, and the interrupt vectors' names. Nothing here
//! knows about threads or CPUs' records: a driver is told which CPU (an APIC id) it acts on.

pub mod acpi;
pub mod apic;
pub mod cpu;
pub mod debugcon;
pub mod fwcfg;
pub mod gdt;
pub mod phys;
pub mod pit;
pub mod qemu;
mod tests;
pub mod vectors;

/// The most CPUs Prologue can run on (the size of every per-CPU table).
pub const MAX_CPUS: usize = 16;

/// Calls `f(arg)` on the stack whose top is `top`, never returning. The caller has already
/// described that stack in its context's `G` record.
///
/// Register contract: `rdi` = arg, `rsi` = f, `rdx` = top; interrupts disabled.
#[unsafe(naked)]
pub unsafe extern "C" fn call_on_stack(arg: usize, f: extern "C" fn(usize) -> !, top: usize) -> ! {
    core::arch::naked_asm!("mov rsp, rdx", "xor ebp, ebp", "call rsi", "ud2")
}

//! The interrupt vectors: the CPU's exceptions (0..=31, fixed by the architecture) and the
//! vectors this kernel gives its interrupts. Which handler serves each is decided in
//! `trap::dispatch`; this file only names them.
//!
//! Vector map:
//! - 0..=31: CPU exceptions (names below).
//! - 0x20..=0x2f: the legacy 8259 PIC after remapping; it is fully masked, so only its
//!   spurious interrupts can arrive.
//! - `TIMER`: the local APIC timer.
//! - `WAKEUP`: an IPI that only wakes a halted CPU.
//! - `TLB_SHOOTDOWN`: invalidate unmapped pages.
//! - `TEST_RECURSE`: test-only, a handler that recurses until the interrupt stack overflows.
//! - `SPURIOUS`: the local APIC's spurious vector.

/// Exceptions that run on their own IST stacks with checks disabled.
pub const VECTOR_NMI: u64 = 2;
pub const VECTOR_DOUBLE_FAULT: u64 = 8;
pub const VECTOR_PAGE_FAULT: u64 = 14;
pub const VECTOR_MACHINE_CHECK: u64 = 18;

pub const TIMER: u8 = 0x30;
pub const TEST_RECURSE: u8 = 0x81;
pub const WAKEUP: u8 = 0xf0;
pub const TLB_SHOOTDOWN: u8 = 0xf1;
pub const SPURIOUS: u8 = 0xff;

/// Mnemonic and name of exception `vector`.
pub fn exception_name(vector: u64) -> (&'static str, &'static str) {
    match vector {
        0 => ("#DE", "divide error"),
        1 => ("#DB", "debug"),
        2 => ("NMI", "non-maskable interrupt"),
        3 => ("#BP", "breakpoint"),
        4 => ("#OF", "overflow"),
        5 => ("#BR", "bound range exceeded"),
        6 => ("#UD", "invalid opcode"),
        7 => ("#NM", "device not available"),
        8 => ("#DF", "double fault"),
        10 => ("#TS", "invalid TSS"),
        11 => ("#NP", "segment not present"),
        12 => ("#SS", "stack-segment fault"),
        13 => ("#GP", "general protection fault"),
        14 => ("#PF", "page fault"),
        16 => ("#MF", "x87 floating-point error"),
        17 => ("#AC", "alignment check"),
        18 => ("#MC", "machine check"),
        19 => ("#XM", "SIMD floating-point error"),
        20 => ("#VE", "virtualization exception"),
        21 => ("#CP", "control protection"),
        28 => ("#HV", "hypervisor injection"),
        29 => ("#VC", "VMM communication"),
        30 => ("#SX", "security exception"),
        _ => ("#??", "reserved exception"),
    }
}

//! The kernel's entry point and the bootloader configuration.
//!
//! Every non-inlined Rust function calls the stack-guard hook (`mcount`) in its prologue, and
//! the hook reads the current thread through the GS base. So the very first instructions of
//! the kernel must point GS at CPU 0's per-CPU block and give it a stack with known bounds
//! *before any Rust runs*. That is why `_start` is a naked function (never instrumented) rather
//! than the one `bootloader_api::entry_point!` generates (which is instrumented, and would
//! fault on GS base 0 before printing anything).
//!
//! Invariant kept here: when `kernel_start` (the first Rust function) runs, GS base = CPU 0's
//! `PerCpu`, `curg` = CPU 0's g0 record, and that record describes the boot stack.

use bootloader_api::config::Mapping;
use bootloader_api::{BootInfo, BootloaderConfig};

use crate::records::percpu;

/// Where the bootloader maps the kernel image (the top 2 GiB, as in Linux). The kernel is a
/// position-independent executable whose ELF addresses start at 0, so a runtime address minus
/// this base is the address in the ELF file: the runner uses that to symbolize backtraces.
pub const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;

/// The bootloader puts its own dynamic mappings (the physical-memory window, the boot info,
/// its stack) in this range, leaving the rest of the higher half to the kernel (see `mm::layout`).
pub const BOOTLOADER_DYNAMIC_START: u64 = 0xffff_8000_0000_0000;
pub const BOOTLOADER_DYNAMIC_END: u64 = 0xffff_8fff_ffff_ffff;

const fn bootloader_config() -> BootloaderConfig {
    let mut config = BootloaderConfig::new_default();
    config.mappings.physical_memory = Some(Mapping::Dynamic);
    config.mappings.kernel_base = Mapping::FixedAddress(KERNEL_BASE);
    config.mappings.dynamic_range_start = Some(BOOTLOADER_DYNAMIC_START);
    config.mappings.dynamic_range_end = Some(BOOTLOADER_DYNAMIC_END);
    config
}

/// The serialized configuration the bootloader reads from the kernel ELF. `entry_point!` would
/// emit this for us; we write our own `_start`, so we emit it ourselves.
#[unsafe(link_section = ".bootloader-config")]
#[used]
static BOOTLOADER_CONFIG: [u8; BootloaderConfig::SERIALIZED_LEN] = bootloader_config().serialize();

/// Size of the stack CPU 0 boots on. It is CPU 0's first g0 stack; `kernel_start` moves to a
/// guarded stack from `mm::stack` as soon as memory management is up.
pub const BOOT_STACK_SIZE: usize = 64 * 1024;

#[repr(C, align(4096))]
struct BootStack([u8; BOOT_STACK_SIZE]);

/// The boot stack. Only `_start` touches it (by address).
static mut BOOT_STACK: BootStack = BootStack([0; BOOT_STACK_SIZE]);

/// The entry point the bootloader jumps to, with `rdi` = `&'static mut BootInfo`.
///
/// Register contract: in `rdi` the boot info pointer; the bootloader's stack in `rsp` (unused:
/// we switch to `BOOT_STACK` at once); interrupts disabled. Clobbers everything; never returns.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _start(boot_info: &'static mut BootInfo) -> ! {
    core::arch::naked_asm!(
        "lea rsp, [rip + {stack} + {stack_size}]",
        "xor ebp, ebp",                   // terminates frame-pointer backtraces
        "mov r12, rdi",                   // keep the boot info pointer
        // GS base := &PERCPU[0] (IA32_GS_BASE takes edx:eax).
        "lea rdi, [rip + {percpu}]",
        "mov rax, rdi",
        "mov rdx, rdi",
        "shr rdx, 32",
        "mov ecx, {gs_base_msr}",
        "wrmsr",
        // PERCPU[0].self = &PERCPU[0]; curg = g0 = &PERCPU[0].g0_rec.
        "mov [rdi + {off_self}], rdi",
        "lea rax, [rdi + {off_g0_rec}]",
        "mov [rdi + {off_curg}], rax",
        "mov [rdi + {off_g0}], rax",
        // Describe the boot stack in that record. From here on the prologue hook works.
        "lea rsi, [rip + {stack}]",
        "mov [rax + {g_lo}], rsi",
        "add rsi, {guard}",
        "mov [rax + {g_guard}], rsi",
        "lea rsi, [rip + {stack} + {stack_size}]",
        "mov [rax + {g_hi}], rsi",
        "mov rdi, r12",
        "call kernel_start",              // the door up to main.rs
        "ud2",
        stack = sym BOOT_STACK,
        stack_size = const BOOT_STACK_SIZE,
        percpu = sym percpu::PERCPU,
        gs_base_msr = const 0xC000_0101u32,
        off_self = const percpu::OFF_SELF,
        off_curg = const percpu::OFF_CURG,
        off_g0 = const percpu::OFF_G0,
        off_g0_rec = const percpu::OFF_G0_REC,
        g_guard = const crate::records::g::OFF_STACKGUARD0,
        g_lo = const crate::records::g::OFF_STACK_LO,
        g_hi = const crate::records::g::OFF_STACK_HI,
        guard = const crate::records::g::STACK_GUARD,
    )
}

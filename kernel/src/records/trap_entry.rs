//! Interrupt and exception entry: the interrupt descriptor table, the assembly stubs it points
//! at, and the trap frame they save. (Which handler serves a vector is decided above, in
//! `trap::dispatch`, entered through the `trap_dispatch` door.)
//!
//! Every one of the 256 vectors enters through a 16-byte stub in `trap_vectors` that makes the
//! stack look the same for all of them (a dummy error code where the CPU pushes none, then the
//! vector number) and jumps to `trap_common`. `trap_common` saves every general register into a
//! `TrapFrame`, then -- before any Rust runs -- switches this CPU's `curg` to the context the
//! handler runs in: `gintr` (the interrupt stack, IST1) for ordinary vectors, `gcrit` for NMI,
//! double fault and machine check (their own IST stacks, prologue checks disabled). So a handler
//! is never mistaken for the thread it interrupted: the prologue hook checks the handler's own
//! stack, and the scheduler never preempts a handler. On return `curg` is restored from the
//! frame.
//!
//! Register contract of `trap_common`: entered by `jmp` from a stub with the CPU's interrupt
//! frame, the error code and the vector on the stack; interrupts disabled (all IDT entries are
//! interrupt gates). It calls `trap_dispatch(&mut TrapFrame)` with the stack 16-byte aligned
//! and the direction flag clear, and returns with `iretq`, restoring all registers from the
//! frame (a handler may change the frame: `rip`/`rsp` to redirect the interrupted thread).

use core::fmt;

use x86_64::VirtAddr;
use x86_64::structures::idt::InterruptDescriptorTable;

use crate::arch::cpu::{IST_DOUBLE_FAULT, IST_INTERRUPT, IST_MACHINE_CHECK, IST_NMI};
use crate::arch::vectors::{VECTOR_DOUBLE_FAULT, VECTOR_MACHINE_CHECK, VECTOR_NMI};
use crate::records::g::G;
use crate::records::percpu::{OFF_CURG, OFF_GCRIT, OFF_GINTR};

/// Everything `trap_common` saved, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    _align: u64,
    /// The context that was running when the trap arrived (restored into `curg` on return).
    pub interrupted: *mut G,
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    /// The CPU's error code, or 0 for vectors without one.
    pub error_code: u64,
    // Pushed by the CPU.
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const OFF_VECTOR: usize = core::mem::offset_of!(TrapFrame, vector);

impl TrapFrame {
    /// The interrupted context.
    pub fn interrupted(&self) -> &'static G {
        // SAFETY: `trap_common` stored a valid `curg`, which is never null.
        unsafe { &*self.interrupted }
    }

    /// Were interrupts enabled in the interrupted code?
    pub fn interrupts_were_enabled(&self) -> bool {
        self.rflags & (1 << 9) != 0
    }
}

impl fmt::Display for TrapFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  RIP {:#018x}  RSP {:#018x}  RFLAGS {:#x}", self.rip, self.rsp, self.rflags)?;
        writeln!(f, "  RAX {:#018x}  RBX {:#018x}  RCX {:#018x}", self.rax, self.rbx, self.rcx)?;
        writeln!(f, "  RDX {:#018x}  RSI {:#018x}  RDI {:#018x}", self.rdx, self.rsi, self.rdi)?;
        writeln!(f, "  RBP {:#018x}  R8  {:#018x}  R9  {:#018x}", self.rbp, self.r8, self.r9)?;
        writeln!(f, "  R10 {:#018x}  R11 {:#018x}  R12 {:#018x}", self.r10, self.r11, self.r12)?;
        write!(f, "  R13 {:#018x}  R14 {:#018x}  R15 {:#018x}", self.r13, self.r14, self.r15)
    }
}

// The 256 entry stubs, 16 bytes apart. Vectors 8, 10-14, 17, 21, 29 and 30 get an error code
// from the CPU; the others push a zero in its place. (AT&T syntax: `.rept` needs immediates.)
core::arch::global_asm!(
    r#"
    .section .text.trap_vectors, "ax"
    .p2align 4
    .global trap_vectors
trap_vectors:
    .set vec, 0
    .rept 256
    .p2align 4
    .if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
        pushq $0
    .endif
        pushq $vec
        jmp trap_common
    .set vec, vec + 1
    .endr
    "#,
    options(att_syntax)
);

core::arch::global_asm!(
    r#"
    .section .text.trap_common, "ax"
    .global trap_common
trap_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rax, gs:[{off_curg}]
    push rax                        // TrapFrame.interrupted
    sub rsp, 8                      // TrapFrame._align: keeps the call 16-byte aligned
    // Switch curg to the handler's context before any Rust runs.
    mov rcx, [rsp + {off_vector}]
    mov rdx, gs:[{off_gintr}]
    cmp rcx, {nmi}
    je 1f
    cmp rcx, {double_fault}
    je 1f
    cmp rcx, {machine_check}
    jne 2f
1:  mov rdx, gs:[{off_gcrit}]
2:  mov gs:[{off_curg}], rdx
    mov rdi, rsp
    cld
    call trap_dispatch              // the door up to trap::dispatch
    add rsp, 8
    pop rax
    mov gs:[{off_curg}], rax        // back to the interrupted context
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16                     // vector and error code
    iretq
    "#,
    off_curg = const OFF_CURG,
    off_gintr = const OFF_GINTR,
    off_gcrit = const OFF_GCRIT,
    off_vector = const OFF_VECTOR,
    nmi = const VECTOR_NMI,
    double_fault = const VECTOR_DOUBLE_FAULT,
    machine_check = const VECTOR_MACHINE_CHECK,
);

unsafe extern "C" {
    /// The first of the 256 entry stubs; stub `n` is at `trap_vectors + 16 * n`.
    pub static trap_vectors: [u8; 256 * 16];
}

/// Address of the entry stub of `vector`.
pub fn stub_address(vector: u8) -> u64 {
    let base = core::ptr::addr_of!(trap_vectors) as u64;
    base + 16 * u64::from(vector)
}

// ---- the interrupt descriptor table ----
//
// One IDT serves all CPUs. Every entry is an interrupt gate (interrupts stay disabled in the
// handler) pointing at the vector's stub above; the IST slot of each entry picks the stack
// (see `arch::gdt`).

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
pub fn load_idt() {
    IDT.call_once(build_idt).load();
}

//! Context switching, in assembly: `mcall` (thread -> g0), `gogo` (g0 -> thread), and the three
//! trampolines a thread can start running at (its entry, an injected asynchronous preemption,
//! and its death after a fault).
//!
//! As in the Go runtime, a switch between two threads always passes through the CPU's
//! scheduler context g0: the thread calls `mcall(f)`, which saves the thread's callee-saved
//! registers in its `G`, moves to the top of g0's stack and calls `f(g)` there; `f` decides
//! what happens to the thread (park it, queue it, free it) and ends in the scheduler, which
//! picks the next thread and `gogo`es to it. g0's stack is reset to its top on every `mcall`:
//! g0 keeps no state on it between switches.
//!
//! Only callee-saved registers are saved: `mcall` is an ordinary function call for the thread,
//! so the ABI already lets it clobber the rest (and the kernel is soft-float: no FP state).
//! The interrupt flag is saved and restored with the rest of RFLAGS.

use core::arch::naked_asm;

use crate::records::g::{
    CTX_R12, CTX_R13, CTX_R14, CTX_R15, CTX_RBP, CTX_RBX, CTX_RFLAGS, CTX_RSP, G, GKind, OFF_CTX, OFF_KIND,
    OFF_STACK_HI,
};
use crate::records::percpu::{OFF_CURG, OFF_G0};

/// Saves the current thread's context and calls `f(g)` on this CPU's g0 stack, with `curg` =
/// g0 and interrupts disabled. `f` never returns; the thread resumes (returning from `mcall`)
/// when the scheduler `gogo`es to it again.
///
/// Register contract: `rdi` = f. Must be called by a thread, or jumped to by
/// `sched::stackguard`'s `morestack` with the hook's return address on the stack. Called by any
/// other context (g0, a handler: code that parks, yields or exits where only a thread may), it
/// refuses: a fatal report naming the context, via `switch_refused(curg, return address)`.
/// Returns with the callee-saved registers and RFLAGS the thread had; clobbers the rest.
#[unsafe(naked)]
pub unsafe extern "C" fn mcall(f: extern "C" fn(&'static G) -> !) {
    naked_asm!(
        "mov rax, gs:[{curg}]",
        "cmp byte ptr [rax + {kind}], {thread}",
        "jne 2f",
        "pushfq",
        "cli",
        "pop qword ptr [rax + {ctx} + {rflags}]",
        "mov [rax + {ctx} + {rsp}], rsp",
        "mov [rax + {ctx} + {rbx}], rbx",
        "mov [rax + {ctx} + {rbp}], rbp",
        "mov [rax + {ctx} + {r12}], r12",
        "mov [rax + {ctx} + {r13}], r13",
        "mov [rax + {ctx} + {r14}], r14",
        "mov [rax + {ctx} + {r15}], r15",
        "mov rdx, gs:[{g0}]",
        "mov gs:[{curg}], rdx",
        "mov rsp, [rdx + {stack_hi}]",
        "xor ebp, ebp",
        "mov rsi, rdi",
        "mov rdi, rax",
        "call rsi",
        "ud2",
        "2:",
        "cli",
        "mov rdi, rax",
        "mov rsi, [rsp]",
        "call {refused}",
        "ud2",
        curg = const OFF_CURG,
        kind = const OFF_KIND,
        thread = const GKind::Thread as u8,
        refused = sym switch_refused,
        g0 = const OFF_G0,
        stack_hi = const OFF_STACK_HI,
        ctx = const OFF_CTX,
        rsp = const CTX_RSP,
        rbx = const CTX_RBX,
        rbp = const CTX_RBP,
        r12 = const CTX_R12,
        r13 = const CTX_R13,
        r14 = const CTX_R14,
        r15 = const CTX_R15,
        rflags = const CTX_RFLAGS,
    )
}

/// `mcall` called by a context that is not a thread: only a thread can park, yield or exit.
extern "C" fn switch_refused(g: &G, return_address: usize) -> ! {
    let (lo, hi) = g.stack_bounds();
    crate::fatal::fatal_with_trace(
        format_args!(
            "a thread switch was asked for on {}: only a thread can park, yield or exit",
            crate::sched::thread::describe(g)
        ),
        &crate::arch::backtrace::Backtrace::from_frame(return_address - 1, crate::arch::cpu::read_rbp(), lo, hi),
    )
}

/// Switches from g0 to thread `g`: makes it `curg`, restores its saved context, and returns
/// into it (from its `mcall`, its prologue hook, or to its entry trampoline).
///
/// Register contract: `rdi` = g. Must be called on g0 with interrupts disabled; `g` must be
/// in state `Running` with a saved context. Never returns. The `popfq` may enable interrupts
/// one instruction before the final `ret`; an interrupt there sees the thread fully restored.
#[unsafe(naked)]
pub unsafe extern "C" fn gogo(g: &G) -> ! {
    naked_asm!(
        "mov gs:[{curg}], rdi",
        "mov rsp, [rdi + {ctx} + {rsp}]",
        "mov rbx, [rdi + {ctx} + {rbx}]",
        "mov rbp, [rdi + {ctx} + {rbp}]",
        "mov r12, [rdi + {ctx} + {r12}]",
        "mov r13, [rdi + {ctx} + {r13}]",
        "mov r14, [rdi + {ctx} + {r14}]",
        "mov r15, [rdi + {ctx} + {r15}]",
        "push qword ptr [rdi + {ctx} + {rflags}]",
        "popfq",
        "ret",
        curg = const OFF_CURG,
        ctx = const OFF_CTX,
        rsp = const CTX_RSP,
        rbx = const CTX_RBX,
        rbp = const CTX_RBP,
        r12 = const CTX_R12,
        r13 = const CTX_R13,
        r14 = const CTX_R14,
        r15 = const CTX_R15,
        rflags = const CTX_RFLAGS,
    )
}

/// Where a new thread starts: `gogo` returns here on the thread's fresh stack. Ends the
/// frame-pointer chain and calls the thread's start function, which never returns.
///
/// Register contract: entered by `ret` (any stack alignment: realigned here) with r12 = the
/// start function (`unsafe extern "C" fn(*mut u8) -> !`) and r13 = its argument, both from the
/// context `spawn` prepared; `curg` is the new thread; interrupts enabled.
#[unsafe(naked)]
pub unsafe extern "C" fn thread_entry() -> ! {
    naked_asm!("xor ebp, ebp", "and rsp, -16", "mov rdi, r13", "call r12", "ud2")
}

/// Where an asynchronously preempted thread "calls" into the scheduler. The timer interrupt
/// pushed the interrupted `rip` onto the thread's stack and made the interrupt return here, so
/// this runs as the thread, on its stack, as if the interrupted instruction had called it.
///
/// Register contract: every register, including RFLAGS, holds the interrupted code's value and
/// is restored before returning to it; `[rsp]` = the interrupted `rip`. Builds a normal frame
/// (so backtraces pass through), saves everything, and calls `sched::preempt::async_preempted`.
#[unsafe(naked)]
pub unsafe extern "C" fn async_preempt_entry() {
    naked_asm!(
        "push rbp",
        "mov rbp, rsp",
        "pushfq",
        "push rax",
        "push rbx",
        "push rcx",
        "push rdx",
        "push rsi",
        "push rdi",
        "push r8",
        "push r9",
        "push r10",
        "push r11",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "and rsp, -16",
        "cld",
        "call {preempted}",
        "lea rsp, [rbp - 8 - 14 * 8]",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop r11",
        "pop r10",
        "pop r9",
        "pop r8",
        "pop rdi",
        "pop rsi",
        "pop rdx",
        "pop rcx",
        "pop rbx",
        "pop rax",
        "popfq",
        "pop rbp",
        "ret",
        preempted = sym crate::sched::preempt::async_preempted,
    )
}

/// Bytes an injected asynchronous preemption needs below the interrupted stack pointer
/// (return address, frame, flags, 14 registers, alignment, and the Rust call beyond).
pub const ASYNC_PREEMPT_STACK: usize = 512;

/// Where a thread killed by an exception resumes: the trap handler pointed the interrupt
/// return here, with `rsp` near the top of the thread's own stack, so that the thread can run
/// its normal exit path (`sched::thread::exit_after_trap`).
///
/// Register contract: `curg` is the dying thread; interrupts enabled; registers are garbage.
#[unsafe(naked)]
pub unsafe extern "C" fn thread_trap_exit() -> ! {
    naked_asm!(
        "xor ebp, ebp",
        "and rsp, -16",
        "call {exit}",
        "ud2",
        exit = sym crate::sched::thread::exit_after_trap,
    )
}

//! Context switching, in assembly: `mcall` (thread -> g0), `gogo` (g0 -> thread), and the
//! trampoline a new thread starts at. (The scheduler's two other trampolines -- an injected
//! asynchronous preemption and a thread's death after a fault -- live with their stories, in
//! `sched::preempt` and `sched::thread::exit`.)
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
        "call switch_refused",           // the door up to sched: a fatal report
        "ud2",
        curg = const OFF_CURG,
        kind = const OFF_KIND,
        thread = const GKind::Thread as u8,
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

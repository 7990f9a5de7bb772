//! Software stack guards: the prologue hook (`mcount`), its slow path (`morestack` ->
//! `newstack`), and the poison values that turn the check into a request.
//!
//! The kernel is compiled with `-Z instrument-mcount`, so every non-inlined function calls
//! `mcount` right after its prologue has allocated its frame. The hook compares the stack
//! pointer with `curg.stackguard0`:
//!
//! ```text
//!   mcount:  mov  rax, gs:[curg]        ; the running context's G
//!            cmp  rsp, [rax]            ; G.stackguard0
//!            jb   morestack             ; below the guard: slow path
//!            ret
//! ```
//!
//! `stackguard0` normally holds `stack_lo + STACK_GUARD`; the zone between `stack_lo` and the
//! guard is the room the slow path and any frame allocated before its check may use. To ask a
//! thread to do something at its next call, another party stores a *poison* value (at or
//! above `STACK_POISON_MIN`, above any real stack address) into `stackguard0`: the next check
//! fails whatever the stack pointer, and the slow path reads the request. As in Go:
//! `STACK_PREEMPT` asks the thread to yield; `STACK_COUNT` (tests only) asks the slow path to
//! count the entry and keep the poison, so that every prologue is counted.
//!
//! The slow path (`morestack`, assembly) is an `mcall(newstack)` made from the hook: it saves
//! the thread's context and calls `newstack` on the CPU's g0 stack. `newstack` decides, in this order:
//! 1. Stack overflow, judged from the saved stack pointer against the *real* bound
//!    (`stack_lo + STACK_GUARD`), never from `stackguard0` (a poison hides the bound, and the
//!    hook returns into the function body without re-checking). First try to grow the stack
//!    in place (`mm::stack::grow`); if its reservation is used up, the thread dies with an
//!    overflow report if it may die alone (`sched::death::may_die_alone`); if it may not (it
//!    holds a spin lock, or runs with interrupts off), the overflow is deferred and judged
//!    again at the next check where it may.
//! 2. A preemption request (`sched::preempt::at_prologue`): if the thread is preemptible (no
//!    locks, interrupts on) it goes to the global run queue (Go's `gopreempt_m`); otherwise the
//!    real guard is restored and the request stays pending, re-armed when the last lock is
//!    released (`G::lower_lock_depth`).
//! 3. Otherwise (a count request, or a request already served) the thread just continues.
//!
//! g0, the interrupt context and the critical context are never preempted and never grow: if
//! their check fails, it is a fatal overflow, reported with the check disabled.

use core::sync::atomic::Ordering;

use crate::fatal::backtrace::Backtrace;
use crate::mm::stack::GrowError;
use crate::records::g::{G, GKind, OFF_KIND, STACK_COUNT, STACK_GUARD, STACK_PREEMPT};
use crate::records::percpu::{OFF_CURG, this_cpu};
use crate::records::switch::gogo;

// The hook. Register contract: called (plain C ABI, no arguments) by every instrumented
// function after its prologue; may clobber rax, rcx, rdx, rsi, rdi, r8-r11 and flags; keeps
// rbx, rbp, r12-r15; `rsp` on entry is the caller's frame bottom minus 8 (the return address).
//
// With the `always-preempt` feature the hook first counts the prologue of a thread (never of
// g0 or a handler context) and, when the count reaches the thread's next forced point
// (`sched::explore`: every prologue, a random one, or a listed one), poisons the guard unless it
// is already poisoned, like Go's `mayMoreStackPreempt`: that prologue enters the slow path and
// may switch. Also clobbers rcx.
#[cfg(not(feature = "always-preempt"))]
core::arch::global_asm!(
    ".section .text.mcount, \"ax\"",
    ".global mcount",
    "mcount:",
    "    mov rax, gs:[{curg}]",
    "    cmp rsp, [rax]",
    "    jb {morestack}",
    "    ret",
    curg = const OFF_CURG,
    morestack = sym morestack,
);

#[cfg(feature = "always-preempt")]
core::arch::global_asm!(
    ".section .text.mcount, \"ax\"",
    ".global mcount",
    "mcount:",
    "    mov rax, gs:[{curg}]",
    // LAB 2 BEGIN: count a thread's prologue (never g0's or a handler's); at its next forced point its guard, unless already poisoned, becomes STACK_PREEMPT
    // LAB 2 STUB: // (none yet: without these instructions the always-preempt hook is the plain check)
    "    cmp byte ptr [rax + {kind}], {thread}",
    "    jne 1f",
    "    inc qword ptr [rax + {prologues}]",
    "    mov rcx, [rax + {prologues}]",
    "    cmp rcx, [rax + {next_forced}]",
    "    jb 1f",
    "    cmp qword ptr [rax], {poison_min}",
    "    jae 1f",
    "    mov qword ptr [rax], {preempt}",
    // LAB 2 END
    "1:  cmp rsp, [rax]",
    "    jb {morestack}",
    "    ret",
    curg = const OFF_CURG,
    // LAB 2 BEGIN: the constants the forced preemption uses
    // LAB 2 STUB: // (none yet: name here the constants your instructions use)
    kind = const OFF_KIND,
    thread = const GKind::Thread as u8,
    prologues = const crate::records::g::OFF_PROLOGUES,
    next_forced = const crate::records::g::OFF_NEXT_FORCED,
    poison_min = const crate::records::g::STACK_POISON_MIN as i64 as i32,
    preempt = const STACK_PREEMPT as i64 as i32,
    // LAB 2 END
    morestack = sym morestack,
);

/// The slow path's entry, jumped to from the hook.
///
/// Register contract: `rax` = curg; `[rsp]` = the hook's return address into the instrumented
/// function; caller-saved registers are free. For a thread this is exactly an `mcall(newstack)`
/// made from the hook's position: `mcall` saves the thread's context (resuming it later returns
/// into the function body) and calls `newstack(g)` on g0. For any other context: disables the
/// check (`curg` = a check-free record) and reports a fatal overflow.
#[unsafe(naked)]
unsafe extern "C" fn morestack() {
    core::arch::naked_asm!(
        "cmp byte ptr [rax + {kind}], {thread}",
        "jne 2f",
        "lea rdi, [rip + {newstack}]",
        "jmp {mcall}",
        // Not a thread: g0, interrupt or critical context overflowed. Stay on this stack (the
        // guard zone is left) but turn the check off before any Rust runs.
        "2:",
        "cli",
        "mov rdi, rax",
        "mov rsi, rsp",
        "mov rdx, rbp",
        "mov rcx, [rsp]",
        "call {system_overflow}",
        "ud2",
        kind = const OFF_KIND,
        thread = const GKind::Thread as u8,
        newstack = sym newstack,
        mcall = sym crate::records::switch::mcall,
        system_overflow = sym system_overflow_entry,
    )
}

/// Turns the check off for a fatal report of a system-stack overflow, then reports.
///
/// Register contract: `rdi` = the overflowed context, `rsi` = its `rsp`, `rdx` = its `rbp`,
/// `rcx` = the return address into the overflowing function. Never returns.
#[unsafe(naked)]
unsafe extern "C" fn system_overflow_entry(g: &G, rsp: usize, rbp: usize, rip: usize) -> ! {
    core::arch::naked_asm!(
        "lea rax, [rip + {gfatal}]",
        "mov gs:[{curg}], rax",
        "jmp {report}",
        gfatal = sym SYSTEM_OVERFLOW_G,
        curg = const OFF_CURG,
        report = sym system_overflow,
    )
}

/// The context a system-stack overflow is reported in until the fatal path switches stacks
/// (checks disabled: `stackguard0` = 0).
static SYSTEM_OVERFLOW_G: G = G::system(GKind::Critical);

extern "C" fn system_overflow(g: &G, rsp: usize, rbp: usize, rip: usize) -> ! {
    let (lo, hi) = g.stack_bounds();
    let which = match g.kind {
        GKind::Scheduler => "the scheduler stack (g0)",
        GKind::Interrupt => "the interrupt stack",
        _ => "a critical-handler stack",
    };
    crate::fatal::fatal_with_trace(
        format_args!(
            "stack overflow on {which} of CPU {}: rsp {rsp:#x}, stack {lo:#x}..{hi:#x}, guard {:#x}",
            crate::records::percpu::this_cpu_unchecked().id,
            lo + STACK_GUARD
        ),
        &Backtrace::from_frame(rip.saturating_sub(1), rbp, lo, hi),
    )
}

/// The slow path, on g0 with interrupts disabled; `g` is the thread whose check failed, its
/// context saved. Ends by resuming `g` or by scheduling another thread.
extern "C" fn newstack(g: &'static G) -> ! {
    let cpu = this_cpu();
    cpu.counters.morestack.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `g` is switched out (its context was just saved) and we are its CPU's g0.
    let ctx = unsafe { g.context() };
    let sp = ctx.rsp;
    let (lo, hi) = g.stack_bounds();
    g.stack_peak.fetch_max(hi - sp, Ordering::Relaxed);

    // 1. Overflow, judged against the real bound whatever stackguard0 holds. Growth may have
    // to wait (`NotNow`: the thread holds the frame allocator's lock); it then runs on in its
    // guard zone and the next check after the release grows the stack.
    if sp < lo + STACK_GUARD {
        // LAB 4 BEGIN: the saved stack pointer is in the guard zone: grow the stack, or report the overflow
        // LAB 4 STUB: // lab 4: the slow path does not grow stacks yet
        match crate::mm::stack::grow(g, sp) {
            Ok(()) | Err(GrowError::NotNow) => {}
            Err(GrowError::ReservationExhausted) => overflow(g, sp, ctx.interrupts_enabled(), "reservation used up"),
            Err(GrowError::OutOfFrames) => overflow(g, sp, ctx.interrupts_enabled(), "no memory to grow the stack"),
        }
        // LAB 4 END
    } else if g.overflow_pending.load(Ordering::Relaxed) {
        // A deferred overflow that resolved itself: the thread came back above its guard.
        g.overflow_pending.store(false, Ordering::Relaxed);
    }

    // 2. Requests.
    let guard = g.stackguard0.load(Ordering::Relaxed);
    if guard == STACK_COUNT {
        cpu.counters.hook_counted.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `g` is ready to resume (context saved, state Running).
        unsafe { gogo(g) };
    }
    // SAFETY: `sp` points at the hook's return address, inside the thread's mapped stack.
    let rip = unsafe { *(sp as *const usize) };
    if cfg!(feature = "always-preempt")
        && g.explore.prologues.load(Ordering::Relaxed) >= g.explore.next_forced.load(Ordering::Relaxed)
    {
        // A forced point (the hook's poison, or one found under another request).
        // SAFETY: the thread's frame pointer points at its saved rbp and return address.
        let caller = unsafe { *((ctx.rbp + 8) as *const usize) };
        let preemptible = if crate::planted::is(crate::planted::Bug::CoopPreemptSpinlock) {
            g.is_thread() && ctx.interrupts_enabled() // planted: the lock depth is not asked
        } else {
            g.preemptible(ctx.interrupts_enabled())
        };
        if let crate::sched::explore::Decision::Preempt =
            crate::sched::explore::at_forced_point(cpu, g, preemptible, rip, caller)
        {
            crate::sched::preempt::preempt_at_prologue(cpu, g, rip, crate::trace::Stop::PreemptForced);
        }
        if !g.preempt.load(Ordering::Relaxed) {
            g.stackguard0.store(g.real_guard(), Ordering::Relaxed);
            // SAFETY: as below.
            unsafe { gogo(g) };
        }
    }
    if g.preempt.load(Ordering::Relaxed) || guard == STACK_PREEMPT {
        crate::sched::preempt::at_prologue(cpu, g, ctx.interrupts_enabled(), rip);
    }
    // SAFETY: as above.
    unsafe { gogo(g) }
}

/// The thread crossed the end of its stack reservation (or its stack cannot grow). If it may die
/// alone, report and kill it. If not (it holds a spin lock, or runs with interrupts disabled: what
/// it is doing may be half-done), defer: it runs on in its guard zone and the overflow is judged
/// again at the first check where it may die (`sched::death`).
fn overflow(g: &'static G, sp: usize, interrupts_enabled: bool, why: &str) {
    if crate::sched::death::may_die_alone(g, interrupts_enabled).is_err() {
        if !g.overflow_pending.swap(true, Ordering::Relaxed) {
            this_cpu().counters.overflows_deferred.fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    // SAFETY: `g` is switched out; we are its CPU's g0.
    let ctx = unsafe { g.context() };
    let (lo, hi) = g.stack_bounds();
    // SAFETY: `sp` points at the hook's return address, inside the thread's mapped stack.
    let rip = unsafe { *(sp as *const usize) };
    let trace = Backtrace::from_frame(rip - 1, ctx.rbp, lo, hi);
    let deferred = if g.overflow_pending.load(Ordering::Relaxed) { "; deferred until it could die alone" } else { "" };
    crate::sched::death::report_overflow(g, sp, format_args!("the prologue check: {why}{deferred}"), &trace);
    crate::sched::thread::kill_on_g0(
        g,
        crate::sched::thread::Death::StackOverflow { rsp: sp as u64, lo: lo as u64, hi: hi as u64 },
    )
}

/// Arms count mode on the current thread: until `count_stop`, every prologue enters the slow
/// path and is counted in `CpuCounters::hook_counted`. Inline (no prologue of its own).
#[inline(always)]
pub fn count_start() {
    crate::records::percpu::current().stackguard0.store(STACK_COUNT, Ordering::Relaxed);
}

/// Disarms count mode. Inline (no prologue of its own).
#[inline(always)]
pub fn count_stop() {
    let g = crate::records::percpu::current();
    g.stackguard0.store(g.real_guard(), Ordering::Relaxed);
}

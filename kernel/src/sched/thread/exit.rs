//! How a thread ends: normally (`exit_now`, after its result is stored), of a death it reports
//! itself (a panic: `exit_dead`), killed from a trap (`kill_from_trap`, which redirects the
//! interrupted thread into its own exit path) or on g0 (a stack overflow: `kill_on_g0`). Every
//! way runs the thread's death hooks first and ends in `exit_m` on g0.

use super::free_list::release;
use crate::mm::stack;
use crate::records::exit::Death;
use crate::records::g::{G, GState};
use crate::records::percpu::current;
use crate::records::switch::mcall;
use crate::records::trap_entry::TrapFrame;

/// Ends the current thread normally (its result is stored).
#[inline(always)]
pub(super) fn exit_now() -> ! {
    // SAFETY: called by a thread; `exit_m` never returns.
    unsafe { mcall(exit_m) };
    unreachable!("a dead thread was resumed")
}

/// Ends the current thread with `death` (panic path): its death hooks, then its exit.
pub fn exit_dead(death: Death) -> ! {
    let g = current();
    crate::sched::death::run_death_hooks(g);
    record_death(g, death);
    exit_now()
}

/// Keeps `death` for `g`'s join handle (and notes it in the trace).
fn record_death(g: &G, death: Death) {
    let how = match death {
        Death::Panic(_) => crate::trace::DeathKind::Panic,
        Death::Fault { .. } => crate::trace::DeathKind::Fault,
        Death::StackOverflow { .. } => crate::trace::DeathKind::StackOverflow,
    };
    crate::trace::died(g, how);
    g.exit.inner.lock().death = Some(death);
}

/// Where a thread killed by a trap resumes (see `kill_from_trap`).
pub extern "C" fn exit_after_trap() -> ! {
    exit_now()
}

/// Where a thread killed by an exception resumes: the trap handler pointed the interrupt
/// return here, with `rsp` near the top of the thread's own stack, so that the thread can run
/// its normal exit path (`exit_after_trap`, above).
///
/// Register contract: `curg` is the dying thread; interrupts enabled; registers are garbage.
#[unsafe(naked)]
unsafe extern "C" fn thread_trap_exit() -> ! {
    core::arch::naked_asm!(
        "xor ebp, ebp",
        "and rsp, -16",
        "call {exit}",
        "ud2",
        exit = sym exit_after_trap,
    )
}

/// Kills the thread that `frame` interrupted: records `death`, and makes the interrupt return
/// into `thread_trap_exit` near the top of the thread's stack, so it runs its exit path.
pub fn kill_from_trap(frame: &mut TrapFrame, death: Death) {
    let g = frame.interrupted();
    debug_assert!(g.is_thread());
    // Here, in the exception handler, the thread's stack is still as it was (its hooks intact),
    // and the thread may die alone: nothing is half-changed for the hooks to trip over.
    crate::sched::death::run_death_hooks(g);
    record_death(g, death);
    let (_, hi) = g.stack_bounds();
    frame.rsp = (hi - 256) as u64;
    frame.rbp = 0;
    frame.rip = thread_trap_exit as *const () as u64;
}

/// Kills switched-out thread `g` from g0 (stack-overflow path).
pub fn kill_on_g0(g: &'static G, death: Death) -> ! {
    crate::sched::death::run_death_hooks(g);
    record_death(g, death);
    exit_m(g)
}

/// The end of every thread, on g0: free the stack, wake the joiner, drop the thread's
/// reference, schedule.
extern "C" fn exit_m(g: &'static G) -> ! {
    crate::sched::schedule::check_locks_at_switch(g, 0, "exit");
    g.transition(GState::Running, GState::Dead);
    crate::sched::explore::digest::stopped(crate::records::percpu::this_cpu(), g, crate::trace::Stop::Exit);
    if let Some(stack) = g.stack.take() {
        stack::free(stack);
    }
    g.bind_stack(0, 0);
    let joiner = {
        let mut inner = g.exit.inner.lock();
        inner.done = true;
        core::mem::replace(&mut inner.joiner, core::ptr::null())
    };
    // Drop the thread's own reference before waking the joiner: once awake (maybe on another
    // CPU) the joiner may check that every thread record is back where it belongs.
    release(g);
    if !joiner.is_null() {
        // SAFETY: a joiner stays parked (alive) until readied here.
        crate::sched::queue::ready(unsafe { &*joiner });
    }
    crate::sched::schedule::schedule()
}

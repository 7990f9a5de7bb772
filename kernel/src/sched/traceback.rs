//! Tracebacks of every thread (Go's `GOTRACEBACK=all`): for each live thread its id, name,
//! state, what it waits on (the wait reason, the object, and for a mutex its holder), its CPU,
//! and its stack, walked through the frame pointers from the context it saved when it stopped.
//! The runner symbolizes the frames. Printed by a fatal report (after its own report), by a
//! deadlock report, by a watchdog timeout, by a failed stress run and by the shell's `bt`.
//!
//! A running thread has no saved context: it is shown without a stack (its CPU is named; the
//! thread that prints has its own stack printed by the report above it, and in `bt`, here).
//! Outside a fatal report the other threads keep running while they are printed: a thread's
//! state is read again after its stack, and a stack that changed meanwhile is marked so.

use core::sync::atomic::Ordering;

use crate::fatal::backtrace::Backtrace;
use crate::records::g::{G, GState};
use crate::records::percpu::current;
use crate::sched::thread::free_list;

/// Threads printed with their stacks; the others get their first line only.
const MAX_STACKS: usize = 64;
/// Threads printed at all.
const MAX_THREADS: usize = 1000;

/// Prints every live thread, while the others run (the shell's `bt`, a failed stress run).
pub fn print_all() {
    let mut n = 0;
    free_list::for_each_thread(|g| print_numbered(g, &mut n));
    print_tail(n);
}

/// Prints every live thread from a fatal report, with the other CPUs stopped (registered with
/// `fatal::set_threads_report` at boot).
pub fn print_all_stopped() {
    let mut n = 0;
    // SAFETY: a fatal report calls this after stopping every other CPU.
    unsafe { free_list::for_each_thread_stopped(|g| print_numbered(g, &mut n)) };
    print_tail(n);
}

fn print_numbered(g: &'static G, n: &mut usize) {
    *n += 1;
    if *n == 1 {
        crate::println!("threads:");
    }
    if *n <= MAX_THREADS {
        print_thread(g, *n <= MAX_STACKS);
    }
}

fn print_tail(n: usize) {
    if n > MAX_THREADS {
        crate::println!("... and {} more threads", n - MAX_THREADS);
    } else if n > MAX_STACKS {
        crate::println!("(stacks shown for the first {MAX_STACKS} of {n} threads)");
    }
}

/// The state of `g` in words, with what it waits on.
pub struct StateLine<'a>(pub &'a G);

impl core::fmt::Display for StateLine<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let g = self.0;
        let cpu = g.last_cpu.load(Ordering::Relaxed);
        match g.state() {
            GState::Running => write!(f, "running on CPU {cpu}"),
            GState::Runnable => write!(f, "runnable (last on CPU {cpu})"),
            GState::Dead => write!(f, "dead, not yet joined"),
            GState::Idle => write!(f, "free"),
            GState::Waiting => {
                // SAFETY: a parked thread's `park_lock` was written before it parked and is not
                // written again until it runs; it is only printed here, never dereferenced.
                let object = unsafe { *g.park_lock.get() };
                write!(f, "waiting: {} on {:p}", g.wait_reason.get().as_str(), object)?;
                if let Some(holder) = mutex_holder(g) {
                    write!(f, ", held by {holder}")?;
                }
                write!(f, " (last on CPU {cpu})")
            }
        }
    }
}

/// The holder of the mutex `g` is parked on, if it waits on one and the holder is known.
pub fn mutex_holder(g: &G) -> Option<&'static G> {
    let owner = g.wait_owner.load(Ordering::Acquire);
    if owner.is_null() {
        return None;
    }
    // SAFETY: `wait_owner` points at the owner field of a mutex that `g` is parked on; a parked
    // thread's mutex outlives its wait (it is borrowed by the waiting `lock` call).
    let holder = unsafe { (*owner).load(Ordering::Acquire) };
    // SAFETY: a mutex's owner field holds a thread record or null; records are never freed while
    // a thread holds a mutex (and a dead holder's is checked with `is_live_record`).
    let holder = unsafe { holder.as_ref()? };
    holder.is_live_record().then_some(holder)
}

/// Prints `g`'s first line, and (`with_stack`) its stack from its saved context.
pub fn print_thread(g: &'static G, with_stack: bool) {
    crate::println!("{}: {}", g, StateLine(g));
    if !with_stack {
        return;
    }
    if core::ptr::eq(g, current()) {
        crate::fatal::backtrace::here().print();
        return;
    }
    let before = g.state();
    if !matches!(before, GState::Waiting | GState::Runnable) {
        return;
    }
    let Some(trace) = saved_backtrace(g) else {
        crate::println!("  (no saved stack)");
        return;
    };
    trace.print();
    if g.state() != before {
        crate::println!("  (the thread ran while this was printed: the stack above may be stale)");
    }
}

/// The backtrace of switched-out thread `g` from its saved context: `mcall` saved its stack
/// pointer pointing at the return address into the thread's code, and its frame pointer.
fn saved_backtrace(g: &G) -> Option<Backtrace> {
    // SAFETY: read only (a copy); the context of a thread that is not running is stable, and a
    // stale copy is harmless because every address is checked against the stack bounds below.
    let ctx = unsafe { *g.ctx.get() };
    let (lo, hi) = g.stack_bounds();
    if ctx.rsp < lo || ctx.rsp + 8 > hi || ctx.rsp % 8 != 0 {
        return None;
    }
    // SAFETY: `ctx.rsp` lies inside the thread's mapped stack (checked above).
    let rip = unsafe { *(ctx.rsp as *const usize) };
    Some(Backtrace::from_frame(rip.saturating_sub(1), ctx.rbp, lo, hi))
}

//! Helpers for tests that need a thread in an unusual place: at the very end of its stack, or
//! stuck where a bug would leave it.
//!
//! `at_stack_end` recurses until the stack pointer is just above the lowest address a prologue
//! check accepts (the reservation's base plus the guard zone), then runs its closure there, in
//! the last frame: any non-inlined call the closure makes past that point overflows. Tests use it
//! to check that a protocol's second half does not need the caller's stack.
//!
//! `finishes_within` waits (sleeping) for a thread to finish, so that a test can fail with a
//! clear message where a bug would leave a thread stuck for ever, instead of hanging the suite.

use core::hint::black_box;
use core::time::Duration;

use crate::sched::JoinHandle;

/// Recurses until the stack pointer is at most `margin` bytes above the lowest stack pointer a
/// prologue check of this thread accepts, then runs `f` in that frame.
pub fn at_stack_end<R>(margin: usize, f: impl FnOnce() -> R) -> R {
    let g = crate::sched::percpu::current();
    let floor = crate::mm::stack::reserved_lo(g) + crate::sched::stackguard::STACK_GUARD;
    descend(floor + margin, f)
}

/// One level of `at_stack_end`'s recursion (a small frame: the step between two checks is
/// small, so the last frame lands close to the target).
#[inline(never)]
fn descend<R, F: FnOnce() -> R>(target: usize, f: F) -> R {
    let pad = black_box([0u64; 2]);
    if crate::arch::cpu::read_rsp() <= target {
        return f();
    }
    let r = descend(target, f);
    black_box(pad);
    r
}

/// Waits up to `limit` for `thread` to finish; true if it did.
pub fn finishes_within<T>(thread: &JoinHandle<T>, limit: Duration) -> bool {
    let deadline = crate::time::now() + limit;
    while crate::time::now() < deadline {
        if thread.is_finished() {
            return true;
        }
        crate::sched::sleep(Duration::from_millis(5));
    }
    thread.is_finished()
}

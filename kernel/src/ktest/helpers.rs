//! Helpers for tests that need a thread in an unusual place: at the very end of its stack, or
//! stuck where a bug would leave it.
//!
//! `at_stack_depth` recurses until the stack pointer is a chosen number of bytes above the lowest
//! address a prologue check accepts (the reservation's base plus the guard zone), then runs its
//! closure there, in the last frame: whatever the closure calls has only that much stack. Tests
//! scan such depths to check that a protocol never stops half-way for lack of stack.
//!
//! `finishes_within` waits (sleeping) for a thread to finish, so that a test can fail with a
//! clear message where a bug would leave a thread stuck for ever, instead of hanging the suite.
//!
//! `under_strategy` runs a closure under another forced-preemption strategy, and
//! `without_preemption` with no preemption at all; both put the boot's choice back after it.

use core::hint::black_box;
use core::time::Duration;

use crate::sched::JoinHandle;
use crate::sched::explore::{self, Strategy};
use crate::sched::preempt::{self, Mode};

/// Recurses until the stack pointer is at most `above` bytes above the lowest stack pointer a
/// prologue check of this thread accepts (the reservation's base plus the guard zone), then runs
/// `f` in that last frame. The recursion's step is small (about 48 bytes), so the last frame lands
/// within one step below the target. If the recursion itself is caught by the check (`above` is
/// smaller than one step), the thread dies of a stack overflow before `f` runs.
pub fn at_stack_depth<R>(above: usize, f: impl FnOnce() -> R) -> R {
    let g = crate::records::percpu::current();
    let floor = crate::mm::stack::reserved_lo(g) + crate::records::g::STACK_GUARD;
    descend(floor + above, f)
}

/// One level of `at_stack_depth`'s recursion.
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

/// Receives from `ch`, waiting up to `limit` (polling: it leaves no timer behind, which would hold
/// heap memory past the test and upset the next test's baseline).
pub fn recv_within<T>(ch: &crate::sync::Chan<T>, limit: Duration) -> Option<T> {
    let deadline = crate::time::now() + limit;
    loop {
        if let Ok(value) = ch.try_recv() {
            return value;
        }
        if crate::time::now() >= deadline {
            return None;
        }
        crate::sched::sleep(Duration::from_millis(1));
    }
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

/// Recurses until the stack pointer is at or below `target`, then calls `then`.
#[inline(never)]
fn recurse_down_to(target: usize, then: fn() -> u64) -> u64 {
    let pad = black_box([target as u64; 16]);
    if crate::arch::cpu::read_rsp() <= target { then() } else { recurse_down_to(target, then).wrapping_add(pad[3]) }
}

/// Uses `bytes` more of the stack by recursion, then calls `then` down there.
pub fn use_stack_then(bytes: usize, then: fn() -> u64) -> u64 {
    recurse_down_to(crate::arch::cpu::read_rsp() - bytes, then)
}

/// Uses `bytes` more of the stack by recursion, and comes back.
pub fn use_stack(bytes: usize) -> u64 {
    use_stack_then(bytes, || 1)
}

/// Touches a 64 KiB local array: the frame is far larger than the guard zone, so its pages are
/// probed top-down and a missing one is a page fault in the thread's own reservation.
#[inline(never)]
pub fn big_frame() -> u64 {
    let mut big = [0u8; 64 * 1024];
    for (i, b) in big.iter_mut().enumerate().step_by(512) {
        *b = i as u8;
    }
    black_box(&mut big);
    big.iter().map(|&b| u64::from(b)).sum()
}

/// Runs `f` under the forced-preemption strategy `with`, seeded `seed`, then puts the boot's
/// strategy back. (Outside the `always-preempt` build a strategy changes nothing.)
pub fn under_strategy<R>(with: Strategy, seed: u64, f: impl FnOnce() -> R) -> R {
    let before = explore::strategy();
    explore::configure(with, seed, false);
    let result = f();
    explore::configure(before, crate::cmdline().seed, crate::cmdline().record);
    result
}

/// Runs `f` with no preemption: the timer's off, and forced points (in the `always-preempt`
/// build) one prologue in 2^40, which is never in practice; then puts both back. For tests of
/// where threads go, which a preemption would change (a preempted thread goes to the global run
/// queue). Not under PCT, whose one CPU schedules by its own list.
pub fn without_preemption<R>(f: impl FnOnce() -> R) -> R {
    let mode = preempt::mode();
    preempt::set_mode(Mode::Off);
    let result = under_strategy(Strategy::Random { one_in: 1 << 40 }, 1, f);
    preempt::set_mode(mode);
    result
}

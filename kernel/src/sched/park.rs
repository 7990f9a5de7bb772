//! Blocking and giving way, for the running thread: `park` (Go's `gopark`, the one way to block:
//! under the lock of what it waits on, released on g0 once the thread is marked waiting),
//! `yield_now` (Go's `Gosched`) and `sleep`. Each switches to g0 with `mcall`; its `_m` half runs
//! there.

use core::sync::atomic::Ordering;
use core::time::Duration;

use crate::records::g::{G, GState, WaitReason};
use crate::records::percpu::{current, this_cpu};
use crate::records::spin::ParkUnlock;
use crate::records::switch::mcall;
use crate::records::timer_heap::Action;
use crate::sched::queue::runq_put;
use crate::sched::schedule::{check_locks_at_switch, schedule};
use crate::sched::timer;
use crate::trace::Stop;

/// Parks the current thread until someone calls `ready` on it (Go's `gopark`).
///
/// The caller holds `lock` (through a guard given up with `into_parked`, or `lock_raw`): the
/// lock of whatever the thread waits on. It is released on g0 after the thread is marked
/// Waiting, so whoever readies the thread (under that lock) finds it parked. The thread must
/// hold no other lock.
#[inline]
pub fn park<L: ParkUnlock>(reason: WaitReason, lock: &L) {
    let g = current();
    g.wait_reason.set(reason);
    // SAFETY: only `park_m::<L>`, for this same thread, reads the slot, while the caller still
    // holds the lock object alive (it is parked inside this call).
    unsafe { *g.park_lock.get() = lock as *const L as *const () };
    // SAFETY: called by a thread; it resumes here when readied.
    unsafe { mcall(park_m::<L>) };
}

extern "C" fn park_m<L: ParkUnlock>(g: &'static G) -> ! {
    // SAFETY: `park::<L>` stored a pointer to a live `L` for this thread just before the switch.
    let lock = unsafe { &*(*g.park_lock.get() as *const L) };
    // Settle the thread's lock count first: once the lock is released, another CPU may ready
    // and run the thread, which then owns its own count again. It held exactly the locks
    // being released here.
    check_locks_at_switch(g, lock.lock_count(), "park");
    g.locks.store(0, Ordering::Relaxed);
    g.parks.fetch_add(1, Ordering::Relaxed);
    g.transition(GState::Running, GState::Waiting);
    crate::sched::explore::digest::stopped(this_cpu(), g, Stop::Park);
    // SAFETY: the thread holds the lock through a forgotten guard, and it is parked now.
    unsafe { lock.unlock_parked(g) };
    schedule()
}

/// Lets other threads run; the current one goes to the back of this CPU's queue (Go's
/// `Gosched`).
pub fn yield_now() {
    // SAFETY: called by a thread.
    unsafe { mcall(yield_m) };
}

extern "C" fn yield_m(g: &'static G) -> ! {
    check_locks_at_switch(g, 0, "yield_now");
    g.transition(GState::Running, GState::Runnable);
    let cpu = this_cpu();
    crate::sched::explore::digest::stopped(cpu, g, Stop::Yield);
    if crate::sched::explore::pct_active() {
        crate::sched::explore::pct::yielded(g);
    }
    runq_put(cpu, g, false);
    schedule()
}

/// Puts the current thread to sleep for at least `duration`.
pub fn sleep(duration: core::time::Duration) {
    sleep_until(crate::time::now().saturating_add(duration));
}

/// Parks the current thread until `when` (time since boot).
pub fn sleep_until(when: Duration) {
    let g = current();
    // If the thread migrates between reading the CPU and taking the lock, the timer simply
    // lives on the CPU it left: it fires there and readies the thread wherever it is parked.
    let cpu = crate::records::percpu::this_cpu_unchecked();
    let mut heap = cpu.timers.lock();
    timer::add(cpu, &mut heap, when, Action::Wake(g));
    park(WaitReason::Sleep, heap.into_parked());
}

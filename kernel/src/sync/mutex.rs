//! A sleeping mutex: a short spin, then the waiter parks (Go's `sync.Mutex`, simplified).
//!
//! The state word is 0 (unlocked), 1 (locked) or 2 (locked, and threads may be parked). Lock
//! and unlock are a single atomic instruction each when uncontended, inlined into the caller.
//! A contended locker spins briefly, then sets the word to 2 under the wait-queue lock and
//! parks; an unlocker that finds 2 takes the wait-queue lock, unlocks and readies one waiter
//! (which tries again) before releasing it -- one critical section, so the unlocker can never
//! stop between the two (`sync::wake_tests`). (A thread holding this mutex can be preempted and
//! can park: unlike a spin lock it does not raise the non-preemptible depth.)
//!
//! The mutex also records its holder (`owner`, set once the lock is taken, cleared before it is
//! let go), and a thread that parks on it publishes where that record is (`G::wait_owner`): the
//! wait-for graph in which `sched::deadlock` finds cycles, and the "held by" of tracebacks.
//!
//! Invariant: if any thread is parked in `waiters`, the state is 2 or a wake-up is on its way.
//! `owner` is the holder or null (never a former holder). A thread that dies holding the mutex
//! leaves it locked (there is no unwinding).

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use crate::records::g::{G, WaitReason};
use crate::records::percpu::current;
use crate::records::spin::{Rank, SpinLock};
use crate::sync::waitq::{WaitNode, WaitQueue};

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

/// Spins before parking.
const SPINS: u32 = 64;

pub struct Mutex<T> {
    state: AtomicU32,
    /// The holder, once it has taken the lock (null while free or just taken).
    owner: AtomicPtr<G>,
    waiters: SpinLock<WaitQueue>,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex gives one thread at a time access to the data.
unsafe impl<T: Send> Sync for Mutex<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Mutex<T> {}

#[must_use]
pub struct MutexGuard<'a, T> {
    mutex: &'a Mutex<T>,
}

impl<T> Mutex<T> {
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            state: AtomicU32::new(UNLOCKED),
            owner: AtomicPtr::new(core::ptr::null_mut()),
            waiters: SpinLock::new(Rank::Object, WaitQueue::new()),
            data: UnsafeCell::new(value),
        }
    }

    /// Locks the mutex, parking while another thread holds it.
    #[inline(always)]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        if self.state.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.lock_slow();
        }
        self.owner.store(current() as *const G as *mut G, Ordering::Relaxed);
        MutexGuard { mutex: self }
    }

    #[inline(never)]
    fn lock_slow(&self) {
        for _ in 0..SPINS {
            if self.state.load(Ordering::Relaxed) == UNLOCKED
                && self.state.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                return;
            }
            crate::arch::cpu::relax();
        }
        loop {
            // Planted bug `mutex-park-unlocked`: the waiter is announced before the lock is taken.
            let announced_unlocked = crate::planted::is(crate::planted::Bug::MutexParkUnlocked);
            if announced_unlocked && self.state.swap(CONTENDED, Ordering::Acquire) == UNLOCKED {
                return;
            }
            let mut waiters = self.waiters.lock();
            // Announce a waiter; if the mutex was free meanwhile, we own it (marked contended,
            // which costs at most one needless wake-up).
            if !announced_unlocked && self.state.swap(CONTENDED, Ordering::Acquire) == UNLOCKED {
                return;
            }
            let me = current();
            // Say whom we wait for, then look for a cycle of waits through us (`ready` clears it).
            me.wait_owner.store(&self.owner as *const AtomicPtr<G> as *mut AtomicPtr<G>, Ordering::SeqCst);
            crate::sched::deadlock::check_mutex_cycle(me);
            let node = WaitNode::new(me);
            waiters.push(&node);
            crate::sched::park(WaitReason::MutexLock, waiters.into_parked());
        }
    }

    /// Is the mutex held? (For tests.)
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Acquire) != UNLOCKED
    }

    /// Unlocks the mutex on behalf of a holder that died holding it (Prologue has no unwinding,
    /// so a dead holder never unlocks).
    ///
    /// # Safety
    /// The holder's guard must never be used again: its thread is dead. For tests.
    pub unsafe fn unlock_for_dead_holder(&self) {
        self.unlock();
    }

    /// Are threads parked waiting for the mutex? (For tests.)
    pub fn has_waiters(&self) -> bool {
        !self.waiters.lock().is_empty()
    }

    #[inline(always)]
    fn unlock(&self) {
        self.owner.store(core::ptr::null_mut(), Ordering::Relaxed);
        if crate::planted::is(crate::planted::Bug::MutexUnlockEarlyCheck) {
            // Planted: "any waiters?" is read before the release, which is a separate store.
            let contended = self.state.load(Ordering::Relaxed) == CONTENDED;
            self.state.store(UNLOCKED, Ordering::Release);
            if contended {
                self.wake_one();
            }
            return;
        }
        if self.state.compare_exchange(LOCKED, UNLOCKED, Ordering::Release, Ordering::Relaxed).is_err() {
            self.unlock_contended();
        }
    }

    /// Unlocks a mutex that may have parked waiters, and readies one, under the wait-queue lock.
    #[inline(never)]
    fn unlock_contended(&self) {
        let mut waiters = self.waiters.lock();
        self.state.store(UNLOCKED, Ordering::Release);
        if let Some(g) = waiters.pop() {
            crate::sched::ready(g);
        }
    }

    /// Readies one waiter, if any (only for the planted `mutex-unlock-early-check`).
    #[cold]
    fn wake_one(&self) {
        if let Some(g) = self.waiters.lock().pop() {
            crate::sched::ready(g);
        }
    }
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the mutex is held.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, exclusively.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}

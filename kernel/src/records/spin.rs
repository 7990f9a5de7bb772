//! Kernel spin locks that make their holder non-preemptible.
//!
//! A thread spinning on a lock makes no calls, so it never reaches a prologue and can never be
//! preempted cooperatively; if the holder were preempted, the spinner would spin for its whole
//! time slice (or forever, on one CPU). So, as in Go (`m.locks`), taking a spin lock raises the
//! holder's non-preemptible depth (`G::locks`, `G::raise_lock_depth`) and releasing the last one
//! re-arms any preemption request that arrived meanwhile (`G::lower_lock_depth`).
//!
//! Two kinds:
//! - `SpinLock<T>`: for data never touched by interrupt handlers. Taking it in a handler is a
//!   bug (the handler could spin on a lock its own interrupted thread holds), caught in debug
//!   builds. Exception handlers (page faults) may take one that the faulting code cannot be
//!   holding at that point (the frame allocator's lock is checked with `frame::held_by`).
//! - `IrqSpinLock<T>`: also disables interrupts while held, so handlers may take it too. Rule
//!   (checked by review): any lock a handler takes is an `IrqSpinLock` everywhere.
//!
//! Every lock has a place in the lock order (`records::lockrank::Rank`), checked in debug builds.
//! A lock is never held across `park`, except the one `park` itself releases on g0.
//!
//! `SpinLock::lock` is never inlined: its prologue is a scheduling point for the prologue
//! strategies of the forced-preemption build (`sched::explore`), just before a thread takes a lock
//! with it -- where the race windows of check-then-lock mistakes end (a check under one hold of a
//! lock, the action under the next). Whether such a window holds a call must not depend on what
//! the inliner decides this week. (`select!`'s `lock_raw`, which takes several locks at once, has
//! no such point of its own.)

use core::ops::{Deref, DerefMut};

use crate::arch::cpu::IrqGuard;
use crate::records::g::G;
pub use crate::records::lockrank::Rank;
use crate::records::lockrank::{rank_acquire, rank_release};
use crate::records::percpu::current;

/// A spin lock that raises the holder's non-preemptible depth.
pub struct SpinLock<T> {
    inner: spin::mutex::SpinMutex<T>,
    rank: Rank,
}

/// Proof that a `SpinLock` is held; releases it when dropped. Not `Send`: it must be released
/// on the CPU that took it.
#[must_use]
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    _not_send: core::marker::PhantomData<*const ()>,
}

impl<T> SpinLock<T> {
    /// A lock of `rank` in the lock order, around `value`.
    pub const fn new(rank: Rank, value: T) -> SpinLock<T> {
        SpinLock { inner: spin::mutex::SpinMutex::new(value), rank }
    }

    /// Takes the lock, spinning until it is free. (Never inlined: see the module comment.)
    #[inline(never)]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        debug_assert!(
            !crate::records::percpu::in_irq_here(),
            "SpinLock taken in an interrupt handler: use IrqSpinLock for data handlers touch"
        );
        self.lock_raw();
        SpinGuard { lock: self, _not_send: core::marker::PhantomData }
    }

    /// Takes the lock without a guard (for `select!`, which holds several locks at once and
    /// releases them with `unlock_raw` or through `park`).
    #[inline]
    pub fn lock_raw(&self) {
        let g = current();
        g.raise_lock_depth();
        rank_acquire(g, self.rank, self as *const Self as usize);
        core::mem::forget(self.inner.lock());
    }

    /// Releases a lock taken with `lock_raw`.
    ///
    /// # Safety
    /// The caller took it with `lock_raw` and has not released it.
    #[inline]
    pub unsafe fn unlock_raw(&self) {
        // Unlock first, then allow preemption: never be preempted while still holding it.
        // SAFETY: by the contract the caller holds the lock without a guard.
        unsafe { self.inner.force_unlock() };
        let g = current();
        rank_release(g, self.rank);
        g.lower_lock_depth();
    }

    /// The protected data, for a holder of a raw lock.
    ///
    /// # Safety
    /// The caller holds the lock (taken with `lock_raw`) and no other reference to the data.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn data_raw(&self) -> &mut T {
        // SAFETY: by the contract access is exclusive.
        unsafe { &mut *self.inner.as_mut_ptr() }
    }

    /// Settles parked thread `owner`'s count of this lock, which g0 is about to release for it
    /// (`release_for_parked`). Must come before the release: once the lock is free, the owner may
    /// run again on another CPU, and then only the owner may touch its counts.
    pub fn settle_parked_rank(&self, owner: &G) {
        rank_release(owner, self.rank);
    }

    /// Releases the lock for a parked thread, whose counts are settled already.
    ///
    /// # Safety
    /// The parked thread holds the lock without a guard, and `settle_parked_rank` ran.
    pub unsafe fn release_for_parked(&self) {
        // SAFETY: by the contract.
        unsafe { self.inner.force_unlock() };
    }

    /// Releases the lock without a guard.
    ///
    /// # Safety
    /// Only for fatal reports: the holder must never run again.
    pub unsafe fn force_unlock(&self) {
        // SAFETY: by the caller's contract nobody uses the guard it held.
        unsafe { self.inner.force_unlock() }
    }
}

impl<'a, T> SpinGuard<'a, T> {
    /// Gives up the guard but keeps the lock held, for `sched::park`, which releases it on g0
    /// (with `ParkUnlock::unlock_parked`) after the thread is marked waiting.
    pub fn into_parked(self) -> &'a SpinLock<T> {
        let lock = self.lock;
        core::mem::forget(self);
        lock
    }
}

/// Locks that `sched::park` can release on g0 on behalf of the parked thread.
pub trait ParkUnlock {
    /// How many spin locks `unlock_parked` releases (the parked thread's `locks` count drops by
    /// this much -- before the release, since the thread may run again right after it).
    fn lock_count(&self) -> u32;

    /// Releases the lock(s) that parked thread `owner` held (their guards given up with
    /// `into_parked` or `lock_raw`), and `owner`'s count of them -- the count before each lock:
    /// the owner may run again as soon as a lock it waits on is free.
    ///
    /// # Safety
    /// The locks must be held by `owner` without live guards, and `owner` must be parked.
    unsafe fn unlock_parked(&self, owner: &G);
}

impl<T> ParkUnlock for SpinLock<T> {
    #[inline]
    fn lock_count(&self) -> u32 {
        1
    }

    #[inline]
    unsafe fn unlock_parked(&self, owner: &G) {
        self.settle_parked_rank(owner);
        // SAFETY: by the contract the lock is held and its guard is gone; the count is settled.
        unsafe { self.release_for_parked() };
    }
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held, so nobody else touches the data.
        unsafe { &*self.lock.inner.as_mut_ptr() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and the guard is borrowed mutably.
        unsafe { &mut *self.lock.inner.as_mut_ptr() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: the guard is dropped exactly once, here, and held the lock.
        unsafe { self.lock.unlock_raw() };
    }
}

/// A spin lock that also disables interrupts while held.
pub struct IrqSpinLock<T> {
    lock: SpinLock<T>,
}

#[must_use]
pub struct IrqSpinGuard<'a, T> {
    // Field order matters: the lock is released before interrupts are re-enabled.
    guard: SpinGuard<'a, T>,
    _irq: IrqGuard,
}

impl<T> IrqSpinLock<T> {
    pub const fn new(rank: Rank, value: T) -> IrqSpinLock<T> {
        IrqSpinLock { lock: SpinLock::new(rank, value) }
    }

    #[inline]
    pub fn lock(&self) -> IrqSpinGuard<'_, T> {
        let irq = IrqGuard::new();
        self.lock.lock_raw();
        IrqSpinGuard { guard: SpinGuard { lock: &self.lock, _not_send: core::marker::PhantomData }, _irq: irq }
    }

    /// # Safety
    /// As `SpinLock::force_unlock`.
    pub unsafe fn force_unlock(&self) {
        // SAFETY: forwarded contract.
        unsafe { self.lock.force_unlock() }
    }
}

impl<T> Deref for IrqSpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for IrqSpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

//! Joining a thread: its `JoinHandle`, and the result the thread leaves in its record for the
//! handle (inline in the `G` when it fits, boxed otherwise).
//!
//! The result is a race between the thread (storing it as it finishes) and its handle (joined or
//! dropped, at any time), decided by one compare-and-swap on `ExitState::result_state`: a result
//! stored before the handle is dropped is dropped by the handle's owner; a handle dropped first
//! makes the thread drop its own result. Either way the drop runs in a thread, which may block --
//! never on g0, which must not.

use alloc::boxed::Box;
use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::sync::atomic::Ordering;

use super::free_list::release;
use crate::records::exit::Death;
use crate::records::exit::{RESULT_DETACHED, RESULT_EMPTY, RESULT_STORED, RESULT_WORDS};
use crate::records::g::{G, WaitReason};
use crate::records::percpu::current;

/// Does `T` fit in the inline result slot?
const fn inline_result<T>() -> bool {
    size_of::<T>() <= RESULT_WORDS * 8 && align_of::<T>() <= 8
}

/// Stores the thread's result for its handle, or drops it here if the handle is gone (called on
/// the thread, before it exits).
pub(super) fn store_result<T>(g: &G, value: T) {
    if g.exit.result_state.load(Ordering::Acquire) == RESULT_DETACHED {
        drop(value); // nobody will take it: dropped by the thread itself
        return;
    }
    let slot = g.exit.slot();
    if inline_result::<T>() {
        // SAFETY: the slot is big and aligned enough for T (checked above) and empty.
        unsafe { slot.cast::<T>().write(value) };
        g.exit.drop_result.set(Some(|p| unsafe { p.cast::<T>().drop_in_place() }));
    } else {
        let boxed = Box::into_raw(Box::new(value));
        // SAFETY: a pointer fits the slot.
        unsafe { slot.cast::<*mut T>().write(boxed) };
        g.exit.drop_result.set(Some(|p| unsafe { drop(Box::from_raw(p.cast::<*mut T>().read())) }));
    }
    // Publish; if the handle was dropped meanwhile, the result is ours to drop after all.
    let published =
        g.exit.result_state.compare_exchange(RESULT_EMPTY, RESULT_STORED, Ordering::AcqRel, Ordering::Acquire);
    if published.is_err() {
        drop_stored(g);
    }
}

/// Drops the result in `g`'s slot (its owner: the thread that stored it but lost the race, or the
/// handle that found it stored).
fn drop_stored(g: &G) {
    if let Some(drop_result) = g.exit.drop_result.take() {
        // SAFETY: a result was stored and never taken; it is dropped exactly once, here.
        unsafe { drop_result(g.exit.slot()) };
    }
}

/// Takes the result stored by `store_result::<T>`.
///
/// # Safety
/// The thread stored a `T` and nobody took it yet.
unsafe fn take_result<T>(g: &G) -> T {
    let slot = g.exit.slot();
    g.exit.drop_result.set(None);
    g.exit.result_state.store(RESULT_EMPTY, Ordering::Relaxed);
    // SAFETY: by the contract a T (or a Box<T>) is stored there.
    unsafe { if inline_result::<T>() { slot.cast::<T>().read() } else { *Box::from_raw(slot.cast::<*mut T>().read()) } }
}

/// Handle to a spawned thread, Go-style: `join` waits for it and yields its result (or how it
/// died). Dropping the handle detaches the thread.
#[must_use = "a dropped JoinHandle detaches its thread"]
pub struct JoinHandle<T> {
    pub(super) g: &'static G,
    pub(super) _result: PhantomData<T>,
}

// SAFETY: the handle only moves a T (which is Send) out of the G.
unsafe impl<T: Send> Send for JoinHandle<T> {}

impl<T> JoinHandle<T> {
    /// The thread's id.
    pub fn id(&self) -> u64 {
        self.g.id.get()
    }

    /// Waits for the thread to finish: `Ok(result)`, or `Err(death)` if it panicked, overflowed
    /// its stack, or faulted.
    #[inline]
    pub fn join(self) -> Result<T, Death> {
        let g = self.g;
        // LAB 5 BEGIN: see whether the thread is done, and if not become its joiner, under one hold of the lock
        // LAB 5 STUB: let finished = self.is_finished();
        // LAB 5 STUB: let mut inner = g.exit.inner.lock();
        // LAB 5 STUB: let death = if finished {
        let mut inner = g.exit.inner.lock();
        let death = if inner.done {
            // LAB 5 END
            inner.death.take()
        } else {
            inner.joiner = current();
            crate::sched::park::park(WaitReason::Join, inner.into_parked());
            // The exit path wrote the outcome before marking the thread done and waking us, and
            // nothing touches the record's exit state any more but us.
            // SAFETY: as just said, our access is exclusive and ordered after the writes.
            unsafe { g.exit.inner.data_raw() }.death.take()
        };
        let result = match death {
            Some(death) => Err(death),
            // SAFETY: a thread that finished without dying stored a T (it could not see the handle
            // dropped: the handle is here), taken once, here.
            None => Ok(unsafe { take_result::<T>(g) }),
        };
        core::mem::forget(self);
        release(g);
        result
    }

    /// Has the thread finished?
    pub fn is_finished(&self) -> bool {
        self.g.exit.inner.lock().done
    }
}

impl<T> Drop for JoinHandle<T> {
    /// Detaches the thread: a result it already stored is dropped here, in this thread; if it has
    /// not stored one yet, it will drop it itself.
    fn drop(&mut self) {
        if self.g.exit.result_state.swap(RESULT_DETACHED, Ordering::AcqRel) == RESULT_STORED {
            drop_stored(self.g);
        }
        release(self.g);
    }
}

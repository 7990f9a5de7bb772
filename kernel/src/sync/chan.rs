//! Channels, as in Go: unbuffered (a rendezvous) or buffered, closable, with blocking and
//! non-blocking send and receive. `select!` (in `sync::select`) waits on several at once.
//!
//! A `Chan<T>` is a handle (cheap to clone, like Go's `chan T` value) to one channel: a lock,
//! a ring buffer of capacity `cap`, a closed flag, and two queues of parked threads -- senders
//! waiting for room or a receiver, receivers waiting for a value. A parked thread's queue entry
//! (`Waiter`, Go's `sudog`) lives on its own stack and holds the value being handed over, so a
//! value passes from sender to receiver directly, without touching the buffer, whenever one
//! side is already waiting.
//!
//! Semantics (Go's): receiving from a closed, drained channel returns `None` at once; sending
//! on a closed channel panics the sender (also a sender already parked when the channel is
//! closed); closing twice panics.
//!
//! Invariants, all under the channel lock: a waiter is in at most one queue of this channel
//! and is linked only while its thread is parked (or about to park); whoever dequeues a waiter
//! sets its `status` (and value) and readies its thread before releasing the lock (one critical
//! section: a thread that hands over a value can never stop before the wake-up, see
//! `sync::wake_tests`), and the woken thread reads them only after waking. A waiter belonging to a `select!` is claimed first through its shared
//! `SelectWait` (compare-and-swap), so one select is completed by one case only.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::cell::{Cell, UnsafeCell};
use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;

use crate::records::g::{G, WaitReason};
use crate::records::percpu::current;
use crate::records::spin::{Rank, SpinLock};

/// How a parked channel operation ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Status {
    /// Still queued.
    Waiting,
    /// The value was handed over.
    Done,
    /// The channel was closed.
    Closed,
}

/// The shared part of the waiters of one `select!`: which case won.
pub struct SelectWait {
    won: AtomicUsize,
}

impl SelectWait {
    const NONE: usize = usize::MAX;

    pub fn new() -> SelectWait {
        SelectWait { won: AtomicUsize::new(Self::NONE) }
    }

    /// The winning case, once the select was woken.
    pub fn winner(&self) -> Option<usize> {
        match self.won.load(Ordering::Acquire) {
            Self::NONE => None,
            case => Some(case),
        }
    }
}

/// A parked thread's place in a channel queue (Go's `sudog`). Lives on the parked thread's
/// stack; the queue links to it only while it is queued.
pub struct Waiter<T> {
    g: &'static G,
    /// For a sender: the value to hand over. For a receiver: the value received.
    value: UnsafeCell<Option<T>>,
    status: Cell<Status>,
    select: Option<*const SelectWait>,
    case: usize,
    queued: Cell<bool>,
    prev: Cell<*const Waiter<T>>,
    next: Cell<*const Waiter<T>>,
}

impl<T> Waiter<T> {
    #[inline]
    pub fn new(g: &'static G, value: Option<T>, select: Option<&SelectWait>, case: usize) -> Waiter<T> {
        Waiter {
            g,
            value: UnsafeCell::new(value),
            status: Cell::new(Status::Waiting),
            select: select.map(|s| s as *const SelectWait),
            case,
            queued: Cell::new(false),
            prev: Cell::new(core::ptr::null()),
            next: Cell::new(core::ptr::null()),
        }
    }

    pub fn status(&self) -> Status {
        self.status.get()
    }

    /// Takes the value (a receiver's result, or a sender's unsent value).
    pub fn take_value(&self) -> Option<T> {
        // SAFETY: only the owning thread calls this, after it was woken (no one else touches
        // a dequeued waiter).
        unsafe { (*self.value.get()).take() }
    }

    /// Claims this waiter for completion: always for a plain operation; for a select case,
    /// only if no other case of the select won first.
    #[inline]
    fn claim(&self) -> bool {
        match self.select {
            None => true,
            // SAFETY: the select's state lives on the parked thread's stack while it waits.
            Some(sel) if crate::planted::is(crate::planted::Bug::SelectClaimNoCas) => {
                // Planted: check, then claim, in two steps (another claimer may come between).
                // SAFETY: as below.
                let won = &unsafe { &*sel }.won;
                if won.load(Ordering::Acquire) != SelectWait::NONE {
                    return false;
                }
                won.store(self.case, Ordering::Release);
                true
            }
            // SAFETY: the select's state lives on the parked thread's stack while it waits.
            Some(sel) => unsafe { &*sel }
                .won
                .compare_exchange(SelectWait::NONE, self.case, Ordering::AcqRel, Ordering::Acquire)
                .is_ok(),
        }
    }
}

/// An intrusive FIFO of waiters.
pub struct WaiterQueue<T> {
    head: *const Waiter<T>,
    tail: *const Waiter<T>,
}

impl<T> WaiterQueue<T> {
    const fn new() -> WaiterQueue<T> {
        WaiterQueue { head: core::ptr::null(), tail: core::ptr::null() }
    }

    /// Appends `w`. It must stay in place until it is removed.
    #[inline]
    pub fn push(&mut self, w: &Waiter<T>) {
        w.prev.set(self.tail);
        w.next.set(core::ptr::null());
        if self.tail.is_null() {
            self.head = w;
        } else {
            // SAFETY: queued waiters are alive (their threads are parked).
            unsafe { (*self.tail).next.set(w) };
        }
        self.tail = w;
        w.queued.set(true);
    }

    /// Removes `w` if it is queued here.
    #[inline]
    pub fn remove(&mut self, w: &Waiter<T>) {
        if !w.queued.get() {
            return;
        }
        let (prev, next) = (w.prev.get(), w.next.get());
        if prev.is_null() {
            self.head = next;
        } else {
            // SAFETY: as above.
            unsafe { (*prev).next.set(next) };
        }
        if next.is_null() {
            self.tail = prev;
        } else {
            // SAFETY: as above.
            unsafe { (*next).prev.set(prev) };
        }
        w.queued.set(false);
    }

    /// Removes and returns the first waiter that can be claimed; waiters of selects that
    /// another case already won are dropped from the queue on the way.
    #[inline]
    fn pop_claimable(&mut self) -> Option<&Waiter<T>> {
        while !self.head.is_null() {
            // SAFETY: as above.
            let w = unsafe { &*self.head };
            self.remove(w);
            if w.claim() {
                return Some(w);
            }
        }
        None
    }

    fn is_empty(&self) -> bool {
        self.head.is_null()
    }
}

pub struct ChanState<T> {
    buf: VecDeque<T>,
    cap: usize,
    closed: bool,
    pub recvq: WaiterQueue<T>,
    pub sendq: WaiterQueue<T>,
}

// SAFETY: the raw waiter pointers are only followed under the channel lock, and the waiters'
// threads are parked meanwhile.
unsafe impl<T: Send> Send for ChanState<T> {}

/// What an attempt to receive found (channel lock held).
pub enum RecvAttempt<T> {
    /// A value, and the sender to ready (if one was parked).
    Got(T, Option<&'static G>),
    /// Closed and drained.
    Closed,
    /// Nothing yet.
    WouldBlock,
}

impl<T> ChanState<T> {
    /// Tries to send without blocking; on success returns the receiver to ready, if any.
    /// Panics if the channel is closed.
    #[inline]
    pub fn try_send_locked(&mut self, value: T) -> Result<Option<&'static G>, T> {
        if let Some(w) = self.recvq.pop_claimable() {
            // LAB 1 BEGIN: hand `value` to the parked receiver `w`; return its thread to ready
            // LAB 1 STUB: let _ = (w, value);
            // LAB 1 STUB: todo!("lab 1: hand the value to the parked receiver")
            // SAFETY: the waiter is dequeued and claimed: we are the only one touching it.
            unsafe { *w.value.get() = Some(value) };
            w.status.set(Status::Done);
            return Ok(Some(w.g));
            // LAB 1 END
        }
        if self.buf.len() < self.cap {
            self.buf.push_back(value);
            return Ok(None);
        }
        Err(value)
    }

    /// Tries to receive without blocking.
    #[inline]
    pub fn try_recv_locked(&mut self) -> RecvAttempt<T> {
        if let Some(w) = self.sendq.pop_claimable() {
            // LAB 1 BEGIN: take the value of the parked sender `w` (with a buffer: rotate it); return it and the sender
            // LAB 1 STUB: let _ = w;
            // LAB 1 STUB: todo!("lab 1: take the value of the parked sender")
            // SAFETY: dequeued and claimed, as above.
            let sent = unsafe { (*w.value.get()).take() }.expect("a parked sender holds a value");
            w.status.set(Status::Done);
            let value = if self.cap == 0 {
                sent
            } else {
                // The buffer is full (the sender waited for room): take its head, and the
                // sender's value joins the tail.
                let head = self.buf.pop_front().expect("full buffer");
                self.buf.push_back(sent);
                head
            };
            return RecvAttempt::Got(value, Some(w.g));
            // LAB 1 END
        }
        if let Some(value) = self.buf.pop_front() {
            return RecvAttempt::Got(value, None);
        }
        if self.closed { RecvAttempt::Closed } else { RecvAttempt::WouldBlock }
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

pub struct ChanInner<T> {
    pub state: SpinLock<ChanState<T>>,
}

/// A channel that receives the time once, `delay` from now (Go's `time.After`). Closing it before
/// then is harmless: the timer's delivery is an `offer`.
pub fn after(delay: Duration) -> Chan<Duration> {
    let ch = chan(1);
    let arg = Arc::into_raw(ch.inner.clone()) as usize;
    crate::sched::timer::call_at(crate::time::now().saturating_add(delay), deliver_time, arg);
    ch
}

/// The timer callback of `after` (on g0): offers the time to the channel whose reference it holds.
fn deliver_time(arg: usize) {
    // SAFETY: `after` turned exactly this reference into `arg`; it is taken back once, here.
    let inner = unsafe { Arc::from_raw(arg as *const ChanInner<Duration>) };
    Chan { inner }.offer(crate::time::now());
}

/// A channel handle. Clones refer to the same channel.
pub struct Chan<T> {
    inner: Arc<ChanInner<T>>,
}

impl<T> Clone for Chan<T> {
    fn clone(&self) -> Self {
        Chan { inner: self.inner.clone() }
    }
}

/// A new channel with room for `cap` values (0: unbuffered).
pub fn chan<T>(cap: usize) -> Chan<T> {
    Chan {
        inner: Arc::new(ChanInner {
            state: SpinLock::new(
                Rank::Object,
                ChanState {
                    buf: VecDeque::with_capacity(cap),
                    cap,
                    closed: false,
                    recvq: WaiterQueue::new(),
                    sendq: WaiterQueue::new(),
                },
            ),
        }),
    }
}

fn panic_send_closed() -> ! {
    panic!("send on closed channel")
}

impl<T> Chan<T> {
    /// The lock-protected state (for `select!`).
    pub fn raw(&self) -> &ChanInner<T> {
        &self.inner
    }

    /// Sends `value`, waiting for a receiver or room. Panics if the channel is (or gets) closed.
    #[inline]
    pub fn send(&self, value: T) {
        let mut state = self.inner.state.lock();
        if state.closed {
            drop(state);
            panic_send_closed();
        }
        match state.try_send_locked(value) {
            Ok(wake) => {
                if let Some(g) = wake {
                    crate::sched::ready(g);
                }
                drop(state);
            }
            Err(value) => {
                // LAB 1 BEGIN: park this sender with `value` until a receiver takes it (or the channel closes)
                // LAB 1 STUB: drop(state);
                // LAB 1 STUB: let _ = value;
                // LAB 1 STUB: todo!("lab 1: park the sender until a receiver takes its value")
                let waiter = Waiter::new(current(), Some(value), None, 0);
                state.sendq.push(&waiter);
                crate::sched::park(WaitReason::ChanSend, state.into_parked());
                if waiter.status() == Status::Closed {
                    panic_send_closed();
                }
                // LAB 1 END
            }
        }
    }

    /// Sends `value` if that is possible without waiting; otherwise gives it back. Panics if
    /// the channel is closed.
    pub fn try_send(&self, value: T) -> Result<(), T> {
        let mut state = self.inner.state.lock();
        if state.closed {
            drop(state);
            panic_send_closed();
        }
        if let Some(g) = state.try_send_locked(value)? {
            crate::sched::ready(g);
        }
        drop(state);
        Ok(())
    }

    /// Delivers `value` if that is possible without waiting, and drops it if the channel is full
    /// or closed: never blocks, never panics (for senders on g0, such as timers).
    pub fn offer(&self, value: T) -> bool {
        let mut state = self.inner.state.lock();
        if state.closed {
            return false;
        }
        match state.try_send_locked(value) {
            Ok(wake) => {
                if let Some(g) = wake {
                    crate::sched::ready(g);
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Receives a value, waiting for one; `None` once the channel is closed and drained.
    #[inline]
    pub fn recv(&self) -> Option<T> {
        let mut state = self.inner.state.lock();
        match state.try_recv_locked() {
            RecvAttempt::Got(value, wake) => {
                if let Some(g) = wake {
                    crate::sched::ready(g);
                }
                drop(state);
                Some(value)
            }
            RecvAttempt::Closed => None,
            RecvAttempt::WouldBlock => {
                if crate::planted::is(crate::planted::Bug::ChanRecvParkUnlocked) {
                    // Planted: the lock is let go between finding nothing and queueing.
                    drop(state);
                    state = self.inner.state.lock();
                }
                // LAB 1 BEGIN: park this receiver until a sender hands it a value (or the channel closes)
                // LAB 1 STUB: drop(state);
                // LAB 1 STUB: todo!("lab 1: park the receiver until a sender hands it a value")
                let waiter = Waiter::new(current(), None, None, 0);
                state.recvq.push(&waiter);
                crate::sched::park(WaitReason::ChanReceive, state.into_parked());
                waiter.take_value()
                // LAB 1 END
            }
        }
    }

    /// Receives a value if one is ready: `Ok(Some(v))`; `Ok(None)` if closed and drained;
    /// `Err(())` if the receive would have to wait.
    #[allow(clippy::result_unit_err)]
    pub fn try_recv(&self) -> Result<Option<T>, ()> {
        let mut state = self.inner.state.lock();
        match state.try_recv_locked() {
            RecvAttempt::Got(value, wake) => {
                if let Some(g) = wake {
                    crate::sched::ready(g);
                }
                drop(state);
                Ok(Some(value))
            }
            RecvAttempt::Closed => Ok(None),
            RecvAttempt::WouldBlock => Err(()),
        }
    }

    /// Closes the channel: waiting receivers get `None`, waiting senders panic. Panics if
    /// already closed.
    pub fn close(&self) {
        let mut state = self.inner.state.lock();
        if state.closed {
            drop(state);
            panic!("close of closed channel");
        }
        state.closed = true;
        while let Some(w) = state.recvq.pop_claimable() {
            w.status.set(Status::Closed);
            crate::sched::ready(w.g);
        }
        while let Some(w) = state.sendq.pop_claimable() {
            w.status.set(Status::Closed);
            crate::sched::ready(w.g);
        }
    }

    /// Values waiting in the buffer (a snapshot: it may change at once).
    pub fn len(&self) -> usize {
        self.inner.state.lock().buf.len()
    }

    /// Is the buffer empty? (A snapshot.)
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Has the channel been closed?
    pub fn is_closed(&self) -> bool {
        self.inner.state.lock().closed
    }

    /// Threads parked receiving on this channel (counts the queue: for tests).
    pub fn waiting_receivers(&self) -> usize {
        let s = self.inner.state.lock();
        let mut n = 0;
        let mut w = s.recvq.head;
        while !w.is_null() {
            n += 1;
            // SAFETY: queued waiters are alive; we hold the lock.
            w = unsafe { (*w).next.get() };
        }
        n
    }

    /// Are threads parked on this channel? (For tests.)
    pub fn has_waiters(&self) -> bool {
        let s = self.inner.state.lock();
        !s.recvq.is_empty() || !s.sendq.is_empty()
    }
}

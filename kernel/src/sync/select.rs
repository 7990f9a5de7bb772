//! `select!`: wait on several channel operations, run the one that happens (Go's `select`).
//!
//! ```ignore
//! select! {
//!     recv(ch_a) -> v => { /* v: Option<A>, None if ch_a is closed */ },
//!     send(ch_b, value) => { /* value was sent */ },
//!     default => { /* nothing was ready */ },
//! }
//! ```
//!
//! The algorithm is Go's `selectgo`:
//! 1. Lock every channel involved, in address order (so two selects never deadlock).
//! 2. Poll the cases in a random order (so no ready case is favoured): the first ready one
//!    completes at once, everything is unlocked, its body runs.
//! 3. None ready: with `default`, unlock and run it. Otherwise enqueue a waiter on every
//!    channel, all pointing at one shared `SelectWait`, and park -- `park` unlocks all the
//!    channels on g0 once the thread is waiting.
//! 4. The first operation that completes one of the waiters claims the whole select with a
//!    compare-and-swap on the `SelectWait` and readies the thread; waiters found later on other
//!    channels fail the claim and are skipped.
//! 5. Awake, the thread locks the channels again, takes its other waiters out of their
//!    queues, and runs the winning case's body.

use crate::records::g::{G, WaitReason};
use crate::records::percpu::current;
use crate::records::spin::ParkUnlock;
use crate::sync::chan::{Chan, RecvAttempt, SelectWait, Status, Waiter};

/// Most cases a `select!` may have.
pub const MAX_CASES: usize = 16;

/// What polling a case found.
pub enum Poll {
    /// Done; ready this thread (if any) once the locks are released.
    Ready(Option<&'static G>),
    /// Would have to wait.
    Blocked,
    /// A send on a closed channel: the select panics once the locks are released.
    SendOnClosed,
}

/// One case of a select, with the channel's type erased.
pub trait Case {
    /// Identifies the channel (lock order, and locking a channel once when two cases share it).
    fn chan_id(&self) -> usize;
    /// Takes the channel's lock (without a guard).
    fn lock(&self);
    /// Releases it.
    ///
    /// # Safety
    /// Held through `lock`.
    unsafe fn unlock(&self);
    /// Settles parked thread `owner`'s count of this lock (from g0, before `release_parked`).
    fn settle_parked_rank(&self, owner: &G);
    /// Releases it on behalf of the parked thread (from g0; `park` fixes the lock count).
    ///
    /// # Safety
    /// Held through `lock` by the thread now parked, whose counts are settled.
    unsafe fn release_parked(&self);
    /// With the lock held: completes the operation if it can be done now.
    fn try_now(&mut self) -> Poll;
    /// With the lock held: parks a waiter for this case (it must not move until dequeued).
    fn enqueue(&mut self, select: &SelectWait, case: usize);
    /// With the lock held: removes this case's waiter if it is still queued.
    fn dequeue(&mut self);
    /// After winning while parked: finish (a send on a closed channel panics here).
    fn finish(&mut self);
}

/// The channel-locking methods of `Case`, the same for both kinds of case (each has a `chan`).
macro_rules! chan_case_locking {
    () => {
        fn chan_id(&self) -> usize {
            self.chan.raw() as *const _ as *const u8 as usize
        }

        fn lock(&self) {
            self.chan.raw().state.lock_raw();
        }

        unsafe fn unlock(&self) {
            // SAFETY: forwarded contract.
            unsafe { self.chan.raw().state.unlock_raw() }
        }

        fn settle_parked_rank(&self, owner: &G) {
            self.chan.raw().state.settle_parked_rank(owner);
        }

        unsafe fn release_parked(&self) {
            // SAFETY: forwarded contract.
            unsafe { self.chan.raw().state.release_for_parked() }
        }
    };
}

/// A receive case; after completion `take` gives `Some(value)` or `None` (closed).
pub struct RecvCase<'a, T> {
    chan: &'a Chan<T>,
    waiter: Option<Waiter<T>>,
    result: Option<Option<T>>,
}

impl<'a, T> RecvCase<'a, T> {
    pub fn new(chan: &'a Chan<T>) -> Self {
        RecvCase { chan, waiter: None, result: None }
    }

    /// The received value (`None`: the channel is closed).
    pub fn take(&mut self) -> Option<T> {
        self.result.take().expect("select: took the result of a case that did not run")
    }
}

impl<T> Case for RecvCase<'_, T> {
    chan_case_locking!();

    fn try_now(&mut self) -> Poll {
        // SAFETY: the select holds the lock (raw) and no other reference to the state.
        let state = unsafe { self.chan.raw().state.data_raw() };
        match state.try_recv_locked() {
            RecvAttempt::Got(value, wake) => {
                self.result = Some(Some(value));
                Poll::Ready(wake)
            }
            RecvAttempt::Closed => {
                self.result = Some(None);
                Poll::Ready(None)
            }
            RecvAttempt::WouldBlock => Poll::Blocked,
        }
    }

    fn enqueue(&mut self, select: &SelectWait, case: usize) {
        let waiter = self.waiter.insert(Waiter::new(current(), None, Some(select), case));
        // SAFETY: lock held, as above.
        unsafe { self.chan.raw().state.data_raw() }.recvq.push(waiter);
    }

    fn dequeue(&mut self) {
        if let Some(waiter) = &self.waiter {
            // SAFETY: lock held, as above.
            unsafe { self.chan.raw().state.data_raw() }.recvq.remove(waiter);
        }
    }

    fn finish(&mut self) {
        let waiter = self.waiter.as_ref().expect("finish without a waiter");
        self.result = Some(match waiter.status() {
            Status::Done => waiter.take_value(),
            _ => None,
        });
    }
}

/// A send case.
pub struct SendCase<'a, T> {
    chan: &'a Chan<T>,
    value: Option<T>,
    waiter: Option<Waiter<T>>,
}

impl<'a, T> SendCase<'a, T> {
    pub fn new(chan: &'a Chan<T>, value: T) -> Self {
        SendCase { chan, value: Some(value), waiter: None }
    }
}

impl<T> Case for SendCase<'_, T> {
    chan_case_locking!();

    fn try_now(&mut self) -> Poll {
        // SAFETY: lock held, as above.
        let state = unsafe { self.chan.raw().state.data_raw() };
        if state.is_closed() {
            return Poll::SendOnClosed;
        }
        let value = self.value.take().expect("send case polled after it sent");
        match state.try_send_locked(value) {
            Ok(wake) => Poll::Ready(wake),
            Err(value) => {
                self.value = Some(value);
                Poll::Blocked
            }
        }
    }

    fn enqueue(&mut self, select: &SelectWait, case: usize) {
        let value = self.value.take();
        let waiter = self.waiter.insert(Waiter::new(current(), value, Some(select), case));
        // SAFETY: lock held, as above.
        unsafe { self.chan.raw().state.data_raw() }.sendq.push(waiter);
    }

    fn dequeue(&mut self) {
        if let Some(waiter) = &self.waiter {
            // SAFETY: lock held, as above.
            unsafe { self.chan.raw().state.data_raw() }.sendq.remove(waiter);
        }
    }

    fn finish(&mut self) {
        if self.waiter.as_ref().is_some_and(|w| w.status() == Status::Closed) {
            panic!("send on closed channel (in select!)");
        }
    }
}

/// The channels of one select, each once, in lock order.
struct LockSet<'c, 'a> {
    cases: &'c [&'c mut (dyn Case + 'a)],
    order: [usize; MAX_CASES],
    len: usize,
}

impl<'c, 'a> LockSet<'c, 'a> {
    fn new(cases: &'c [&'c mut (dyn Case + 'a)]) -> Self {
        let mut order = [0; MAX_CASES];
        for (i, slot) in order.iter_mut().enumerate().take(cases.len()) {
            *slot = i;
        }
        let all = &mut order[..cases.len()];
        all.sort_unstable_by_key(|&i| cases[i].chan_id());
        // Keep the first case of each channel.
        let mut len = 0;
        for k in 0..cases.len() {
            if len == 0 || cases[order[len - 1]].chan_id() != cases[order[k]].chan_id() {
                order[len] = order[k];
                len += 1;
            }
        }
        LockSet { cases, order, len }
    }

    fn lock(&self) {
        for &i in &self.order[..self.len] {
            self.cases[i].lock();
        }
    }

    fn unlock(&self) {
        for &i in self.order[..self.len].iter().rev() {
            // SAFETY: locked by `lock`.
            unsafe { self.cases[i].unlock() };
        }
    }
}

impl ParkUnlock for LockSet<'_, '_> {
    fn lock_count(&self) -> u32 {
        self.len as u32
    }

    unsafe fn unlock_parked(&self, owner: &G) {
        // Every count first: the owner may run again as soon as one of the locks is free.
        for &i in &self.order[..self.len] {
            self.cases[i].settle_parked_rank(owner);
        }
        for &i in self.order[..self.len].iter().rev() {
            // SAFETY: the parked thread locked these with `lock`; its counts are settled.
            unsafe { self.cases[i].release_parked() };
        }
    }
}

/// Runs a select over `cases`: returns the index of the case that completed, or `None` if
/// none was ready and `has_default`. Used by the `select!` macro.
pub fn select(cases: &mut [&mut dyn Case], has_default: bool) -> Option<usize> {
    let n = cases.len();
    assert!(n <= MAX_CASES, "select! with more than {MAX_CASES} cases");
    // A random polling order (Fisher-Yates), so ready cases are chosen uniformly.
    let mut poll = [0usize; MAX_CASES];
    {
        let _irq = crate::arch::cpu::IrqGuard::new();
        let cpu = crate::records::percpu::this_cpu();
        for i in 0..n {
            let j = (cpu.fastrand() % (i as u64 + 1)) as usize;
            poll[i] = poll[j];
            poll[j] = i;
        }
    }

    let cases_ptr: *mut [&mut dyn Case] = cases;
    // SAFETY: `LockSet` only calls the `&self` locking methods; the `&mut` uses below touch
    // disjoint per-case state (waiters, results), never the lock.
    let locks = LockSet::new(unsafe { &*cases_ptr });
    locks.lock();
    for &i in &poll[..n] {
        // SAFETY: see above.
        match unsafe { (*cases_ptr)[i].try_now() } {
            Poll::Ready(wake) => {
                if let Some(g) = wake {
                    crate::sched::ready(g);
                }
                locks.unlock();
                return Some(i);
            }
            Poll::SendOnClosed => {
                locks.unlock();
                panic!("send on closed channel (in select!)");
            }
            Poll::Blocked => {}
        }
    }
    if has_default {
        locks.unlock();
        return None;
    }

    let wait = SelectWait::new();
    for i in 0..n {
        // SAFETY: see above.
        unsafe { (*cases_ptr)[i].enqueue(&wait, i) };
    }
    crate::sched::park(WaitReason::Select, &locks);
    let won = wait.winner().expect("select woken without a winning case");
    locks.lock();
    for i in 0..n {
        if i != won {
            // SAFETY: see above.
            unsafe { (*cases_ptr)[i].dequeue() };
        }
    }
    locks.unlock();
    // SAFETY: see above.
    unsafe { (*cases_ptr)[won].finish() };
    Some(won)
}

/// Waits on several channel operations; see the module documentation.
#[macro_export]
macro_rules! select {
    ($($tokens:tt)*) => {
        $crate::__select_parse!([] [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15] $($tokens)*)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __select_parse {
    // recv(ch) -> pat => body
    ([$($done:tt)*] [$i:tt $($is:tt)*] recv($ch:expr) -> $pat:pat => $body:block $(,)? $($rest:tt)*) => {
        $crate::__select_parse!([$($done)* (recv $i ($ch) () ($pat) $body)] [$($is)*] $($rest)*)
    };
    ([$($done:tt)*] [$i:tt $($is:tt)*] recv($ch:expr) -> $pat:pat => $body:expr, $($rest:tt)*) => {
        $crate::__select_parse!([$($done)* (recv $i ($ch) () ($pat) { $body })] [$($is)*] $($rest)*)
    };
    // send(ch, value) => body
    ([$($done:tt)*] [$i:tt $($is:tt)*] send($ch:expr, $value:expr) => $body:block $(,)? $($rest:tt)*) => {
        $crate::__select_parse!([$($done)* (send $i ($ch) ($value) () $body)] [$($is)*] $($rest)*)
    };
    ([$($done:tt)*] [$i:tt $($is:tt)*] send($ch:expr, $value:expr) => $body:expr, $($rest:tt)*) => {
        $crate::__select_parse!([$($done)* (send $i ($ch) ($value) () { $body })] [$($is)*] $($rest)*)
    };
    // default => body (last)
    ([$($done:tt)*] [$($is:tt)*] default => $body:block $(,)?) => {
        $crate::__select_emit!([$($done)*] true $body)
    };
    ([$($done:tt)*] [$($is:tt)*] default => $body:expr $(,)?) => {
        $crate::__select_emit!([$($done)*] true { $body })
    };
    ([$($done:tt)*] [$($is:tt)*]) => {
        $crate::__select_emit!([$($done)*] false { unreachable!("select without default returned none") })
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __select_emit {
    ([$(($kind:ident $i:tt ($ch:expr) ($($value:expr)?) ($($pat:tt)*) $body:block))*] $has_default:tt $default:block) => {{
        // Borrow each channel in this `let` so that temporaries (`sync::after(..)`) live on.
        let __chans = ($(&$ch,)*);
        let mut __cases = ($($crate::__select_case!(new $kind (__chans.$i) $($value)?),)*);
        let __chosen = {
            let mut __refs = [$(&mut __cases.$i as &mut dyn $crate::sync::select::Case),*];
            $crate::sync::select::select(&mut __refs, $has_default)
        };
        $(
            if __chosen == Some($i) {
                $crate::__select_case!(run $kind (__cases.$i) ($($pat)*) $body)
            } else
        )* $default
    }};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __select_case {
    (new recv ($ch:expr)) => {
        $crate::sync::select::RecvCase::new($ch)
    };
    (new send ($ch:expr) $value:expr) => {
        $crate::sync::select::SendCase::new($ch, $value)
    };
    (run recv ($case:expr) ($pat:pat) $body:block) => {{
        let $pat = $case.take();
        $body
    }};
    (run send ($case:expr) () $body:block) => {
        $body
    };
}

//! Run queues, as in the Go runtime: a bounded lock-free ring per CPU with a `runnext` slot,
//! and one global queue.
//!
//! The local ring has a single producer -- its own CPU, always with interrupts disabled -- and
//! many consumers: the owner taking from the head, and other CPUs stealing half of it with a
//! compare-and-swap on `head` (Go's `runqput`, `runqget`, `runqgrab`). When the ring is full,
//! half of it moves to the global queue in one batch (Go's `runqputslow`).
//!
//! `runnext` holds the thread readied most recently by this CPU's running thread. It runs next,
//! ahead of the ring, and inherits the rest of the current time slice: a message ping-pong
//! between two threads then stays on one CPU and does not starve the others. Stealers take
//! `runnext` only as a last resort.
//!
//! The global queue is an intrusive list (through `G::sched_link`) under a spin lock. Preempted
//! threads go there (so a thread that used its whole slice waits behind everyone), and the
//! scheduler checks it first every 61st pass so no thread waits forever (Go's rule).
//!
//! A thread pinned to a CPU (`spawn_on`) never enters a ring, which others could steal from:
//! it waits in that CPU's *inbox*, a locked list any CPU may add to.

use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use crate::records::g::G;
use crate::records::spin::{Rank, SpinLock};

/// Capacity of a local ring (a power of two).
pub const LOCAL_CAPACITY: usize = 256;

pub struct LocalRunQueue {
    head: AtomicU32,
    tail: AtomicU32,
    ring: [AtomicPtr<G>; LOCAL_CAPACITY],
    runnext: AtomicPtr<G>,
    /// Most threads queued at once here (statistics).
    pub high_water: AtomicU32,
}

impl LocalRunQueue {
    pub const fn new() -> LocalRunQueue {
        LocalRunQueue {
            head: AtomicU32::new(0),
            tail: AtomicU32::new(0),
            ring: [const { AtomicPtr::new(core::ptr::null_mut()) }; LOCAL_CAPACITY],
            runnext: AtomicPtr::new(core::ptr::null_mut()),
            high_water: AtomicU32::new(0),
        }
    }

    /// Threads queued (a snapshot).
    pub fn len(&self) -> usize {
        let h = self.head.load(Ordering::Acquire);
        let t = self.tail.load(Ordering::Acquire);
        t.wrapping_sub(h) as usize + usize::from(!self.runnext.load(Ordering::Acquire).is_null())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Is a thread in `runnext` (a snapshot)?
    pub fn has_runnext(&self) -> bool {
        !self.runnext.load(Ordering::Acquire).is_null()
    }

    /// Queues `g`; with `next`, into `runnext` (pushing its old occupant to the ring). If the
    /// ring is full, half of it moves to the global queue.
    ///
    /// Owner CPU only, interrupts disabled.
    #[inline]
    pub fn put(&self, g: &'static G, next: bool) {
        let mut g = g as *const G as *mut G;
        if next {
            let old = self.runnext.swap(g, Ordering::AcqRel);
            if old.is_null() {
                return;
            }
            g = old;
        }
        loop {
            let h = self.head.load(Ordering::Acquire);
            let t = self.tail.load(Ordering::Relaxed);
            let queued = t.wrapping_sub(h);
            if (queued as usize) < LOCAL_CAPACITY {
                self.ring[t as usize % LOCAL_CAPACITY].store(g, Ordering::Relaxed);
                self.tail.store(t.wrapping_add(1), Ordering::Release);
                // Only the owner writes the high-water mark: no atomic read-modify-write.
                if queued + 1 > self.high_water.load(Ordering::Relaxed) {
                    self.high_water.store(queued + 1, Ordering::Relaxed);
                }
                return;
            }
            if self.move_half_to_global(h, t, g) {
                return;
            }
            // A stealer took some meanwhile: there is room now.
        }
    }

    /// Moves the first half of a full ring plus `g` to the global queue (Go's `runqputslow`).
    /// Fails if a stealer moved the head meanwhile.
    #[cold]
    fn move_half_to_global(&self, h: u32, t: u32, g: *mut G) -> bool {
        let n = (t.wrapping_sub(h) / 2) as usize;
        let mut batch = Batch::new();
        for i in 0..n {
            batch.push(self.ring[(h as usize + i) % LOCAL_CAPACITY].load(Ordering::Relaxed));
        }
        if self.head.compare_exchange(h, h.wrapping_add(n as u32), Ordering::AcqRel, Ordering::Relaxed).is_err() {
            return false;
        }
        batch.push(g);
        GLOBAL.with(|global| global.push_batch(&batch));
        true
    }

    /// Takes the next thread: `runnext` first (then `inherit` is true), else the ring's head.
    ///
    /// Owner CPU only, interrupts disabled.
    #[inline]
    pub fn get(&self) -> Option<(&'static G, bool)> {
        let next = self.runnext.load(Ordering::Acquire);
        if !next.is_null()
            && self.runnext.compare_exchange(next, core::ptr::null_mut(), Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            // SAFETY: queued pointers are live thread records.
            return Some((unsafe { &*next }, true));
        }
        loop {
            let h = self.head.load(Ordering::Acquire);
            let t = self.tail.load(Ordering::Relaxed);
            if t == h {
                return None;
            }
            let g = self.ring[h as usize % LOCAL_CAPACITY].load(Ordering::Relaxed);
            if self.head.compare_exchange(h, h.wrapping_add(1), Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                // SAFETY: as above.
                return Some((unsafe { &*g }, false));
            }
        }
    }

    /// Steals about half of this queue (taken by another CPU) into `into`'s ring; returns one
    /// thread to run right away. Takes `runnext` only if the ring is empty and `allow_next`.
    pub fn steal_into(&self, into: &LocalRunQueue, allow_next: bool) -> Option<&'static G> {
        // LAB 3 BEGIN: steal the older half of this ring into `into` (runnext only if allowed and the ring is empty)
        // LAB 3 STUB: let _ = (into, allow_next);
        // LAB 3 STUB: None // lab 3: nothing is stolen yet
        loop {
            let h = self.head.load(Ordering::Acquire);
            let t = self.tail.load(Ordering::Acquire);
            let n = t.wrapping_sub(h);
            let n = n - n / 2;
            if n == 0 {
                if allow_next {
                    let next = self.runnext.load(Ordering::Acquire);
                    // Planted bug `runnext-steal-no-cas`: a plain store instead of the CAS.
                    let taken = |q: &LocalRunQueue| {
                        if crate::planted::is(crate::planted::Bug::RunnextStealNoCas) {
                            q.runnext.store(core::ptr::null_mut(), Ordering::Release);
                            return true;
                        }
                        q.runnext
                            .compare_exchange(next, core::ptr::null_mut(), Ordering::AcqRel, Ordering::Relaxed)
                            .is_ok()
                    };
                    if !next.is_null() && taken(self) {
                        // SAFETY: as above.
                        return Some(unsafe { &*next });
                    }
                }
                return None;
            }
            if n as usize > LOCAL_CAPACITY / 2 {
                continue; // inconsistent snapshot (head moved past a stale tail): retry
            }
            // Copy first, then claim with a CAS; on failure the copies are discarded.
            let into_t = into.tail.load(Ordering::Relaxed);
            for i in 0..n {
                let g = self.ring[(h.wrapping_add(i)) as usize % LOCAL_CAPACITY].load(Ordering::Relaxed);
                into.ring[(into_t.wrapping_add(i)) as usize % LOCAL_CAPACITY].store(g, Ordering::Relaxed);
            }
            if self.head.compare_exchange(h, h.wrapping_add(n), Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                // Keep the last stolen for ourselves, publish the rest.
                let last = into.ring[(into_t.wrapping_add(n - 1)) as usize % LOCAL_CAPACITY].load(Ordering::Relaxed);
                into.tail.store(into_t.wrapping_add(n - 1), Ordering::Release);
                // SAFETY: as above.
                return Some(unsafe { &*last });
            }
        }
        // LAB 3 END
    }
}

/// Up to `LOCAL_CAPACITY / 2 + 1` threads moving to the global queue.
pub struct Batch {
    items: [*mut G; LOCAL_CAPACITY / 2 + 1],
    len: usize,
}

impl Batch {
    fn new() -> Batch {
        Batch { items: [core::ptr::null_mut(); LOCAL_CAPACITY / 2 + 1], len: 0 }
    }

    fn push(&mut self, g: *mut G) {
        self.items[self.len] = g;
        self.len += 1;
    }
}

/// An intrusive list of runnable threads (the global queue, and each CPU's inbox of pinned
/// threads).
pub struct ThreadList {
    head: *mut G,
    tail: *mut G,
    len: usize,
}

// SAFETY: only accessed under its lock; it holds thread records that nobody else is using.
unsafe impl Send for ThreadList {}

/// The global run queue.
pub static GLOBAL: SharedThreadList = SharedThreadList::new();

impl ThreadList {
    pub const fn new() -> ThreadList {
        ThreadList { head: core::ptr::null_mut(), tail: core::ptr::null_mut(), len: 0 }
    }

    pub fn push(&mut self, g: *mut G) {
        // SAFETY: `g` is a live thread record that belongs to the queue now.
        unsafe { (*g).sched_link.set(core::ptr::null_mut()) };
        if self.tail.is_null() {
            self.head = g;
        } else {
            // SAFETY: `tail` is a queued record.
            unsafe { (*self.tail).sched_link.set(g) };
        }
        self.tail = g;
        self.len += 1;
    }

    pub fn push_batch(&mut self, batch: &Batch) {
        for &g in &batch.items[..batch.len] {
            self.push(g);
        }
    }

    pub fn pop(&mut self) -> Option<&'static G> {
        if self.head.is_null() {
            return None;
        }
        // SAFETY: `head` is a queued record.
        let g = unsafe { &*self.head };
        self.head = g.sched_link.replace(core::ptr::null_mut());
        if self.head.is_null() {
            self.tail = core::ptr::null_mut();
        }
        self.len -= 1;
        Some(g)
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

/// A `ThreadList` under a spin lock, whose length can be read without the lock: the scheduler
/// looks at the global queue and the inboxes on every pass, and must not take their locks just
/// to find them empty. The length is published after every change, under the lock.
pub struct SharedThreadList {
    list: SpinLock<ThreadList>,
    len: AtomicU32,
}

impl SharedThreadList {
    pub const fn new() -> SharedThreadList {
        SharedThreadList { list: SpinLock::new(Rank::RunQueue, ThreadList::new()), len: AtomicU32::new(0) }
    }

    /// Threads queued (a hint: it may change at once). Sequentially consistent, for the idle
    /// loop's last look for work (see `sched::schedule::idle`).
    #[inline(always)]
    pub fn len_hint(&self) -> u32 {
        self.len.load(Ordering::SeqCst)
    }

    /// Runs `f` on the list under its lock, then publishes the new length.
    pub fn with<R>(&self, f: impl FnOnce(&mut ThreadList) -> R) -> R {
        let mut list = self.list.lock();
        let result = f(&mut list);
        self.len.store(list.len() as u32, Ordering::Release);
        result
    }

    pub fn push(&self, g: &'static G) {
        self.with(|list| list.push(g as *const G as *mut G));
    }

    pub fn pop(&self) -> Option<&'static G> {
        self.with(ThreadList::pop)
    }
}

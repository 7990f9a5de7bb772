//! Threads: spawning, running, exiting, joining, and dying.
//!
//! `spawn(name, f)` is Prologue's `go` statement. It takes a `G` record from the free list (Go's
//! `gfget`), a stack from the stack pool, copies the closure `f` onto the top of the new stack
//! (so spawning allocates nothing on the heap in the common case), and puts the thread in its
//! CPU's `runnext` slot (Go's `newproc`), so it runs as soon as the spawner blocks or yields.
//!
//! A thread ends in one of four ways, all through `exit_m` on g0 (the thread's stack cannot be
//! freed while the thread runs on it): it returns (its result is kept in its `G` for the join
//! handle), it panics, it overflows its stack, or it takes a CPU exception. The last three are
//! a `Death`, which the join handle returns as `Err`.
//!
//! The join protocol: `ExitState` holds a small lock, `done`, the parked joiner if any, the
//! death or the result, and a reference count (the thread and its handle). The thread's exit
//! sets `done` and readies the joiner under the lock; `join` parks under the same lock, which
//! `park` releases only after the joiner is marked waiting, so the wake-up cannot be lost. The
//! `G` goes back to the free list when both references are gone.
//!
//! Invariants: a thread never exits holding a spin lock; `exit_m` runs on the thread's CPU's g0
//! with the thread no longer on its stack.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::alloc::Layout;

use core::fmt;
use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::sync::atomic::{AtomicU64, Ordering};

use crate::mm::stack::{self, StackError};
use crate::records::g::{G, GState, Name, WaitReason};
use crate::records::percpu::{current, this_cpu};
use crate::records::spin::{Rank, SpinLock};
use crate::records::switch::{mcall, thread_entry};
use crate::records::trap_entry::TrapFrame;

pub use crate::records::exit::Death;
use crate::records::exit::{RESULT_DETACHED, RESULT_EMPTY, RESULT_STORED, RESULT_WORDS};

/// Why a thread could not be spawned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnError {
    /// No memory for its record or its closure.
    OutOfMemory,
    /// No stack.
    Stack(StackError),
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::OutOfMemory => write!(f, "out of memory for a thread record"),
            SpawnError::Stack(e) => write!(f, "no stack: {e:?}"),
        }
    }
}

/// Does `T` fit in the inline result slot?
const fn inline_result<T>() -> bool {
    size_of::<T>() <= RESULT_WORDS * 8 && align_of::<T>() <= 8
}

/// Stores the thread's result for its handle, or drops it here if the handle is gone (called on
/// the thread, before it exits).
fn store_result<T>(g: &G, value: T) {
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

/// Every allocated thread record (Go's `allgs`), for listing threads. Records are recycled through
/// `FREE`; only `release_cached` frees them, after taking them out of this list under its lock,
/// which `for_each_thread` holds while it reads them.
static ALL: SpinLock<Vec<&'static G>> = SpinLock::new(Rank::Threads, Vec::new());
/// Records of exited threads, ready for reuse, linked through `sched_link`.
static FREE: SpinLock<FreeList> = SpinLock::new(Rank::Threads, FreeList { head: core::ptr::null_mut() });
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

struct FreeList {
    head: *mut G,
}

// SAFETY: the list only holds records no thread uses; the lock serialises access.
unsafe impl Send for FreeList {}

/// A thread record: recycled, or newly allocated (Go's `gfget`).
#[inline]
fn gfget() -> Result<&'static G, SpawnError> {
    {
        let mut free = FREE.lock();
        if !free.head.is_null() {
            // SAFETY: records on the free list are valid and owned by the list.
            let g = unsafe { &*free.head };
            free.head = g.sched_link.replace(core::ptr::null_mut());
            return Ok(g);
        }
    }
    let layout = Layout::new::<G>();
    // SAFETY: G has a non-zero size.
    let ptr = unsafe { alloc::alloc::alloc(layout) }.cast::<G>();
    if ptr.is_null() {
        return Err(SpawnError::OutOfMemory);
    }
    // SAFETY: `ptr` is a fresh allocation for a G; we initialize it and never free it.
    let g: &'static G = unsafe {
        ptr.write(G::new_thread());
        &*ptr
    };
    ALL.lock().push(g);
    Ok(g)
}

/// Returns a record to the free list (Go's `gfput`).
#[inline]
fn gfput(g: &'static G) {
    debug_assert!(g.exit.drop_result.get().is_none(), "a thread record recycled with its result");
    g.set_state(GState::Idle);
    let mut free = FREE.lock();
    g.sched_link.set(free.head);
    free.head = g as *const G as *mut G;
}

/// Drops one reference to `g`; the last one recycles it.
#[inline(always)]
fn release(g: &'static G) {
    if g.exit.refs.fetch_sub(1, Ordering::AcqRel) == 1 {
        gfput(g);
    }
}

/// Handle to a spawned thread, Go-style: `join` waits for it and yields its result (or how it
/// died). Dropping the handle detaches the thread.
#[must_use = "a dropped JoinHandle detaches its thread"]
pub struct JoinHandle<T> {
    g: &'static G,
    _result: PhantomData<T>,
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
        let mut inner = g.exit.inner.lock();
        let death = if inner.done {
            inner.death.take()
        } else {
            inner.joiner = current();
            crate::sched::park(WaitReason::Join, inner.into_parked());
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

/// Bytes of the initial stack a closure may take; bigger closures are boxed.
const INLINE_CLOSURE_MAX: usize = 512;

/// Starts a thread named `name` running `f`. Panics if there is no memory for it (use
/// `try_spawn` to handle that).
pub fn spawn<F, T>(name: &str, f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match try_spawn(name, f) {
        Ok(handle) => handle,
        Err(e) => panic!("spawn(\"{name}\"): {e}"),
    }
}

/// Starts a thread named `name` running `f` that runs only on CPU `cpu` (it is never stolen
/// nor migrated). Panics if there is no memory for it or no such CPU is online.
pub fn spawn_on<F, T>(cpu: usize, name: &str, f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    assert!(
        cpu < crate::records::percpu::MAX_CPUS && crate::records::percpu::cpu(cpu).online.load(Ordering::Acquire),
        "spawn_on: CPU {cpu} is not online"
    );
    match spawn_impl(name, f, cpu as u32) {
        Ok(handle) => handle,
        Err(e) => panic!("spawn_on({cpu}, \"{name}\"): {e}"),
    }
}

/// Starts a thread named `name` running `f`, or says why it cannot.
pub fn try_spawn<F, T>(name: &str, f: F) -> Result<JoinHandle<T>, SpawnError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    spawn_impl(name, f, crate::records::g::NOT_PINNED)
}

fn spawn_impl<F, T>(name: &str, f: F, pin: u32) -> Result<JoinHandle<T>, SpawnError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let g = gfget()?;
    g.pinned.store(pin, Ordering::Relaxed);
    let stack = match stack::alloc() {
        Ok(stack) => stack,
        Err(e) => {
            g.exit.refs.store(1, Ordering::Relaxed);
            release(g);
            return Err(SpawnError::Stack(e));
        }
    };
    g.id.set(NEXT_ID.fetch_add(1, Ordering::Relaxed));
    g.name.set(Name::new(name));
    g.bind_stack(stack.mapped_lo, stack.top);
    g.stack.set(Some(stack));
    g.exit.reset();
    g.stack_growths.store(0, Ordering::Relaxed);
    g.stack_peak.store(0, Ordering::Relaxed);
    g.death_hooks.set(core::ptr::null());
    g.parks.store(0, Ordering::Relaxed);
    g.overflow_pending.store(false, Ordering::Relaxed);

    // Place the closure at the top of the new stack (or in a box if it is big), below it the
    // return address `gogo` pops: the entry trampoline, which calls `start(arg)` from the
    // saved r12 and r13.
    let mut sp = stack.top;
    let (start, arg): (ThreadStart, *mut u8) = if size_of::<F>() <= INLINE_CLOSURE_MAX && align_of::<F>() <= 64 {
        sp = (sp - size_of::<F>()) & !(align_of::<F>().max(16) - 1);
        // SAFETY: `sp..top` lies in the freshly mapped top of a stack nobody else uses.
        unsafe { (sp as *mut F).write(f) };
        (run_inline::<F, T>, sp as *mut u8)
    } else {
        (run_boxed::<F, T>, Box::into_raw(Box::new(f)).cast())
    };
    sp = (sp & !15) - 16;
    // SAFETY: `sp` is inside the mapped top page of the new stack.
    unsafe { (sp as *mut usize).write(thread_entry as *const () as usize) };
    // SAFETY: the thread has never run; we own its record until it is queued below.
    let ctx = unsafe { g.context() };
    // The entry trampoline needs a stack, the entry point and its argument, and interrupts
    // on; the other saved registers are restored but never read.
    ctx.rsp = sp;
    ctx.r12 = start as usize;
    ctx.r13 = arg as usize;
    ctx.rflags = 0x202;
    g.set_state(GState::Runnable);

    let _irq = crate::arch::cpu::IrqGuard::new();
    let cpu = this_cpu();
    cpu.counters.spawns.fetch_add(1, Ordering::Relaxed);
    crate::sched::runq_put(cpu, g, true);
    Ok(JoinHandle { g, _result: PhantomData })
}

/// A new thread's first Rust function: runs the closure at `arg`, stores its result, exits.
/// Called by `arch::switch::thread_entry` on the thread's fresh stack.
type ThreadStart = unsafe extern "C" fn(arg: *mut u8) -> !;

/// `ThreadStart` for a closure placed on the new stack.
unsafe extern "C" fn run_inline<F: FnOnce() -> T, T>(arg: *mut u8) -> ! {
    // SAFETY: `spawn_impl` wrote an F at `arg` and nothing else reads it.
    let f = unsafe { arg.cast::<F>().read() };
    store_result(current(), f());
    exit_now()
}

/// `ThreadStart` for a boxed closure.
unsafe extern "C" fn run_boxed<F: FnOnce() -> T, T>(arg: *mut u8) -> ! {
    // SAFETY: `spawn_impl` made `arg` from `Box::into_raw`.
    let f = unsafe { Box::from_raw(arg.cast::<F>()) };
    store_result(current(), f());
    exit_now()
}

/// Ends the current thread normally (its result is stored).
#[inline(always)]
fn exit_now() -> ! {
    // SAFETY: called by a thread; `exit_m` never returns.
    unsafe { mcall(exit_m) };
    unreachable!("a dead thread was resumed")
}

/// Ends the current thread with `death` (panic path): its death hooks, then its exit.
pub fn exit_dead(death: Death) -> ! {
    let g = current();
    crate::sched::death::run_death_hooks(g);
    g.exit.inner.lock().death = Some(death);
    exit_now()
}

/// Where a thread killed by a trap resumes (see `kill_from_trap`).
pub extern "C" fn exit_after_trap() -> ! {
    exit_now()
}

/// Where a thread killed by an exception resumes: the trap handler pointed the interrupt
/// return here, with `rsp` near the top of the thread's own stack, so that the thread can run
/// its normal exit path (`sched::thread::exit_after_trap`).
///
/// Register contract: `curg` is the dying thread; interrupts enabled; registers are garbage.
#[unsafe(naked)]
unsafe extern "C" fn thread_trap_exit() -> ! {
    core::arch::naked_asm!(
        "xor ebp, ebp",
        "and rsp, -16",
        "call {exit}",
        "ud2",
        exit = sym exit_after_trap,
    )
}

/// Kills the thread that `frame` interrupted: records `death`, and makes the interrupt return
/// into `thread_trap_exit` near the top of the thread's stack, so it runs its exit path.
pub fn kill_from_trap(frame: &mut TrapFrame, death: Death) {
    let g = frame.interrupted();
    debug_assert!(g.is_thread());
    // Here, in the exception handler, the thread's stack is still as it was (its hooks intact),
    // and the thread may die alone: nothing is half-changed for the hooks to trip over.
    crate::sched::death::run_death_hooks(g);
    g.exit.inner.lock().death = Some(death);
    let (_, hi) = g.stack_bounds();
    frame.rsp = (hi - 256) as u64;
    frame.rbp = 0;
    frame.rip = thread_trap_exit as *const () as u64;
}

/// Kills switched-out thread `g` from g0 (stack-overflow path).
pub fn kill_on_g0(g: &'static G, death: Death) -> ! {
    crate::sched::death::run_death_hooks(g);
    g.exit.inner.lock().death = Some(death);
    exit_m(g)
}

/// The end of every thread, on g0: free the stack, wake the joiner, drop the thread's
/// reference, schedule.
extern "C" fn exit_m(g: &'static G) -> ! {
    crate::sched::check_locks_at_switch(g, 0, "exit");
    g.transition(GState::Running, GState::Dead);
    if let Some(stack) = g.stack.take() {
        stack::free(stack);
    }
    g.bind_stack(0, 0);
    let joiner = {
        let mut inner = g.exit.inner.lock();
        inner.done = true;
        core::mem::replace(&mut inner.joiner, core::ptr::null())
    };
    // Drop the thread's own reference before waking the joiner: once awake (maybe on another
    // CPU) the joiner may check that every thread record is back where it belongs.
    release(g);
    if !joiner.is_null() {
        // SAFETY: a joiner stays parked (alive) until readied here.
        crate::sched::ready(unsafe { &*joiner });
    }
    crate::sched::schedule()
}

/// Calls `f` for every live thread, holding the list's lock (so no record can be freed
/// meanwhile): `f` must not block (it may print and allocate).
pub fn for_each_thread(mut f: impl FnMut(&'static G)) {
    let all = ALL.lock();
    for &g in all.iter() {
        debug_assert!(g.is_live_record(), "for_each_thread: record {:p} was freed while listed", g);
        if !matches!(g.state(), GState::Idle) {
            f(g);
        }
    }
}

/// Number of live (not recycled) threads.
pub fn live_threads() -> usize {
    let mut n = 0;
    for_each_thread(|_| n += 1);
    n
}

/// Frees the recycled thread records (memory pressure, and tests comparing heap use with a
/// baseline).
pub fn release_cached() {
    let mut freed: Vec<*mut G> = Vec::new();
    {
        let mut free = FREE.lock();
        while !free.head.is_null() {
            let g = free.head;
            // SAFETY: records on the free list are valid and owned by the list.
            free.head = unsafe { (*g).sched_link.replace(core::ptr::null_mut()) };
            freed.push(g);
        }
    }
    // Sorted, so that unlisting them costs O(n log n), not one scan of the list per record.
    freed.sort_unstable();
    let mut all = ALL.lock();
    all.retain(|g| freed.binary_search(&(*g as *const G as *mut G)).is_err());
    all.shrink_to_fit();
    drop(all);
    for g in freed {
        // SAFETY: the record came from `alloc` in `gfget`, is on no list any more, and no
        // thread uses it.
        unsafe {
            (*g).live.store(0, Ordering::Release);
            core::ptr::drop_in_place(g);
            alloc::alloc::dealloc(g.cast(), Layout::new::<G>());
        }
    }
}

//! Spawning a thread (Go's `newproc`): a record from the free list, a stack from the pool, the
//! closure copied onto the top of the new stack (boxed only if it is big), the initial context
//! that `gogo` resumes at `thread_entry`, and the thread queued in its CPU's `runnext`.

use alloc::boxed::Box;
use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::Ordering;

use super::exit::exit_now;
use super::free_list::{NEXT_ID, gfget, release};
use super::join::{JoinHandle, store_result};
use crate::mm::stack::{self, StackError};
use crate::records::g::{GState, Name};
use crate::records::percpu::{current, this_cpu};
use crate::records::switch::thread_entry;

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
    let g = gfget().ok_or(SpawnError::OutOfMemory)?;
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
    g.last_cpu.store(cpu.id, Ordering::Relaxed);
    crate::sched::explore::on_spawn(cpu, current(), g);
    crate::trace::created(g);
    crate::sched::queue::runq_put(cpu, g, true);
    Ok(JoinHandle { g, _result: PhantomData })
}

/// A new thread's first Rust function: runs the closure at `arg`, stores its result, exits.
/// Called by `records::switch::thread_entry` on the thread's fresh stack.
type ThreadStart = unsafe extern "C" fn(arg: *mut u8) -> !;

/// `ThreadStart` for a closure placed on the new stack.
unsafe extern "C" fn run_inline<F: FnOnce() -> T, T>(arg: *mut u8) -> ! {
    // SAFETY: `spawn_impl` wrote an F at `arg` and nothing else reads it.
    let f = unsafe { arg.cast::<F>().read() };
    let result = f();
    if crate::planted::is(crate::planted::Bug::StackFreedWhileInUse) {
        // Planted: the stack goes back to the pool while this thread still runs on it (the
        // correct place is `exit_m`, on g0).
        if let Some(own) = current().stack.take() {
            stack::free(own);
        }
    }
    store_result(current(), result);
    exit_now()
}

/// `ThreadStart` for a boxed closure.
unsafe extern "C" fn run_boxed<F: FnOnce() -> T, T>(arg: *mut u8) -> ! {
    // SAFETY: `spawn_impl` made `arg` from `Box::into_raw`.
    let f = unsafe { Box::from_raw(arg.cast::<F>()) };
    store_result(current(), f());
    exit_now()
}

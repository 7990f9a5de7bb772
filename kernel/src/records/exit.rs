//! What a thread leaves when it ends: how it died (`Death`), the join protocol's state
//! (`ExitState`, part of every `G`), and the duties a dying thread leaves (`DeathHook`). The
//! records only: `sched::thread` runs the join protocol, `sched::death` the deaths.
//!
//! Invariants: `ExitState::result` holds a value exactly while `result_state` is
//! `RESULT_STORED`, and `drop_result` is its drop function then; `refs` counts the owners of
//! the `G` (the thread until it has exited, and its join handle).

use alloc::borrow::Cow;
use core::cell::{Cell, UnsafeCell};
use core::fmt;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use crate::records::g::G;
use crate::records::spin::{Rank, SpinLock};

/// How a thread died (the `Err` of `JoinHandle::join`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Death {
    /// It panicked with this message (or `MESSAGE_LOST`).
    Panic(Cow<'static, str>),
    /// It ran off the end of its stack reservation.
    StackOverflow { rsp: u64, lo: u64, hi: u64 },
    /// It took CPU exception `vector` at `rip` (`cr2` = faulting address of a page fault).
    Fault { vector: u8, error_code: u64, rip: u64, cr2: u64 },
}

impl fmt::Display for Death {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Death::Panic(msg) => write!(f, "panicked: {msg}"),
            Death::StackOverflow { rsp, lo, hi } => {
                write!(f, "stack overflow (rsp {rsp:#x}, stack {lo:#x}..{hi:#x})")
            }
            Death::Fault { vector, rip, cr2, .. } => {
                let (mnemonic, name) = crate::arch::vectors::exception_name(u64::from(*vector));
                write!(f, "{name} ({mnemonic}) at {rip:#x}")?;
                if u64::from(*vector) == crate::arch::vectors::VECTOR_PAGE_FAULT {
                    write!(f, ", address {cr2:#x}")?;
                }
                Ok(())
            }
        }
    }
}

/// Words of inline storage for a thread's result; larger results are boxed.
pub const RESULT_WORDS: usize = 4;

pub struct ExitInner {
    pub done: bool,
    pub joiner: *const G,
    pub death: Option<Death>,
}

/// `ExitState::result_state`: nothing stored yet, ...
pub const RESULT_EMPTY: u8 = 0;
/// ... a result stored in the slot, for the handle to take or drop, ...
pub const RESULT_STORED: u8 = 1;
/// ... or the handle dropped first: the thread drops its own result.
pub const RESULT_DETACHED: u8 = 2;

/// The join protocol's state, part of every `G`.
///
/// The result is a race between the thread (storing it as it finishes) and its handle (joined
/// or dropped, at any time), decided by one compare-and-swap on `result_state`: a result stored
/// before the handle is dropped is dropped by the handle's owner; a handle dropped first makes the
/// thread drop its own result. Either way the drop runs in a thread, which may block -- never on
/// g0 (where the last reference can go, when the thread exits), which must not.
pub struct ExitState {
    pub inner: SpinLock<ExitInner>,
    /// Owners of the `G`: the thread until it has exited, and its join handle.
    pub refs: AtomicU32,
    /// `RESULT_EMPTY`, `RESULT_STORED` or `RESULT_DETACHED`.
    pub result_state: AtomicU8,
    /// The result, valid while `result_state` is `RESULT_STORED`.
    pub result: UnsafeCell<MaybeUninit<[u64; RESULT_WORDS]>>,
    /// The type-erased `drop_in_place` of the stored result (written before it is published).
    pub drop_result: Cell<Option<unsafe fn(*mut u8)>>,
}

impl ExitState {
    pub const fn new() -> ExitState {
        ExitState {
            inner: SpinLock::new(Rank::Object, ExitInner { done: false, joiner: core::ptr::null(), death: None }),
            refs: AtomicU32::new(0),
            result_state: AtomicU8::new(RESULT_EMPTY),
            result: UnsafeCell::new(MaybeUninit::uninit()),
            drop_result: Cell::new(None),
        }
    }

    /// Prepares the state for a new thread. The caller owns the record exclusively (it just
    /// came off the free list), so the lock is not needed.
    pub fn reset(&self) {
        // SAFETY: nobody else can reach this record yet (see above).
        let inner = unsafe { self.inner.data_raw() };
        inner.done = false;
        inner.joiner = core::ptr::null();
        inner.death = None;
        self.result_state.store(RESULT_EMPTY, Ordering::Relaxed);
        self.drop_result.set(None);
        self.refs.store(2, Ordering::Relaxed);
    }

    /// The result slot.
    pub fn slot(&self) -> *mut u8 {
        self.result.get().cast()
    }
}

/// A duty a thread leaves if it dies (see `on_death`). Lives on the thread's stack.
pub struct DeathHook {
    pub run: unsafe fn(*const ()),
    pub arg: *const (),
    pub outer: *const DeathHook,
}

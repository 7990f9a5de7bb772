//! `G`: the record of one execution context, a thread or one of a CPU's system contexts.
//!
//! Go calls a goroutine's record a `g`; Prologue keeps the name. Every stack the kernel runs on
//! has a `G` describing it, so that the prologue hook can ask one question everywhere: "is the
//! stack pointer below `curg.stackguard0`?". Threads have heap-allocated `G`s (recycled through
//! a free list, see `sched::thread`); each CPU's g0, interrupt and critical contexts have `G`
//! records inside its `PerCpu` block.
//!
//! The first fields are read by assembly at fixed offsets (checked at compile time below):
//! `stackguard0`, the stack bounds, and the saved callee-saved registers (`Context`).
//!
//! Invariants:
//! - `stackguard0` is either `stack_lo + STACK_GUARD` (the real guard) or a poison value at or
//!   above `STACK_POISON_MIN` (a request, see `sched::stackguard`). Only the thread itself, its
//!   CPU's interrupt handler and its CPU's g0 write it.
//! - `ctx` is valid only while the thread is not running: it is written by `mcall` before the
//!   thread's state leaves `Running`, and read by `gogo` after the state became `Running`.
//! - `locks` counts the spin locks the context holds; the thread is never preempted while it is
//!   non-zero, and never parks or exits with it non-zero.

use core::cell::{Cell, UnsafeCell};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Bytes between a stack's lowest usable address and its guard. Must cover the largest frame
/// allocated between two checks (bigger frames probe page by page and hit unmapped memory),
/// plus what `morestack` pushes, plus the code that runs with the check deferred (holding the
/// frame allocator's lock while a growth is pending).
pub const STACK_GUARD: usize = 2048;

/// Values at or above this are requests, not bounds (Go's `stackPoisonMin`).
pub const STACK_POISON_MIN: usize = (-4096isize) as usize;
/// "Yield at your next call" (Go's `stackPreempt`).
pub const STACK_PREEMPT: usize = (-1314isize) as usize;
/// Tests only: "count every prologue in the slow path and stay poisoned".
pub const STACK_COUNT: usize = (-1400isize) as usize;

/// Is `guard` a request rather than a bound?
pub const fn is_poison(guard: usize) -> bool {
    guard >= STACK_POISON_MIN
}

/// One stack. `Copy` so that a `G` can keep it in a `Cell`; ownership is still unique by
/// convention (exactly one live copy is freed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stack {
    /// Slot number in its region.
    pub slot: usize,
    /// Lowest reserved address (the guard page is just below).
    pub base: usize,
    /// Highest address + 1.
    pub top: usize,
    /// Lowest mapped address.
    pub mapped_lo: usize,
    /// Size mapped at allocation.
    pub initial: usize,
}

impl Stack {
    pub fn mapped_size(&self) -> usize {
        self.top - self.mapped_lo
    }
}

/// `G::pinned` of a thread any CPU may run.
pub const NOT_PINNED: u32 = u32::MAX;

/// `G::live` of an allocated record (the bytes of "liveG").
pub const LIVE_RECORD: u64 = u64::from_le_bytes(*b"liveG\0\0\0");

/// Callee-saved registers of a context that is not running, plus its stack pointer and flags.
/// The saved `rsp` points at the return address the context resumes at.
#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct Context {
    pub rsp: usize,
    pub rbx: usize,
    pub rbp: usize,
    pub r12: usize,
    pub r13: usize,
    pub r14: usize,
    pub r15: usize,
    pub rflags: usize,
}

impl Context {
    /// Were interrupts enabled in the saved context (its RFLAGS.IF)?
    pub fn interrupts_enabled(&self) -> bool {
        self.rflags as u64 & x86_64::registers::rflags::RFlags::INTERRUPT_FLAG.bits() != 0
    }
}

/// What kind of context a `G` describes.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GKind {
    /// A kernel thread: preemptible, its stack can grow.
    Thread = 0,
    /// A CPU's scheduler context (g0). Never preempted.
    Scheduler = 1,
    /// A CPU's interrupt context. Never preempted.
    Interrupt = 2,
    /// NMI, double fault, machine check, and fatal reports: the check is disabled.
    Critical = 3,
}

/// Thread states (see the diagram in docs/scheduler.md).
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GState {
    /// In the free list, not a live thread.
    Idle = 0,
    /// On a run queue, waiting for a CPU.
    Runnable = 1,
    /// Running on a CPU.
    Running = 2,
    /// Parked; `wait_reason` says on what. Only `ready` makes it runnable again.
    Waiting = 3,
    /// Finished; its outcome waits for the join handle.
    Dead = 4,
}

impl GState {
    fn from_u8(v: u8) -> GState {
        match v {
            0 => GState::Idle,
            1 => GState::Runnable,
            2 => GState::Running,
            3 => GState::Waiting,
            _ => GState::Dead,
        }
    }
}

/// Why a thread is parked (Go's `waitReason`): shown in thread listings and reports.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WaitReason {
    None,
    ChanSend,
    ChanReceive,
    Select,
    Sleep,
    MutexLock,
    WaitGroup,
    Once,
    Join,
}

impl WaitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::None => "-",
            WaitReason::ChanSend => "chan send",
            WaitReason::ChanReceive => "chan receive",
            WaitReason::Select => "select",
            WaitReason::Sleep => "sleep",
            WaitReason::MutexLock => "mutex lock",
            WaitReason::WaitGroup => "wait group",
            WaitReason::Once => "once",
            WaitReason::Join => "join",
        }
    }
}

/// A short, inline thread name (no allocation on spawn).
#[derive(Clone, Copy)]
pub struct Name {
    bytes: [u8; 32],
    len: u8,
}

impl Name {
    pub const fn empty() -> Name {
        Name { bytes: [0; 32], len: 0 }
    }

    pub fn new(s: &str) -> Name {
        let mut name = Name::empty();
        // Truncate at a character boundary.
        let mut end = s.len().min(name.bytes.len());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        name.bytes[..end].copy_from_slice(&s.as_bytes()[..end]);
        name.len = end as u8;
        name
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("?")
    }
}

#[repr(C)]
pub struct G {
    // ---- read and written by assembly: keep first, offsets below ----
    /// Prologue check bound, or a poison value (a request).
    pub stackguard0: AtomicUsize,
    /// Lowest usable (mapped) stack address. Lowered when the stack grows.
    pub stack_lo: AtomicUsize,
    /// Top of the stack (exclusive).
    pub stack_hi: AtomicUsize,
    /// Saved registers while not running.
    pub ctx: UnsafeCell<Context>,
    /// What this record describes. Never changes.
    pub kind: GKind,

    // ---- scheduling ----
    /// Thread state, a `GState`.
    state: AtomicU8,
    /// What a waiting thread waits on.
    pub wait_reason: Cell<WaitReason>,
    /// Spin locks held (Go's `m.locks`). Written only by the context itself.
    pub locks: AtomicU32,
    /// The ranks of those locks, for the lock-order check (`records::lockrank`).
    pub held_ranks: crate::records::lockrank::HeldRanks,
    /// A preemption was requested and not yet honoured.
    pub preempt: AtomicBool,
    /// A stack overflow was caught while the thread could not die alone; it is judged again at
    /// the next check where it can (`sched::death`).
    pub overflow_pending: AtomicBool,
    /// When (timer tick) the pending preemption was requested.
    pub preempt_tick: AtomicU64,
    /// Link for intrusive queues (the global run queue, the free list). Owned by the queue.
    pub sched_link: Cell<*mut G>,
    /// The CPU this thread must run on, or `NOT_PINNED`.
    pub pinned: AtomicU32,
    /// The lock `park` hands to g0 to release once the thread is parked. It lies inside the
    /// object the thread waits on, so while the thread is parked it also names that object (in
    /// tracebacks and deadlock reports).
    pub park_lock: UnsafeCell<*const ()>,
    /// While the thread is parked on a `Mutex`: that mutex's owner field, which says who holds
    /// what this thread waits for (the wait-for graph of `sched::deadlock`); null otherwise.
    pub wait_owner: AtomicPtr<AtomicPtr<G>>,
    /// The CPU the thread runs on, or ran on last (written by `execute`); before its first run,
    /// the CPU it was created on (written by `spawn`).
    pub last_cpu: AtomicU32,

    // ---- identity and lifetime (threads) ----
    /// `LIVE_RECORD` while the record is allocated; cleared just before it is freed (so a stale
    /// reference to a freed record can be recognised by tests and debugging tools).
    pub live: AtomicU64,
    pub id: Cell<u64>,
    pub name: Cell<Name>,
    /// The stack this thread owns (threads only; system stacks are owned by their CPU).
    pub stack: Cell<Option<Stack>>,
    /// The join protocol (outcome, result, joiner); see `sched::thread`.
    pub exit: crate::records::exit::ExitState,
    /// Duties to run if the thread dies (innermost first), linked through its stack.
    pub death_hooks: Cell<*const crate::records::exit::DeathHook>,

    // ---- statistics ----
    /// Number of stack growths (see `sched::stackguard`).
    pub stack_growths: AtomicU32,
    /// Deepest stack use seen by the slow path or a growth, in bytes.
    pub stack_peak: AtomicUsize,
    /// Times the thread parked (written on g0 by `park`).
    pub parks: AtomicU64,

    // ---- the schedule explorer (`sched::explore`; two fields read by the hook) ----
    pub explore: crate::records::explore::ThreadExplore,
}

// Offsets used by assembly.
pub const OFF_STACKGUARD0: usize = 0;
pub const OFF_STACK_LO: usize = 8;
pub const OFF_STACK_HI: usize = 16;
pub const OFF_CTX: usize = 24;
pub const OFF_KIND: usize = core::mem::offset_of!(G, kind);
// Read only by the always-preempt hook.
#[cfg_attr(not(feature = "always-preempt"), allow(dead_code))]
pub const OFF_PROLOGUES: usize =
    core::mem::offset_of!(G, explore) + core::mem::offset_of!(crate::records::explore::ThreadExplore, prologues);
#[cfg_attr(not(feature = "always-preempt"), allow(dead_code))]
pub const OFF_NEXT_FORCED: usize =
    core::mem::offset_of!(G, explore) + core::mem::offset_of!(crate::records::explore::ThreadExplore, next_forced);
// Within `Context`.
pub const CTX_RSP: usize = 0;
pub const CTX_RBX: usize = 8;
pub const CTX_RBP: usize = 16;
pub const CTX_R12: usize = 24;
pub const CTX_R13: usize = 32;
pub const CTX_R14: usize = 40;
pub const CTX_R15: usize = 48;
pub const CTX_RFLAGS: usize = 56;

const _: () = {
    assert!(core::mem::offset_of!(G, stackguard0) == OFF_STACKGUARD0);
    assert!(core::mem::offset_of!(G, stack_lo) == OFF_STACK_LO);
    assert!(core::mem::offset_of!(G, stack_hi) == OFF_STACK_HI);
    assert!(core::mem::offset_of!(G, ctx) == OFF_CTX);
    assert!(core::mem::offset_of!(Context, rsp) == CTX_RSP);
    assert!(core::mem::offset_of!(Context, rbx) == CTX_RBX);
    assert!(core::mem::offset_of!(Context, rbp) == CTX_RBP);
    assert!(core::mem::offset_of!(Context, r12) == CTX_R12);
    assert!(core::mem::offset_of!(Context, r13) == CTX_R13);
    assert!(core::mem::offset_of!(Context, r14) == CTX_R14);
    assert!(core::mem::offset_of!(Context, r15) == CTX_R15);
    assert!(core::mem::offset_of!(Context, rflags) == CTX_RFLAGS);
    assert!(GKind::Thread as u8 == 0);
};

// SAFETY: the `Cell` fields of a `G` are touched only by whoever owns the `G` at that moment:
// the thread itself while it runs, the CPU that switched it out while it is not running (until
// it publishes it on a queue with release ordering), or the lock of the object it waits on.
unsafe impl Sync for G {}
// SAFETY: as above; a `G` moves between CPUs only through queues that publish it.
unsafe impl Send for G {}

impl G {
    /// A record for a system context (g0, interrupt, critical). Its stack is bound later.
    pub const fn system(kind: GKind) -> G {
        G {
            stackguard0: AtomicUsize::new(0),
            stack_lo: AtomicUsize::new(0),
            stack_hi: AtomicUsize::new(0),
            ctx: UnsafeCell::new(Context { rsp: 0, rbx: 0, rbp: 0, r12: 0, r13: 0, r14: 0, r15: 0, rflags: 0 }),
            kind,
            state: AtomicU8::new(GState::Running as u8),
            wait_reason: Cell::new(WaitReason::None),
            locks: AtomicU32::new(0),
            held_ranks: crate::records::lockrank::HeldRanks::new(),
            preempt: AtomicBool::new(false),
            overflow_pending: AtomicBool::new(false),
            preempt_tick: AtomicU64::new(0),
            sched_link: Cell::new(core::ptr::null_mut()),
            park_lock: UnsafeCell::new(core::ptr::null()),
            wait_owner: AtomicPtr::new(core::ptr::null_mut()),
            last_cpu: AtomicU32::new(0),
            pinned: AtomicU32::new(NOT_PINNED),
            live: AtomicU64::new(LIVE_RECORD),
            id: Cell::new(0),
            name: Cell::new(Name::empty()),
            stack: Cell::new(None),
            exit: crate::records::exit::ExitState::new(),
            death_hooks: Cell::new(core::ptr::null()),
            stack_growths: AtomicU32::new(0),
            stack_peak: AtomicUsize::new(0),
            parks: AtomicU64::new(0),
            explore: crate::records::explore::ThreadExplore::new(),
        }
    }

    /// A fresh thread record, in state `Idle`.
    pub fn new_thread() -> G {
        let g = G::system(GKind::Thread);
        g.state.store(GState::Idle as u8, Ordering::Relaxed);
        g
    }

    /// Is this record allocated (not freed by `thread::release_cached`)?
    pub fn is_live_record(&self) -> bool {
        self.live.load(Ordering::Acquire) == LIVE_RECORD
    }

    #[inline(always)]
    pub fn is_thread(&self) -> bool {
        self.kind == GKind::Thread
    }

    pub fn state(&self) -> GState {
        GState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Moves the state from `from` to `to`; panics (with the rule broken) if it was not `from`.
    #[inline(always)]
    pub fn transition(&self, from: GState, to: GState) {
        let old = self.state.swap(to as u8, Ordering::AcqRel);
        if old != from as u8 {
            self.bad_transition(from, to, old);
        }
    }

    #[cold]
    #[inline(never)]
    fn bad_transition(&self, from: GState, to: GState, old: u8) -> ! {
        panic!("thread {} state {:?} -> {:?}, but it was {:?}", self.id.get(), from, to, GState::from_u8(old))
    }

    /// Sets the state without checking the old one (for records being set up).
    pub fn set_state(&self, to: GState) {
        self.state.store(to as u8, Ordering::Release);
    }

    pub fn name(&self) -> Name {
        self.name.get()
    }

    /// Stack bounds `(lo, hi)`: the usable (mapped) range.
    pub fn stack_bounds(&self) -> (usize, usize) {
        (self.stack_lo.load(Ordering::Relaxed), self.stack_hi.load(Ordering::Relaxed))
    }

    /// The real guard: `stack_lo + STACK_GUARD`. (Inlined everywhere: it is used where no
    /// prologue may run, see `sched::preempt::async_preempted`.)
    #[inline(always)]
    pub fn real_guard(&self) -> usize {
        self.stack_lo.load(Ordering::Relaxed) + STACK_GUARD
    }

    /// Describes a stack for this record and arms the real guard.
    pub fn bind_stack(&self, lo: usize, hi: usize) {
        self.stack_lo.store(lo, Ordering::Relaxed);
        self.stack_hi.store(hi, Ordering::Relaxed);
        self.stackguard0.store(lo + STACK_GUARD, Ordering::Relaxed);
    }

    /// Is this context preemptible -- may it be switched out, and so moved to another CPU -- when
    /// it runs with interrupts `interrupts_enabled`? Only a thread is, and only while it holds no
    /// spin lock and runs with interrupts enabled. The one rule every path asks: the prologue's
    /// preemption, the timer's injection, dying alone, and the per-CPU data check.
    #[inline(always)]
    pub fn preemptible(&self, interrupts_enabled: bool) -> bool {
        self.kind == GKind::Thread && self.locks.load(Ordering::Relaxed) == 0 && interrupts_enabled
    }

    /// The saved context (valid only while not running).
    ///
    /// # Safety
    /// The caller must own the `G` (see the module invariants) and it must not be running.
    #[allow(clippy::mut_from_ref)] // exclusive by contract, like `UnsafeCell::get`
    pub unsafe fn context(&self) -> &mut Context {
        // SAFETY: exclusive by the caller's contract.
        unsafe { &mut *self.ctx.get() }
    }

    /// Asks this thread to yield at its next prologue (Go's `preemptone`).
    pub fn request_preempt(&self, tick: u64) {
        if !self.preempt.swap(true, Ordering::Relaxed) {
            self.preempt_tick.store(tick, Ordering::Relaxed);
        }
        self.stackguard0.store(STACK_PREEMPT, Ordering::Relaxed);
    }

    /// Raises this context's non-preemptible depth (Go's `acquirem`). Only the context itself
    /// calls it (taking a spin lock).
    #[inline(always)]
    pub fn raise_lock_depth(&self) {
        self.locks.store(self.locks.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Lowers the depth; at zero, re-arms a pending preemption request or deferred overflow, so
    /// that the next prologue enters the slow path and takes it (Go's `releasem`).
    #[inline(always)]
    pub fn lower_lock_depth(&self) {
        let depth = self.locks.load(Ordering::Relaxed);
        debug_assert!(depth > 0, "lower_lock_depth without raise_lock_depth");
        self.locks.store(depth - 1, Ordering::Relaxed);
        if depth == 1 && (self.preempt.load(Ordering::Relaxed) || self.overflow_pending.load(Ordering::Relaxed)) {
            self.stackguard0.store(STACK_PREEMPT, Ordering::Relaxed);
        }
    }

    /// Is a request (poison) in `stackguard0` now?
    pub fn guard_poisoned(&self) -> bool {
        is_poison(self.stackguard0.load(Ordering::Relaxed))
    }
}

/// A description of the context for reports: `thread 7 "name"`, or which system context.
impl core::fmt::Display for G {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.kind {
            GKind::Thread => write!(f, "thread {} \"{}\"", self.id.get(), self.name().as_str()),
            GKind::Scheduler => write!(f, "the scheduler (g0)"),
            GKind::Interrupt => write!(f, "an interrupt handler"),
            GKind::Critical => write!(f, "a critical handler"),
        }
    }
}

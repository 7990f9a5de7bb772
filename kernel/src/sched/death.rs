//! How a thread dies: the one rule for whether it may die alone, the stack-overflow report, and
//! the duties a dying thread leaves to be done (death hooks).
//!
//! A thread dies of a panic, a CPU exception or a stack overflow (`Death`). It may die *alone* --
//! reported, ended, its join handle told, while the kernel goes on -- only if nothing it leaves
//! behind can be half-changed (`may_die_alone`, the rule every death path asks): it is a thread,
//! it holds no spin lock (what the lock protects may be half-updated), it runs with interrupts
//! enabled (otherwise it may be half-way through run-queue or per-CPU work), the scheduler runs,
//! and no fatal report is under way. Where it may not:
//! - a panic or an exception is fatal (the kernel stops with a report saying why);
//! - a stack overflow caught by the prologue check is *deferred*, like a preemption request: the
//!   thread runs on in its guard zone (2 KiB, enough for the short code that holds a spin lock)
//!   and the overflow is judged again at the first check where the thread may die
//!   (`G::lower_lock_depth` re-arms it when the last spin lock goes, the timer tick otherwise).
//!
//! Death hooks: there is no unwinding, so a dying thread's destructors never run. Code that must
//! not be left half-done by a death (`Once` marks itself done, as Go's does when its function
//! panics) registers a hook with `on_death` for the duration of the risky part; every death path
//! runs the thread's hooks, innermost first, before its stack is freed. Hooks live on the thread's
//! stack, linked from `G::death_hooks`; they may run on g0, so they must not block.

use alloc::borrow::Cow;
use alloc::string::String;
use core::fmt;
use core::sync::atomic::Ordering;

use crate::fatal::backtrace::Backtrace;
use crate::records::exit::DeathHook;
use crate::records::g::G;

/// A panic's message, formatted without the heap into a buffer on the dying thread's stack (it
/// may be the heap that failed): the report prints it from there. Longer messages are cut, at a
/// character boundary, and end in `...`.
pub struct PanicText {
    bytes: [u8; PanicText::CAPACITY],
    len: usize,
}

impl PanicText {
    const CAPACITY: usize = 240;

    /// The message `args` formats to.
    pub fn new(args: fmt::Arguments<'_>) -> PanicText {
        let mut text = PanicText { bytes: [0; Self::CAPACITY], len: 0 };
        if fmt::Write::write_fmt(&mut text, args).is_err() {
            // Cut: end at a character boundary with room for the ellipsis.
            let mut end = text.len.min(Self::CAPACITY - 3);
            while core::str::from_utf8(&text.bytes[..end]).is_err() {
                end -= 1;
            }
            text.bytes[end..end + 3].copy_from_slice(b"...");
            text.len = end + 3;
        }
        text
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("<a panic message cut inside a character>")
    }

    /// The message for the thread's `Death`, on the heap if the heap can hold it; otherwise the
    /// static `MESSAGE_LOST` (the report printed the message already).
    pub fn to_death_message(&self) -> Cow<'static, str> {
        let mut message = String::new();
        if message.try_reserve_exact(self.len).is_err() {
            return Cow::Borrowed(MESSAGE_LOST);
        }
        message.push_str(self.as_str());
        Cow::Owned(message)
    }
}

/// The message a `Death::Panic` carries when the heap could not hold the real one.
pub const MESSAGE_LOST: &str = "<the panic message did not fit in the exhausted heap; see the report>";

impl fmt::Write for PanicText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = Self::CAPACITY - self.len;
        let n = s.len().min(room);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() { Err(fmt::Error) } else { Ok(()) }
    }
}

impl fmt::Display for PanicText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a context may not die alone right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MustNotDie {
    NotAThread,
    SchedulerNotRunning,
    FatalReportUnderWay,
    HoldsSpinLocks(u32),
    InterruptsDisabled,
}

impl fmt::Display for MustNotDie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MustNotDie::NotAThread => write!(f, "it is not a thread"),
            MustNotDie::SchedulerNotRunning => write!(f, "the scheduler does not run yet"),
            MustNotDie::FatalReportUnderWay => write!(f, "a fatal report is under way"),
            MustNotDie::HoldsSpinLocks(n) => write!(f, "it holds {n} spin lock(s)"),
            MustNotDie::InterruptsDisabled => write!(f, "it runs with interrupts disabled"),
        }
    }
}

/// May context `g`, running with interrupts `interrupts_enabled`, die alone? The rule every
/// death path asks (see the module comment).
pub fn may_die_alone(g: &G, interrupts_enabled: bool) -> Result<(), MustNotDie> {
    if !g.is_thread() {
        return Err(MustNotDie::NotAThread);
    }
    if !crate::sched::schedule::is_running() {
        return Err(MustNotDie::SchedulerNotRunning);
    }
    if crate::fatal::in_progress() {
        return Err(MustNotDie::FatalReportUnderWay);
    }
    if g.preemptible(interrupts_enabled) {
        return Ok(());
    }
    // Not preemptible: say why.
    match g.locks.load(Ordering::Relaxed) {
        0 => Err(MustNotDie::InterruptsDisabled),
        n => Err(MustNotDie::HoldsSpinLocks(n)),
    }
}

/// The first line of a stack-overflow report: `stack overflow in thread 7 "name": rsp ..., stack
/// ..., guard ...`, the same whichever check caught it.
pub struct OverflowLine<'a> {
    pub g: &'a G,
    pub rsp: usize,
}

impl fmt::Display for OverflowLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (lo, hi) = self.g.stack_bounds();
        write!(
            f,
            "stack overflow in {}: rsp {:#x}, stack {lo:#x}..{hi:#x} (reserved from {:#x}), guard {:#x}",
            self.g,
            self.rsp,
            crate::mm::stack::reserved_lo(self.g),
            lo + crate::records::g::STACK_GUARD
        )
    }
}

/// Prints the report of thread `g`'s stack overflow (it may die alone): what, which check caught
/// it and why, and the backtrace; counts it.
pub fn report_overflow(g: &G, rsp: usize, caught_by: fmt::Arguments<'_>, trace: &Backtrace) {
    crate::records::percpu::this_cpu_unchecked().counters.overflows.fetch_add(1, Ordering::Relaxed);
    crate::trace::overflowed(g, rsp);
    crate::println!("{}", OverflowLine { g, rsp });
    crate::println!("  caught by {caught_by}");
    trace.print();
}

/// Runs `f`; if the thread dies inside it, `hook(arg)` runs before the thread's stack is freed
/// (on the thread, or on g0 for an overflow: the hook must not block).
///
/// # Safety
/// `arg` must stay valid for `hook` while `f` runs (it usually points into the caller's frame).
pub unsafe fn on_death<R>(hook: unsafe fn(*const ()), arg: *const (), f: impl FnOnce() -> R) -> R {
    let g = crate::records::percpu::current();
    let node = DeathHook { run: hook, arg, outer: g.death_hooks.get() };
    g.death_hooks.set(&node);
    let r = f();
    g.death_hooks.set(node.outer);
    r
}

/// Runs and forgets the death hooks of dying thread `g`, innermost first. On the thread or on g0,
/// before the thread's stack is freed.
pub fn run_death_hooks(g: &G) {
    let mut hook = g.death_hooks.replace(core::ptr::null());
    while !hook.is_null() {
        // SAFETY: hooks are linked by `on_death` from frames of `g`'s stack, which is still mapped
        // (it is freed only after this); each runs once, here.
        let (run, arg, outer) = unsafe { ((*hook).run, (*hook).arg, (*hook).outer) };
        // SAFETY: `on_death`'s caller promised `arg` is valid for `run` while its frame lives.
        unsafe { run(arg) };
        hook = outer;
    }
}

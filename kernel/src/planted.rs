//! Planted kernel bugs (`inject=NAME`, cargo feature `planted-bugs`): deliberate mistakes in the
//! kernel's own code -- scheduler, run queues, timers, channels and `select!`, `Mutex`,
//! `WaitGroup`, `Once`, preemption, thread stacks, the TLB -- each a line or two different from
//! the correct code, so that
//! the torture test can be shown to catch them and the preemption strategies compared
//! (`cargo run -- hunt`, docs/stress.md). Linux's rcutorture has the same idea
//! (`torture_type=busted`).
//!
//! Each planted line sits behind `planted::is(Bug::X)`. Without the feature, `is` is the
//! constant `false` and `SELECTED` does not exist, so every planted path is dead code and
//! compiles away (`qemu-tests/tests/planted.rs` checks the ELF's symbols); `inject=` naming a
//! kernel bug is then a boot error (`main.rs`). The table of names exists in both builds, so
//! that the error can say what the name is.
//!
//! Invariants: a bug is selected once, at boot, before any other CPU or thread runs; nothing in
//! the kernel or the torture test asks which bug is selected except the planted lines
//! themselves (detection comes from the invariants alone).
//!
//! This module sits on floor 1 (it imports nothing) so that every floor may plant a bug.

/// A planted kernel bug.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Bug {
    MutexParkUnlocked = 1,
    MutexUnlockEarlyCheck,
    ChanRecvParkUnlocked,
    SelectClaimNoCas,
    RunnextStealNoCas,
    AsyncPreemptSpinlock,
    CoopPreemptSpinlock,
    TimerLockInTick,
    WaitGroupWaitUnlocked,
    OnceDoneEarly,
    StackFreedWhileInUse,
    TlbFlushBeforeIrqOff,
}

/// One row of `inject=list`.
pub struct Info {
    pub bug: Bug,
    pub name: &'static str,
    pub subsystem: &'static str,
    /// The real bug class it models, and the Go or Linux bug it is modelled on.
    pub models: &'static str,
}

/// Every planted kernel bug.
pub const BUGS: [Info; 12] = [
    Info {
        bug: Bug::MutexParkUnlocked,
        name: "mutex-park-unlocked",
        subsystem: "sync/mutex",
        models: "check-then-park without the wait-queue lock: a lost wake-up (Go's lock_futex.go announces a sleeper and re-checks before futexsleep)",
    },
    Info {
        bug: Bug::MutexUnlockEarlyCheck,
        name: "mutex-unlock-early-check",
        subsystem: "sync/mutex",
        models: "unlock reads \"any waiters?\" before releasing: a lost wake-up (the classic broken futex unlock, Drepper's \"Futexes are tricky\")",
    },
    Info {
        bug: Bug::ChanRecvParkUnlocked,
        name: "chan-recv-park-unlocked",
        subsystem: "sync/chan",
        models: "a receiver drops the channel lock between finding nothing and queueing itself: a lost wake-up (Go's chanrecv keeps the lock through gopark)",
    },
    Info {
        bug: Bug::SelectClaimNoCas,
        name: "select-claim-no-cas",
        subsystem: "sync/select",
        models: "a select case claimed by load-then-store instead of a compare-and-swap: two cases win, a message is lost (Go's selectDone CAS in selectgo)",
    },
    Info {
        bug: Bug::RunnextStealNoCas,
        name: "runnext-steal-no-cas",
        subsystem: "sched/runq",
        models: "a runnext steal without its compare-and-swap: a thread run twice or lost (Go's runqgrab CAS on runnext)",
    },
    Info {
        bug: Bug::AsyncPreemptSpinlock,
        name: "async-preempt-spinlock",
        subsystem: "sched/preempt",
        models: "asynchronous preemption allowed while a spin lock is held (Go's canPreemptM requires m.locks == 0; Linux's preempt_count)",
    },
    Info {
        bug: Bug::CoopPreemptSpinlock,
        name: "coop-preempt-spinlock",
        subsystem: "sched/stackguard",
        models: "a prologue preemption that ignores the lock depth (Go's newstack: \"if thisg.m.locks != 0 ... do not preempt\")",
    },
    Info {
        bug: Bug::TimerLockInTick,
        name: "timer-lock-in-tick",
        subsystem: "sched/timer",
        models: "the timer interrupt takes the timer heap's plain spin lock, which threads also hold: a self-deadlock (Linux: a lock taken in IRQ context without spin_lock_irqsave)",
    },
    Info {
        bug: Bug::WaitGroupWaitUnlocked,
        name: "waitgroup-wait-unlocked",
        subsystem: "sync/waitgroup",
        models: "Wait checks the counter before taking the waiters' lock: a lost wake-up (Go's WaitGroup.Wait re-checks under its semaphore)",
    },
    Info {
        bug: Bug::OnceDoneEarly,
        name: "once-done-early",
        subsystem: "sync/once",
        models: "Once marked done before its function has run: callers see uninitialised data (the incorrect Do that Go's sync/once.go warns about: done set before f returns)",
    },
    Info {
        bug: Bug::StackFreedWhileInUse,
        name: "stack-freed-while-in-use",
        subsystem: "sched/thread",
        models: "a finishing thread gives its stack back before it has stopped running on it: a new thread gets the stack and both write it (Go's goexit0 and Linux's finish_task_switch free a dead task's stack only once off it)",
    },
    Info {
        bug: Bug::TlbFlushBeforeIrqOff,
        name: "tlb-flush-before-irq-off",
        subsystem: "mm/tlb",
        models: "a TLB shootdown whose requester flushes locally before it is pinned to its CPU: it migrates, and the CPU it moved to keeps the stale entry (Linux's flush_tlb_mm_range disables preemption first, get_cpu)",
    },
];

/// The bug named `name`, if it is a planted kernel bug (in every build).
pub fn from_name(name: &str) -> Option<Bug> {
    BUGS.iter().find(|info| info.name == name).map(|info| info.bug)
}

/// Is this kernel built with the planted bugs?
pub const BUILT: bool = cfg!(feature = "planted-bugs");

/// The selected bug's number (0: none). Set once at boot.
#[cfg(feature = "planted-bugs")]
#[unsafe(no_mangle)]
static PLANTED_BUG_SELECTED: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

/// Selects `bug` (at boot, before any other CPU or thread runs).
#[cfg(feature = "planted-bugs")]
pub fn select(bug: Bug) {
    PLANTED_BUG_SELECTED.store(bug as u8, core::sync::atomic::Ordering::Relaxed);
}

/// Is `bug` the planted one? One load and compare; the constant `false` without the feature.
#[inline(always)]
pub fn is(bug: Bug) -> bool {
    #[cfg(feature = "planted-bugs")]
    {
        PLANTED_BUG_SELECTED.load(core::sync::atomic::Ordering::Relaxed) == bug as u8
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        let _ = bug;
        false
    }
}

/// The selected bug, if any (for the stress test's banner line).
pub fn selected() -> Option<&'static Info> {
    BUGS.iter().find(|info| is(info.bug))
}

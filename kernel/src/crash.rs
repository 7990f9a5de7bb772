//! Deliberate failures (`crash=NAME`), so that the runner's handling of each way a run can end,
//! and the kernel's rules for what must be fatal, can be tested from the host.
//!
//! Two kinds: failures at boot, on CPU 0's scheduler context before any thread exists (a panic on
//! g0, a triple fault, a hang, the overflow of g0's or the interrupt stack, a thread switch asked
//! for on g0, a fatal error while a CPU is stuck half-way through its start-up), and failures
//! inside a thread, where the rule "this thread cannot die alone" must turn a thread's mistake into
//! a fatal report (an overflow with interrupts disabled, a yield with a spin lock held, two spin
//! locks taken against the lock order), and deadlocks the kernel must find and report with every
//! thread's traceback (`sched::deadlock`): a channel nobody sends on, a `WaitGroup` never done,
//! two threads taking two mutexes in opposite orders while a third keeps running. A thread-mode
//! crash that nothing catches prints `crash: NAME was not caught` and fails the run, so a missing
//! check is never a pass.

use core::hint::black_box;

use crate::arch::qemu::ExitCode;
use crate::console::exit;

/// A deliberate failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    Panic,
    TripleFault,
    Hang,
    G0Overflow,
    InterruptStackOverflow,
    SwitchOnG0,
    StuckCpu,
    OverflowIrqsOff,
    YieldHoldingLock,
    LockOrder,
    DeadlockChan,
    DeadlockWaitGroup,
    DeadlockMutexCycle,
}

/// Every crash: its `crash=` name and what it does.
pub const CRASHES: [(Crash, &str, &str); 13] = [
    (Crash::Panic, "panic", "a panic on g0 at boot"),
    (Crash::TripleFault, "triple-fault", "an empty IDT and a breakpoint: the CPU resets"),
    (Crash::Hang, "hang", "halts with interrupts disabled"),
    (Crash::G0Overflow, "g0-overflow", "recursion on the scheduler stack"),
    (Crash::InterruptStackOverflow, "irq-overflow", "recursion in an interrupt handler"),
    (Crash::SwitchOnG0, "switch-on-g0", "yield_now called on the scheduler stack"),
    (Crash::StuckCpu, "stuck-cpu", "the last CPU never finishes its start-up; then a panic"),
    (Crash::OverflowIrqsOff, "overflow-irqs-off", "a thread overflows its stack with interrupts disabled"),
    (Crash::YieldHoldingLock, "yield-holding-lock", "a thread yields while holding a spin lock"),
    (Crash::LockOrder, "lock-order", "a thread takes two spin locks against the lock order"),
    (Crash::DeadlockChan, "deadlock-chan", "a thread receives on a channel nobody sends on; the first thread joins it"),
    (Crash::DeadlockWaitGroup, "deadlock-waitgroup", "a thread waits for a WaitGroup nobody marks done; joined"),
    (Crash::DeadlockMutexCycle, "deadlock-abba", "two threads take mutexes A, B in opposite orders; a third runs on"),
];

impl Crash {
    pub fn from_name(name: &str) -> Option<Crash> {
        CRASHES.iter().find(|(_, n, _)| *n == name).map(|(c, _, _)| *c)
    }

    pub fn name(self) -> &'static str {
        CRASHES.iter().find(|(c, _, _)| *c == self).map_or("?", |(_, n, _)| n)
    }

    /// Does this crash happen inside a thread (the scheduler runs), rather than at boot?
    pub fn in_thread(self) -> bool {
        matches!(
            self,
            Crash::OverflowIrqsOff
                | Crash::YieldHoldingLock
                | Crash::LockOrder
                | Crash::DeadlockChan
                | Crash::DeadlockWaitGroup
                | Crash::DeadlockMutexCycle
        )
    }
}

/// Fails at boot, on CPU 0's g0 with interrupts disabled, in the way `crash` names. For
/// `StuckCpu`, the CPU was already left stuck by `smp_boot::start_all`.
pub fn at_boot(crash: Crash) -> ! {
    crate::println!("crash: {} requested on the command line", crash.name());
    match crash {
        Crash::Panic | Crash::StuckCpu => panic!("crash={} requested", crash.name()),
        Crash::TripleFault => {
            // An empty IDT: the breakpoint cannot be delivered, nor the double fault, so the
            // CPU resets.
            let empty = x86_64::structures::DescriptorTablePointer { limit: 0, base: x86_64::VirtAddr::new(0) };
            // SAFETY: deliberately breaks interrupt handling to cause a triple fault.
            unsafe {
                x86_64::instructions::tables::lidt(&empty);
                core::arch::asm!("int3");
            }
        }
        Crash::Hang => {
            crate::println!("crash: hanging with interrupts disabled");
            crate::arch::cpu::halt_forever()
        }
        Crash::G0Overflow => {
            let _ = black_box(recurse(0));
        }
        Crash::InterruptStackOverflow => {
            // SAFETY: the test vector's handler recurses; the overflow is fatal by design.
            unsafe { core::arch::asm!("int {v}", v = const crate::arch::vectors::TEST_RECURSE) };
        }
        Crash::SwitchOnG0 => crate::sched::yield_now(),
        _ => in_thread(crash),
    }
    not_caught(crash)
}

/// Fails inside the thread that runs it, in the way `crash` names; runs as the first thread.
pub fn in_thread(crash: Crash) -> ! {
    crate::println!("crash: {} requested on the command line", crash.name());
    match crash {
        Crash::OverflowIrqsOff => {
            let _irq = crate::arch::cpu::IrqGuard::new();
            let _ = black_box(recurse(0));
        }
        Crash::YieldHoldingLock => {
            static LOCK: crate::records::spin::SpinLock<u64> =
                crate::records::spin::SpinLock::new(crate::records::spin::Rank::Object, 0);
            let held = LOCK.lock();
            crate::sched::yield_now();
            drop(held);
        }
        Crash::LockOrder => {
            // Frames are the innermost memory lock; the heap comes before them.
            static INNER: crate::records::spin::SpinLock<()> =
                crate::records::spin::SpinLock::new(crate::records::spin::Rank::Frames, ());
            static OUTER: crate::records::spin::SpinLock<()> =
                crate::records::spin::SpinLock::new(crate::records::spin::Rank::Heap, ());
            let inner = INNER.lock();
            let outer = OUTER.lock();
            drop((outer, inner));
        }
        Crash::DeadlockChan => {
            let never = crate::sync::chan::<u64>(0);
            let receiver = never.clone();
            let _ = crate::sched::spawn("receiver", move || receiver.recv()).join();
        }
        Crash::DeadlockWaitGroup => {
            static GROUP: crate::sync::WaitGroup = crate::sync::WaitGroup::new();
            GROUP.add(1);
            let _ = crate::sched::spawn("waiter", || GROUP.wait()).join();
        }
        Crash::DeadlockMutexCycle => abba(),
        other => at_boot(other),
    }
    not_caught(crash)
}

/// Two threads take mutexes A and B in opposite orders, each pausing with the first one held, so
/// that each ends up waiting for the other; this thread keeps running (sleeping and waking), so
/// not all threads are asleep: only the wait-for graph shows the cycle.
fn abba() {
    use alloc::sync::Arc;
    use core::time::Duration;
    let a = Arc::new(crate::sync::Mutex::new(0u64));
    let b = Arc::new(crate::sync::Mutex::new(0u64));
    let take = |name, first: Arc<crate::sync::Mutex<u64>>, second: Arc<crate::sync::Mutex<u64>>| {
        crate::sched::spawn(name, move || {
            let mut held = first.lock();
            crate::sched::sleep(Duration::from_millis(10));
            *held += *second.lock();
        })
    };
    let one = take("abba-1", a.clone(), b.clone());
    let two = take("abba-2", b, a);
    let end = crate::time::now() + Duration::from_secs(5);
    while crate::time::now() < end && !(one.is_finished() && two.is_finished()) {
        crate::sched::sleep(Duration::from_millis(1));
    }
}

fn not_caught(crash: Crash) -> ! {
    crate::println!("crash: {} was not caught", crash.name());
    exit(ExitCode::Failure)
}

/// Recurses without end (a frame of 256 bytes each), until the prologue check stops it.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let pad = black_box([depth; 32]);
    if depth == u64::MAX { 0 } else { recurse(depth + 1) + pad[3] }
}

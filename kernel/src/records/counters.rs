//! Per-CPU counters: what the scheduler and the stack guards did, for statistics and tests.
//!
//! Each CPU increments only its own counters (relaxed atomics: no ordering is implied), so
//! counting costs no shared cache line; readers sum over CPUs (`totals`).

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        pub struct CpuCounters {
            $($(#[$doc])* pub $name: AtomicU64,)*
            /// Address of the last breakpoint's trap frame (a test checks which stack it is on).
            pub last_trap_frame: AtomicUsize,
        }

        /// A snapshot of counters summed over CPUs (or of one CPU).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct Totals {
            $(pub $name: u64,)*
        }

        impl CpuCounters {
            pub const fn new() -> CpuCounters {
                CpuCounters { $($name: AtomicU64::new(0),)* last_trap_frame: AtomicUsize::new(0) }
            }

            pub fn snapshot(&self) -> Totals {
                Totals { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl Totals {
            /// Adds `other`, field by field.
            pub fn add(&mut self, other: &Totals) {
                $(self.$name += other.$name;)*
            }

            /// `self - earlier`, field by field.
            pub fn since(&self, earlier: &Totals) -> Totals {
                Totals { $($name: self.$name.wrapping_sub(earlier.$name),)* }
            }
        }
    };
}

counters! {
    /// Threads created.
    spawns,
    /// Threads switched in (context switches).
    switches,
    /// Threads taken from another CPU's run queue.
    steals,
    /// Threads started on a CPU other than the one they last ran on (or, never run yet, were
    /// created on): stolen, taken from the global queue, or readied or spawned by a thread on
    /// another CPU.
    migrations,
    /// Threads taken from the global run queue.
    global_gets,
    /// Times the CPU halted for lack of work.
    idles,
    /// Timer interrupts.
    ticks,
    /// Entries into the stack-guard slow path (`morestack`).
    morestack,
    /// Slow-path entries counted in count mode (hook coverage test).
    hook_counted,
    /// Preemption requests made (timer).
    preempt_requests,
    /// Preemptions taken at a prologue (cooperative).
    preempt_coop,
    /// Preemptions injected from the timer interrupt (asynchronous).
    preempt_async,
    /// Requests deferred because the thread held locks or had interrupts off.
    preempt_deferred,
    /// Stack overflows (threads killed, or fatal).
    overflows,
    /// Overflows caught while the thread could not die alone, deferred (`sched::death`).
    overflows_deferred,
    /// Stack growth steps on this CPU (slow path and page faults).
    stack_growths,
    /// Of those, growths by the page-fault handler (a frame skipped the guard zone).
    fault_growths,
    /// Breakpoint exceptions.
    breakpoints,
    /// Forced preemption points reached by a preemptible thread (`always-preempt`, `sched::explore`).
    forced_points,
    /// Of those, points that preempted (all of them, except under PCT).
    forced_preempts,
    /// Asynchronous preemptions injected by the `async:N` strategy's timer.
    explore_injections,
    /// CPU exceptions of any kind.
    exceptions,
    /// Non-maskable interrupts that were not a fatal report's stop signal.
    nmis,
    /// Interrupts on vectors no handler claims (acknowledged and ignored).
    unclaimed_irqs,
    /// Wake-up IPIs sent to idle CPUs.
    wakeups,
}

//! The scheduler: Go's design in a kernel.
//!
//! Concepts (see docs/scheduler.md for diagrams):
//! - A **thread** (`G`) is a kernel thread as cheap as a goroutine: a small record and a small
//!   growable stack. Its states are Runnable -> Running -> (Waiting -> Runnable | Dead).
//! - Each CPU has a **g0**: the scheduler's own context on its own stack. Every switch between
//!   two threads goes through g0 (`mcall` from the thread, `gogo` to the next), and g0 is
//!   never preempted.
//! - Each CPU has a local run queue with a `runnext` slot; one global queue is shared; idle
//!   CPUs steal (`records::runq`, `balance`).
//! - **park/ready** is the one way to block: every blocking operation (channels, mutexes,
//!   sleep, join) parks the thread under the lock of the thing it waits on, and whoever makes
//!   the condition true readies it. `park` releases that lock only on g0, after the thread is
//!   marked Waiting, so a concurrent `ready` can never be lost.
//! - **Preemption** is requested by poisoning `stackguard0` (`preempt`, `stackguard`); it
//!   happens at the thread's next prologue, or, for a thread in a tight loop, from the timer
//!   interrupt.
//!
//! Rejected designs: per-thread kernel stacks switched directly thread-to-thread (simpler, but
//! the scheduler would run on the outgoing thread's stack, and a stack overflow there could
//! not be reported); a single global run queue (simple, but every switch would contend for
//! one lock -- the per-CPU rings keep the common case lock-free).
//!
//! Interrupt handlers never ready threads: they only request preemption. So run-queue and
//! timer operations run either on g0 (interrupts off) or in a thread with interrupts off.
//!
//! Naming: a function whose name ends in `_m` runs on g0, called through `mcall` by the thread
//! it is about (`park_m`, `yield_m`, `exit_m`, `preempt_m`), as in Go's runtime.
//!
//! The files, each importing only those listed before it: `balance` (waking idle CPUs,
//! stealing), `vcpu_share`, `explore` (the forced-preemption strategies, PCT, the schedule
//! digest, recorded points), `timer` (the timer heaps' operations), `queue` (`ready`,
//! `runq_put`), `schedule` (the scheduler loop), `park` (park, yield, sleep), `preempt` (the whole
//! preemption story), `thread` (spawn, join, exit), `death` (the rule for dying alone, overflow
//! reports, death hooks), `stackguard` (the prologue hook and its slow path). Beside them, for
//! seeing the scheduler: `traceback` (every thread's stack), `deadlock` (all threads asleep, mutex
//! cycles), `monitor` (`schedtrace=`, `watchdog=`). This file only names them and the scheduler's
//! API.

pub mod balance;
mod balance_tests;
pub mod deadlock;
pub mod death;
pub mod explore;
mod gdb_tests;
pub mod monitor;
pub mod park;
pub mod preempt;
mod preempt_tests;
pub mod queue;
pub mod schedule;
mod smp_tests;
pub mod stackguard;
mod tests;
pub mod thread;
pub mod timer;
pub mod traceback;
pub mod vcpu_share;

pub use park::{park, sleep, yield_now};
pub use queue::ready;
pub use schedule::run_scheduler;
pub use thread::{JoinHandle, spawn, spawn_on, try_spawn};

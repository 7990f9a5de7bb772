//! Floor 2, the records: the data that the assembly reads and every floor above shares -- a
//! thread's `G` record (its stack bounds, guard and lock depth), each CPU's `PerCpu` block,
//! the counters, the run-queue rings and timer heaps those blocks hold, the spin locks with
//! their lock order, and the assembly itself: the entry point, the context switch and the trap
//! entry stubs.
//!
//! These files form the one knot of the kernel that cannot be untied: a `G` holds spin locks,
//! a spin lock raises the running `G`'s lock depth, found through its `PerCpu`. Nothing here
//! imports from a floor above; the assembly enters the floors above through named doors
//! (`kernel_start`, `trap_dispatch`, `switch_refused`), listed in docs/architecture.md.

pub mod counters;
pub mod cpu_setup;
pub mod exit;
pub mod explore;
pub mod g;
pub mod lockrank;
pub mod percpu;
pub mod runq;
pub mod spin;
pub mod start;
pub mod switch;
pub mod timer_heap;
pub mod trap_entry;

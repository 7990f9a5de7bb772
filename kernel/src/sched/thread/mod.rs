//! Threads: spawning, joining, the records' free list, and how a thread ends.
//!
//! `spawn(name, f)` is Prologue's `go` statement (`spawn`). It takes a `G` record from the free
//! list (Go's `gfget`, `free_list`), a stack from the stack pool, copies the closure `f` onto the
//! top of the new stack (so spawning allocates nothing on the heap in the common case), and puts
//! the thread in its CPU's `runnext` slot (Go's `newproc`), so it runs as soon as the spawner
//! blocks or yields.
//!
//! A thread ends in one of four ways, all through `exit_m` on g0 (`exit`: the thread's stack
//! cannot be freed while the thread runs on it): it returns (its result is kept in its `G` for
//! the join handle), it panics, it overflows its stack, or it takes a CPU exception. The last
//! three are a `Death`, which the join handle returns as `Err` (`join`).
//!
//! The join protocol: `ExitState` (in `records::exit`) holds a small lock, `done`, the parked
//! joiner if any, the death or the result, and a reference count (the thread and its handle).
//! The thread's exit sets `done` and readies the joiner under the lock; `join` parks under the
//! same lock, which `park` releases only after the joiner is marked waiting, so the wake-up
//! cannot be lost. The `G` goes back to the free list when both references are gone.
//!
//! Invariants: a thread never exits holding a spin lock; `exit_m` runs on the thread's CPU's g0
//! with the thread no longer on its stack.

mod exit;
pub mod free_list;
mod join;
mod spawn;

pub use crate::records::exit::Death;
pub use exit::{exit_dead, kill_from_trap, kill_on_g0};
pub use free_list::{for_each_thread, live_threads, release_cached};
pub use join::JoinHandle;
pub use spawn::{spawn, spawn_on, try_spawn};

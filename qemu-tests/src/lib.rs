//! Prologue's host test suite: what `cargo test` runs besides the host crates' unit tests.
//!
//! The test programs that use this library have the `libtest-mimic` harness (`tests/visible.rs`,
//! the trace, tracebacks and deadlock reports, and `tests/stress.rs` use it the same way):
//!
//! - `tests/ktests.rs`: every in-kernel test ("ktest") as its own host test, once per kernel
//!   configuration (`bios-smp1::sync::chan::close_wakes_receivers`, ...), plus one ktest booted
//!   with UEFI firmware. `cargo test NAME` runs the trials whose name contains NAME.
//! - `tests/runner.rs`: the runner's judgement of every way a run can end (panic, triple fault,
//!   hang, bad command line, stack overflows) and of the demo.
//!
//! The rule that shapes everything: booting is slow (seconds per boot under TCG emulation), so a
//! configuration boots **once** for all its selected trials, the first time one of them runs;
//! each trial then reads its own result line from that run's transcript. A trial passes only on
//! its own `test NAME ... ok` line: a missing line is a failure, never a pass.
//!
//! Modules: `kernels` (builds, cached per process, and the ktest list), `config` (the
//! configurations), `suite` (one configuration's shared run and each trial's verdict).

pub mod config;
pub mod kernels;
pub mod suite;

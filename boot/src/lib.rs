//! The Prologue runner as a library, shared by the `boot` command (`cargo run`) and the host
//! tests (`cargo test`): build a kernel variant, make a BIOS or UEFI disk image, run it in
//! QEMU, and judge the outcome from the kernel's own output and QEMU's exit status; the command
//! line (`cli`) and the stress farm (`farm`) live here too, so that tests can reach them.

pub mod against;
pub mod bench;
pub mod cli;
pub mod coverage;
pub mod farm;
pub mod figures;
pub mod gdb;
pub mod host;
pub mod hunt;
pub mod image;
pub mod kernel;
pub mod labs;
pub mod outcome;
pub mod qemu;
pub mod replay;
pub mod shrink;
pub mod symbols;
pub mod trace;

pub use image::Firmware;
pub use kernel::Variant;
pub use outcome::{Outcome, TestResult, Verdict, parse_test_results};
pub use qemu::{Input, RunConfig, RunResult, Watch, run};

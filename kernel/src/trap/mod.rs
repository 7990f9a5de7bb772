//! Floor 7, trap policy: what the kernel does when the CPU traps -- which handler serves a vector
//! (`dispatch`), what each exception means (`exceptions`), whether a faulting thread dies alone or the kernel
//! stops (`oops`), what a
//! page fault in a stack means (`page_fault`), and the panic handler (`panic`). The floors below
//! provide the mechanisms (the trap entry, the records, the scheduler's `kill_from_trap`); the
//! decisions are made here.

pub mod dispatch;
pub mod exceptions;
pub mod oops;
pub mod page_fault;
mod panic;

//! Synchronisation: Go's primitives for threads -- channels with `select!`, a sleeping `Mutex`,
//! `WaitGroup`, `Once`. Every blocking primitive is built on `sched::park`/`sched::ready`. (The
//! kernel's spin locks are in `records::spin`.)

pub mod chan;
pub mod mutex;
pub mod once;
pub mod select;
mod tests;
pub mod waitgroup;
pub mod waitq;
mod wake_tests;

pub use chan::{Chan, after, chan};
pub use mutex::Mutex;
pub use once::Once;
pub use waitgroup::WaitGroup;

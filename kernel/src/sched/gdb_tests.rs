//! A ktest with threads parked in known places, for the GDB helpers' test on the host
//! (`qemu-tests/tests/gdb.rs`): it parks "gdb-receiver" on a channel and "gdb-locker" on a mutex,
//! then calls `threads_parked`, where the host's gdb has a breakpoint and lists the threads with
//! `info kthreads` and `kthread N bt`. Without a debugger it is an ordinary test: the two threads
//! park, are let go, and finish with the values they were given.

use crate::ktest;
use crate::records::g::GState;
use crate::sched::thread::{JoinHandle, for_each_thread};
use crate::sync::{Mutex, chan};

/// Called while both threads are parked: the host's gdb stops here. `ids` are their thread ids.
/// Never inlined (gdb breaks on its name) and `black_box`ed (so the call is not optimised away).
#[inline(never)]
pub fn threads_parked(ids: [u64; 2]) {
    core::hint::black_box(ids);
}

/// Is the thread `id` parked?
fn is_waiting(id: u64) -> bool {
    let mut waiting = false;
    for_each_thread(|g| waiting |= g.id.get() == id && g.state() == GState::Waiting);
    waiting
}

/// Yields until the threads of `handles` are all parked.
fn until_parked<T, U>(handles: (&JoinHandle<T>, &JoinHandle<U>)) {
    let mut spins = 0u64;
    while !(is_waiting(handles.0.id()) && is_waiting(handles.1.id())) {
        spins += 1;
        assert!(spins < 1_000_000, "the two threads never parked");
        crate::sched::yield_now();
    }
}

ktest! {
    /// Two named threads park (a channel receive, a mutex lock); `threads_parked` sees them
    /// parked; then they are let go and return what they got.
    fn two_threads_parked_for_gdb() {
        static LOCK: Mutex<u64> = Mutex::new(0);
        let numbers = chan::<u64>(0);
        let rx = numbers.clone();
        let receiver = crate::sched::spawn("gdb-receiver", move || rx.recv());
        let guard = LOCK.lock();
        let locker = crate::sched::spawn("gdb-locker", || *LOCK.lock() + 1);
        until_parked((&receiver, &locker));
        threads_parked([receiver.id(), locker.id()]);
        drop(guard);
        numbers.send(41);
        assert_eq!(receiver.join().ok(), Some(Some(41)));
        assert_eq!(locker.join().ok(), Some(1));
    }
}

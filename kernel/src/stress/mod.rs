//! The torture test (`stress=SECONDS`): many threads doing a seeded random mix of everything the
//! kernel offers, while invariants are checked all along (Linux's locktorture and rcutorture,
//! in the small).
//!
//! Who runs:
//! - **Workers**, three per online CPU, unpinned (so the scheduler must spread them by stealing).
//!   Each loops over operations chosen by its own PRNG: spawn and join short-lived children
//!   (counted in a `WaitGroup` the parent waits on, all calling one `Once`),
//!   round trips through an echo child over buffered and unbuffered channels, `select!` with a
//!   timeout, increments of a shared counter under a `Mutex`, sleeps of 0-2 ms, heap churn,
//!   recursion up to ~150 KiB deep (the stack grows on demand), and loops without calls that
//!   only the timer's asynchronous preemption can interrupt. After each operation a worker
//!   publishes a progress tick and yields.
//! - **Lanes**: one channel each (unbuffered, capacity 1 or 8) with one or two producers and one
//!   consumer. A message is `(producer, sequence number)`; the consumer checks that every number
//!   is exactly the next one expected from that producer, so a lost or duplicated message is
//!   caught at the message that shows it, not only as a wrong total at the end.
//! - **The work queue**: a bounded FIFO built here from a `Mutex<VecDeque>` and two channels
//!   used as wait queues (a condition variable), with two producers and several consumers.
//! - **The coordinator** (`coordinator::run`, the first thread): it starts everything, is the
//!   starvation watchdog and prints a status line every 2.5 s, stops the run at the deadline,
//!   shuts everything down, and makes the final checks.
//!
//! Invariants, each violation a `stress: FAILURE: reason` line and a failure exit:
//! - no message lost or duplicated (lanes: at once; work queue: per-consumer order, and exact
//!   per-producer totals at the end);
//! - the `Mutex`-protected counter equals the atomic tally of its increments;
//! - every thread returns: workers, lane and queue threads, and every child (joined, `Ok`);
//! - no thread starves: a watched thread whose progress tick has not moved for 3 s while the
//!   run goes on is named, with what it was doing (progress is something done: a message sent
//!   or received, an item pushed or popped, an operation completed -- never a wake-up or a
//!   timeout);
//! - no wake-up is lost: at the end, once the producers have stopped, the consumers must receive
//!   everything sent within 3 s, before the lanes and the queue are closed (a close would wake a
//!   consumer stuck for ever); and a lane consumer whose `select!` timed out although a message had
//!   been sent to it before the deadline reports it at once (the timeout would hide it);
//! - values come back intact: children's results, echoes, heap blocks, stack frames;
//! - `WaitGroup::wait` returns only after every child's `done`, and `Once::call_once` only once
//!   its function has run;
//! - at the end, with everything joined and dropped, live threads, frames and heap are back
//!   to what they were at the start (`ktest::baseline`, compared here without panicking);
//! - the run did its work: enough operations of every kind, asynchronous preemptions of the
//!   call-free loops (with `preempt=async`), threads moving between CPUs (with more than one).
//!
//! Reproducibility: every thread draws its choices from its own wyrand PRNG, seeded from the
//! run's `seed=` and the thread's stream number, so a seed fixes what each thread does (though
//! not how the threads interleave).
//!
//! Preemption: all shared data is atomic, behind a `Mutex`, or in a channel, so the normal paths
//! are correct with a preemption at every prologue (`always-preempt`). No loop waits without
//! calling into the scheduler (workers yield after every operation), so `preempt=off` on one
//! CPU still lets the coordinator run.
//!
//! Planted bugs (`inject=NAME`, listed by `inject=list`) show the test catching real mistakes:
//! - `missing-recheck`: a queue consumer that was woken for an item pops without checking again
//!   that the queue is not empty (`if` instead of `while`); another consumer may have taken the
//!   item in between, and the pop finds nothing.
//! - `non-atomic-counter`: the shared counter is incremented as `load; call; store` without the
//!   mutex; an update made in between by another thread is lost, and the final count is short.
//! - `lost-wakeup`: a queue producer unregisters a waiting consumer but forgets its token; the
//!   consumer waits for ever (the watchdog, or the drain check at the end, names it).
//!
//! Files, each importing only those before it: `bugs` (the planted bugs), `queue` and `lanes`
//! (the work queue and the lanes' records), `shared` (random choices, kinds of operation, the
//! watched threads' slots, the shared state), `traffic` (the lanes' and the queue's producers and
//! consumers), `ops` (the workers' operations), `threads` (starting, draining, shutting down and
//! joining the watched threads), `coordinator` (`run`).
//!
//! Rejected designs:
//! - Pinning workers to CPUs (`spawn_on`): it would keep migration and stealing out of the test.
//! - One shared PRNG: choices would depend on the interleaving, and no run could be repeated.
//! - Checking messages only by totals at the end: a lost and a duplicated message cancel out,
//!   and the report could not say which message went wrong.
//! - A wake-up channel that receives one token per pushed item, waiter or not: tokens nobody
//!   needed pile up, so the planted `missing-recheck` bug would show up on one CPU without any
//!   race (a stale token is a spurious wake-up). The queue counts its registered waiters under
//!   the mutex and sends exactly one token per waiter, so the bug needs the real race: another
//!   consumer taking the item between the wake-up and the woken consumer's pop.

mod bugs;
mod coordinator;
mod lanes;
mod ops;
mod queue;
mod shared;
mod threads;
mod traffic;

pub use coordinator::run;

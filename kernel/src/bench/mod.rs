//! Benchmarks: what each primitive costs, in instructions (and memory, in bytes and threads).
//!
//! Run with `cargo run -- bench` (the runner adds QEMU's `-icount shift=0,sleep=off`, under which
//! the time-stamp counter counts executed instructions, so every figure is exact and the same from
//! run to run). Each benchmark reads the TSC before and after its timed region -- described, for
//! each, in `BENCHES` (`bench=list` prints the descriptions) -- and prints one line
//!
//! ```text
//! bench NAME: TOTAL UNIT / N THINGS = X.Y UNIT/THING
//! ```
//!
//! with the raw count, what it is divided by, and the quotient (the runner compares raw counts
//! between runs). The loop around an operation is part of its timed region (a few instructions).
//!
//! Benchmarks run on one CPU with timer preemption off (`preempt=off`, set by the runner), so
//! that a timer interrupt never moves a thread mid-measurement; the ticks themselves still arrive
//! (a few hundred instructions each, once per million) and are part of the counts.
//!
//! The operations that `bench/go` and `bench/linux` measure too (`spawn_join`, `yield`, the
//! channel and mutex benchmarks, `select_two_ready`) do exactly what those programs do, with
//! Prologue's primitives, so that the figures compare.

mod measure;
mod memory;
mod scheduling;
mod sync;
mod tracing;

use alloc::vec::Vec;

use measure::Figure;
use memory::*;
use scheduling::*;
use sync::*;
use tracing::*;

/// One benchmark: its name, what its timed region holds, and the function that runs it.
struct Bench {
    name: &'static str,
    about: &'static str,
    run: fn() -> Figure,
}

const BENCHES: &[Bench] = &[
    Bench {
        name: "spawn_join",
        about: "10,000 times: spawn a thread that returns its number, join it, check the number (after 100 untimed \
                warm-up spawns fill the record and stack pools); per thread spawned and joined",
        run: spawn_join,
    },
    Bench {
        name: "spawn_join_1_spawn",
        about: "`spawn_join` cut in three by TSC reads (10,000 spawns; the reads add a few instructions to each part), \
                part 1: the `spawn` call, until it returns (a record and a stack from their pools, the closure copied \
                onto the stack, the thread queued in `runnext`); per thread",
        run: spawn_join_1_spawn,
    },
    Bench {
        name: "spawn_join_2_start",
        about: "part 2 of `spawn_join`: from the `join` call to the new thread's first instruction (the joiner parks, \
                the scheduler picks the new thread, which starts); per thread",
        run: spawn_join_2_start,
    },
    Bench {
        name: "spawn_join_3_finish",
        about: "part 3 of `spawn_join`: from the new thread's last instruction until `join` returns its result (the \
                result stored, the thread's exit, its stack back to the pool, the joiner woken and run, the record \
                recycled); per thread",
        run: spawn_join_3_finish,
    },
    Bench {
        name: "yield",
        about: "20,000 `yield_now` of one thread while a second one yields in a loop, each noting a switch when it \
                finds the other ran last (a few instructions per yield); per switch counted",
        run: yield_switch,
    },
    Bench {
        name: "chan_unbuffered_round_trip",
        about: "20,000 round trips over two unbuffered channels to an echo thread (send, the echo's receive and send, \
                receive, two switches; one untimed round trip first); per round trip",
        run: unbuffered_round_trip,
    },
    Bench {
        name: "chan_buffered_send_recv",
        about: "1,600 batches, by one thread, of 64 sends into a channel of capacity 64 (nobody waits on it) and 64 \
                receives: every value goes through the buffer; per value sent and received",
        run: buffered_send_recv,
    },
    Bench {
        name: "chan_buffered_pipeline",
        about: "100,000 values from a producer thread to a consumer through a channel of capacity 64; neither blocks in \
                the channel (the producer yields while it is full, the consumer while it is empty), so every value \
                goes through the buffer; per value",
        run: buffered_pipeline,
    },
    Bench {
        name: "mutex_uncontended",
        about: "100,000 lock + unlock of a Mutex only this thread uses; per lock + unlock",
        run: mutex_uncontended,
    },
    Bench {
        name: "mutex_contended",
        about: "two threads, 5,000 iterations each: lock; yield; unlock; yield until the other has taken it, so that \
                every acquisition changes hands (checked), the other having parked on the mutex; from after the \
                second thread is spawned until it is joined; per acquisition",
        run: mutex_contended,
    },
    Bench {
        name: "select_two_ready",
        about: "20,000 `select!` over two buffered channels that both hold values every time (filled with 20,001 \
                values each before the timer starts, no refill in the loop); per select",
        run: select_two_ready,
    },
    Bench {
        name: "sleep_zero",
        about: "10,000 `sleep(0)`: a timer added, the thread parked, the timer fired by the scheduler, the thread \
                readied; per sleep",
        run: sleep_zero,
    },
    Bench {
        name: "heap_alloc_free_64",
        about: "100,000 allocations and frees of a 64-byte box; per allocation + free",
        run: heap_alloc_free,
    },
    Bench {
        name: "stack_alloc_free_pool",
        about: "20,000 stack allocations and frees from the stack pool (no mapping); per allocation + free",
        run: stack_from_pool,
    },
    Bench {
        name: "stack_alloc_free_fresh",
        about: "5,000 stacks carved from fresh frames (a slot, a frame, its page-table entry) and released (the \
                reverse), bypassing the pool; per allocation + release",
        run: stack_from_frames,
    },
    Bench {
        name: "stack_growth_step",
        about: "200 fresh threads each recurse 5 KiB deep twice: the first time the 4 KiB stack grows once (to 8 KiB, \
                by the slow path; by the page-fault handler in the uninstrumented builds), the second time it does \
                not; the difference of the two counts, summed; per growth",
        run: stack_growth_step,
    },
    Bench {
        name: "call_heavy",
        about: "recursive `fib(24)`, almost nothing but calls and returns; per call (150,049 calls, computed)",
        run: call_heavy,
    },
    Bench {
        name: "trace_event_off",
        about: "100,000 scheduler-trace call sites (`trace::idle`) with the trace off: the inlined load and branch; \
                per event not recorded",
        run: trace_event_off,
    },
    Bench {
        name: "trace_event_on",
        about: "100,000 scheduler-trace events (`trace::idle`) recorded into this CPU's 64 KiB ring (the trace turned \
                on for the loop only): per event",
        run: trace_event_on,
    },
    Bench {
        name: "thread_records_release",
        about: "freeing the cached records of 20,000 exited threads (`thread::release_cached`: the free list \
                unlisted from the list of all records, then freed); per record",
        run: thread_records_release,
    },
    Bench {
        name: "idle_thread_memory",
        about: "memory in use (frames and heap bytes, page tables included) with 10,000 threads parked on a channel, \
                minus before they were spawned; per thread",
        run: idle_thread_memory,
    },
    Bench {
        name: "threads_max",
        about: "threads spawned (each parked on a channel) until memory runs out, in a 1 GiB guest",
        run: threads_max,
    },
];

/// Runs the benchmarks named in `which` (comma-separated, or `all`), or describes them all
/// (`list`), and exits.
pub fn run(which: &str) -> ! {
    use crate::arch::qemu::ExitCode;
    use crate::console::exit;
    if which == "list" {
        for b in BENCHES {
            crate::println!("benchmark {}: {}", b.name, b.about);
        }
        exit(ExitCode::Success);
    }
    for name in which.split(',').filter(|w| *w != "all") {
        if !BENCHES.iter().any(|b| b.name == name) {
            crate::println!("bench: FAILURE: no benchmark named '{name}' (bench=list shows them)");
            exit(ExitCode::Failure);
        }
    }
    let selected: Vec<&Bench> =
        BENCHES.iter().filter(|b| which == "all" || which.split(',').any(|w| w == b.name)).collect();
    crate::println!(
        "bench: {} benchmarks; build: {}{}; preempt={:?}; stack_init {} KiB",
        selected.len(),
        if cfg!(prologue_plain) { "uninstrumented" } else { "instrumented" },
        if cfg!(feature = "always-preempt") { " + always-preempt" } else { "" },
        crate::sched::preempt::mode(),
        crate::mm::stack::thread_stack_sizes().1 / 1024
    );
    for b in selected {
        let f = (b.run)();
        crate::println!(
            "bench {}: {} {} / {} {} = {:.1} {}/{}",
            b.name,
            f.total,
            f.unit,
            f.ops,
            f.things,
            f.total as f64 / f.ops as f64,
            f.unit,
            f.thing
        );
    }
    crate::println!("bench: done");
    exit(ExitCode::Success)
}

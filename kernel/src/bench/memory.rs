//! Benchmarks of memory: heap allocation, stacks from the pool and from fresh frames, one stack
//! growth, the memory an idle thread holds, and how many threads fit in the guest.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::hint::black_box;
use core::sync::atomic::Ordering;
use core::time::Duration;

use super::measure::{Figure, instructions, time_loop};
use crate::arch::cpu::rdtsc;
use crate::sched::{spawn, yield_now};
use crate::sync::{Chan, chan};

pub(super) fn heap_alloc_free() -> Figure {
    time_loop(100_000, "allocations", "allocation", |i| {
        let b = Box::new([i as u8; 64]);
        black_box(&b);
    })
}

pub(super) fn stack_from_pool() -> Figure {
    // Prime the pool with one stack.
    crate::mm::stack::free(crate::mm::stack::alloc().expect("a stack"));
    time_loop(20_000, "stacks", "stack", |_| {
        let s = crate::mm::stack::alloc().expect("a stack");
        crate::mm::stack::free(black_box(s));
    })
}

pub(super) fn stack_from_frames() -> Figure {
    time_loop(5_000, "stacks", "stack", |_| {
        let s = crate::mm::stack::alloc_uncached().expect("a stack");
        crate::mm::stack::release_uncached(black_box(s));
    })
}

/// Recurses until the stack pointer is at or below `target`.
#[inline(never)]
fn use_stack(target: usize) -> u64 {
    let pad = black_box([0u64; 8]);
    if crate::arch::cpu::read_rsp() <= target { pad[1] } else { use_stack(target).wrapping_add(pad[2]) }
}

/// Instructions of `use_stack` 5 KiB deeper than here.
fn time_use_stack() -> u64 {
    let target = crate::arch::cpu::read_rsp() - 5 * 1024;
    let start = rdtsc();
    black_box(use_stack(target));
    rdtsc() - start
}

pub(super) fn stack_growth_step() -> Figure {
    const N: u64 = 200;
    let growths_before = crate::mm::stack::COUNTERS.growths.load(Ordering::Relaxed);
    let mut difference = 0;
    for _ in 0..N {
        crate::mm::stack::release_cached(); // the next stack is fresh (4 KiB), not a grown one
        difference += spawn("grower", || {
            let growing = time_use_stack(); // one growth, 4 -> 8 KiB
            let flat = time_use_stack(); // the same recursion, the stack already grown
            growing - flat
        })
        .join()
        .expect("grower");
    }
    let growths = crate::mm::stack::COUNTERS.growths.load(Ordering::Relaxed) - growths_before;
    assert_eq!(growths, N, "each grower must grow exactly once");
    instructions(difference, N, "growths", "growth")
}

/// Memory of an idle thread: 10,000 threads parked on a channel.
pub(super) fn idle_thread_memory() -> Figure {
    const N: u64 = 10_000;
    crate::ktest::baseline::release_caches();
    let before = crate::ktest::baseline::memory_in_use();
    let gate: Chan<()> = chan(0);
    let threads: Vec<_> = (0..N)
        .map(|_| {
            let gate = gate.clone();
            spawn("idle", move || gate.recv().is_none())
        })
        .collect();
    while gate.waiting_receivers() < N as usize {
        crate::sched::sleep(Duration::from_millis(1));
    }
    let bytes = crate::ktest::baseline::memory_in_use() - before;
    gate.close();
    for t in threads {
        t.join().expect("idle thread");
    }
    Figure { total: bytes as u64, ops: N, unit: "bytes", things: "threads", thing: "thread" }
}

/// The most threads alive at once: spawn parked threads until memory runs out.
pub(super) fn threads_max() -> Figure {
    let gate: Chan<()> = chan(0);
    let mut threads = Vec::new();
    loop {
        if threads.len() == threads.capacity() && threads.try_reserve(threads.len().max(1024)).is_err() {
            break;
        }
        let g = gate.clone();
        match crate::sched::try_spawn("idle", move || g.recv().is_none()) {
            Ok(t) => threads.push(t),
            Err(_) => break,
        }
        if threads.len() % 1024 == 0 {
            yield_now(); // let them park, so that each holds only what an idle thread holds
        }
    }
    let n = threads.len() as u64;
    gate.close();
    for t in threads {
        t.join().expect("idle thread");
    }
    Figure { total: n, ops: 1, unit: "threads", things: "guest", thing: "guest" }
}

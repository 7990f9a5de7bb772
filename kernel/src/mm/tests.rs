//! Tests of memory management: frames, heap, stacks, guard pages, exhaustion.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::ktest;
use crate::ktest::baseline::Baseline;
use crate::mm::layout::PAGE_SIZE;
use crate::mm::stack::{self, StackArea, StackError};
use crate::mm::{frame, heap};
use crate::sched::thread::Death;

ktest! {
    /// Many small boxes, one large vector, and long-lived allocations mixed with churn; the
    /// heap's use returns exactly to where it was.
    fn heap_churn_returns_to_baseline() {
        let base = Baseline::take();
        let small: Vec<Box<u64>> = (0..10_000u64).map(Box::new).collect();
        let large: Vec<u64> = (0..2_000_000u64).collect();
        let mut long_lived: Vec<Box<[u8]>> = Vec::new();
        for round in 0..2_000usize {
            let churn: Vec<u8> = alloc::vec![round as u8; 1 + round % 700];
            if round % 10 == 0 {
                long_lived.push(churn.into_boxed_slice());
            }
        }
        assert!(small.iter().enumerate().all(|(i, b)| **b == i as u64));
        assert_eq!(large.iter().sum::<u64>(), 2_000_000 * 1_999_999 / 2);
        assert!(long_lived.iter().enumerate().all(|(i, b)| b.len() == 1 + (i * 10) % 700 && b[0] == (i * 10) as u8));
        assert!(heap::stats().used > base.heap_used + 16_000_000);
        drop((small, large, long_lived));
        base.assert_restored();
    }
}

ktest! {
    /// Frames: N allocations are all distinct (checked with a bitmap of what was returned),
    /// and freeing them restores the free count.
    fn frames_are_unique_and_come_back() {
        const N: usize = 20_000;
        let before = frame::stats();
        let frames: Vec<_> = (0..N).map(|_| frame::alloc().expect("enough frames")).collect();
        assert_eq!(frame::stats().free, before.free - N);
        let top = frames.iter().map(|f| f.start_address().as_u64() / PAGE_SIZE as u64).max().unwrap_or(0) as usize;
        let mut seen = alloc::vec![0u64; top / 64 + 1];
        for f in &frames {
            let i = (f.start_address().as_u64() / PAGE_SIZE as u64) as usize;
            assert!(seen[i / 64] & (1 << (i % 64)) == 0, "frame {:#x} handed out twice", f.start_address());
            seen[i / 64] |= 1 << (i % 64);
        }
        drop(seen);
        for f in frames {
            frame::free(f);
        }
        assert_eq!(frame::stats(), before);
    }
}

ktest! {
    /// 10,000 stacks: each is written at its top and at its lowest mapped byte, then freed;
    /// frames go back to the baseline.
    fn ten_thousand_stacks() {
        let base = Baseline::take();
        let mut stacks = Vec::with_capacity(10_000);
        for i in 0..10_000usize {
            let s = stack::alloc().expect("memory for 10,000 stacks");
            // SAFETY: both bytes are inside the stack's mapped part, owned by this test.
            unsafe {
                ((s.top - 1) as *mut u8).write_volatile(i as u8);
                (s.mapped_lo as *mut u8).write_volatile(!(i as u8));
            }
            stacks.push(s);
        }
        for (i, s) in stacks.iter().enumerate() {
            // SAFETY: as above.
            let (top, bottom) = unsafe { (((s.top - 1) as *const u8).read_volatile(), (s.mapped_lo as *const u8).read_volatile()) };
            assert_eq!((top, bottom), (i as u8, !(i as u8)), "stack {i} was overwritten");
        }
        for s in stacks {
            stack::free(s);
        }
        base.assert_restored();
    }
}

ktest! {
    /// A write one byte below a stack's lowest usable address hits its guard page, and the
    /// fault is attributed to that stack.
    fn guard_page_below_a_stack_is_caught() {
        let s = stack::alloc().expect("a stack");
        let below = s.base - 1;
        let death = crate::sched::spawn("guard-writer", move || {
            // SAFETY: deliberately writes into a guard page; the fault kills this thread.
            unsafe { (below as *mut u8).write_volatile(1) };
        })
        .join()
        .expect_err("the write must fault");
        stack::free(s);
        match death {
            Death::Fault { vector: 14, cr2, .. } => {
                assert_eq!(cr2 as usize, below);
                assert_eq!(
                    stack::classify(below),
                    Some(StackArea::GuardPage { slot: s.slot, base: s.base, top: s.top }),
                    "the fault address is in this stack's guard page"
                );
            }
            other => panic!("expected a page fault in the guard page, got {other}"),
        }
    }
}

ktest! {
    /// Allocating stacks until memory runs out gives an `Err`, not a panic; freeing them all
    /// brings frames back, and allocation works again.
    fn stack_exhaustion_is_an_error() {
        let base = Baseline::take();
        // Room for every stack up front: the heap must not need frames while they run out.
        let mut stacks = Vec::with_capacity(frame::stats().free);
        let error = loop {
            match stack::alloc() {
                Ok(s) => stacks.push(s),
                Err(e) => break e,
            }
        };
        assert_eq!(error, StackError::OutOfFrames);
        assert!(stacks.len() > 1000, "only {} stacks before exhaustion", stacks.len());
        crate::println!("stack exhaustion after {} stacks", stacks.len());
        for s in stacks {
            stack::free(s);
        }
        base.assert_restored();
        let again = stack::alloc().expect("allocation works after exhaustion");
        stack::free(again);
        let v: Vec<u64> = (0..1000).collect();
        assert_eq!(v.len(), 1000);
    }
}

ktest! {
    /// An allocation larger than the heap's limit fails with a report and a panic of the
    /// allocating thread alone.
    #[expect(panic = "memory allocation of")]
    fn heap_exhaustion_panics_the_thread() {
        let limit = heap::stats().max;
        let v: Vec<u8> = Vec::with_capacity(limit + 1);
        core::hint::black_box(&v);
    }
}

/// Jumps to `target` (memory that is not executable): the fetch faults and kills the thread.
fn jump_to(target: usize) {
    // SAFETY: deliberately calls non-executable memory; the page fault kills this thread.
    let f: extern "C" fn() = unsafe { core::mem::transmute(target) };
    f();
}

ktest! {
    /// A thread that executes code on its own stack (mapped, not executable) or in the unmapped
    /// part of its own reservation dies of a page fault; it does not loop for ever in
    /// fault -> grow -> retry, and its join returns.
    fn executing_from_the_stack_is_a_fault() {
        for below_the_mapped_part in [false, true] {
            let t = crate::sched::spawn("stack-exec", move || {
                let target = if below_the_mapped_part {
                    let stack = crate::records::percpu::current().stack.get().expect("a thread has a stack");
                    stack.mapped_lo - 2 * PAGE_SIZE
                } else {
                    let code = core::hint::black_box([0xc3u8; 16]); // `ret`, on the stack
                    &code as *const [u8; 16] as usize
                };
                jump_to(target);
            });
            let where_ = if below_the_mapped_part { "the unmapped reservation" } else { "the mapped stack" };
            assert!(
                crate::ktest::helpers::finishes_within(&t, core::time::Duration::from_secs(2)),
                "a thread executing from {where_} never died (fault -> grow -> retry, for ever)"
            );
            match t.join() {
                Err(Death::Fault { vector: 14, error_code, .. }) => {
                    assert!(error_code & 0x10 != 0, "the fault is an instruction fetch: error code {error_code:#x}")
                }
                other => panic!("executing from {where_}: expected a page fault, got {other:?}"),
            }
        }
    }
}

ktest! {
    /// Unmapping a page and flushing it everywhere leaves no CPU with a stale translation, even
    /// when the flushing thread moves to another CPU half-way (forced preemption makes that
    /// likely): afterwards, reading the page faults on every CPU.
    fn a_flush_everywhere_reaches_every_cpu() {
        let cpus = crate::records::percpu::CPUS_ONLINE.load(core::sync::atomic::Ordering::Acquire) as usize;
        if cpus < 2 {
            crate::ktest_skip!("needs at least 2 CPUs (--smp 2)");
        }
        let read = |page: usize| {
            // SAFETY: reads a page that may be unmapped: a fault kills only this probing thread.
            move || unsafe { core::ptr::read_volatile(page as *const u64) }
        };
        // Every CPU always has a pinned thread to run, so a preempted thread waits in the global
        // queue until some CPU's fairness pass takes it: it often resumes on another CPU.
        static BUSY: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(true);
        BUSY.store(true, core::sync::atomic::Ordering::SeqCst);
        let yielders: Vec<_> = (0..cpus)
            .map(|cpu| {
                crate::sched::spawn_on(cpu, "tlb-busy", || {
                    while BUSY.load(core::sync::atomic::Ordering::SeqCst) {
                        crate::sched::yield_now();
                    }
                })
            })
            .collect();
        let mut stale_rounds = Vec::new();
        for round in 0..50 {
            let s = stack::alloc().expect("a stack");
            let page = s.top - PAGE_SIZE;
            for cpu in 0..cpus {
                crate::sched::spawn_on(cpu, "tlb-warm", read(page)).join().expect("the mapped page is readable");
            }
            let frame = crate::sched::spawn("tlb-unmap", move || {
                // SAFETY: the test owns the stack; its tables exist; the entry is put back below.
                let entry = unsafe { crate::mm::paging::leaf_entry(page) };
                let frame = entry.frame().expect("mapped");
                entry.set_unused();
                crate::mm::tlb::flush_everywhere(page, page + PAGE_SIZE);
                frame
            })
            .join()
            .expect("the unmapping thread");
            let stale: Vec<usize> =
                (0..cpus).filter(|&cpu| crate::sched::spawn_on(cpu, "tlb-check", read(page)).join().is_ok()).collect();
            // SAFETY: as above: the entry gets its frame back before the stack is freed.
            unsafe { crate::mm::paging::leaf_entry(page) }.set_frame(frame, crate::mm::paging::KERNEL_DATA);
            stack::free(s);
            if !stale.is_empty() {
                stale_rounds.push((round, stale));
            }
        }
        BUSY.store(false, core::sync::atomic::Ordering::SeqCst);
        for y in yielders {
            y.join().expect("yielder");
        }
        assert!(stale_rounds.is_empty(), "stale translations after flush_everywhere (round, CPUs): {stale_rounds:?}");
    }
}

ktest! {
    /// A stack growth that runs out of frames half-way gives back what it mapped without using the
    /// heap (growth runs on g0 for a thread that may hold the heap's lock, or in the page-fault
    /// handler), and the thread dies with an overflow report -- in both growth paths.
    fn a_failed_growth_needs_no_heap() {
        for path in ["prologue check", "page fault"] {
            let gate: crate::sync::Chan<()> = crate::sync::chan(0);
            let ready: crate::sync::Chan<()> = crate::sync::chan(0);
            let grower = {
                let (gate, ready) = (gate.clone(), ready.clone());
                crate::sched::spawn("grow-fail", move || {
                    // 8 KiB mapped: the next growth step maps two pages.
                    crate::ktest::helpers::use_stack(5 * 1024);
                    ready.send(());
                    gate.recv();
                    if path == "prologue check" {
                        crate::ktest::helpers::use_stack(9 * 1024);
                    } else {
                        core::hint::black_box(crate::ktest::helpers::big_frame());
                    }
                })
            };
            ready.recv().expect("the grower is ready");
            // Leave exactly one frame free (the hoard's own room is taken first).
            let mut hoard = Vec::with_capacity(frame::stats().free);
            while frame::stats().free > 1 {
                hoard.push(frame::alloc().expect("frames are left"));
            }
            gate.send(());
            let outcome = grower.join();
            for f in hoard {
                frame::free(f);
            }
            assert!(
                matches!(outcome, Err(Death::StackOverflow { .. })),
                "growth by the {path} with one frame left: expected a stack overflow, got {outcome:?}"
            );
        }
    }
}

/// Allocates heap blocks of `size` (at least 16 bytes) until one fails; each block holds the
/// address of the one allocated before it and its own size.
fn hoard_heap(size: usize, mut list: *mut usize) -> *mut usize {
    let layout = core::alloc::Layout::from_size_align(size, 8).expect("a valid layout");
    loop {
        // SAFETY: a non-zero layout; a null result means the heap is full.
        let block = unsafe { alloc::alloc::alloc(layout) }.cast::<usize>();
        if block.is_null() {
            return list;
        }
        // SAFETY: the block is ours and at least 16 bytes.
        unsafe { block.write(list as usize) };
        unsafe { block.add(1).write(size) };
        list = block;
    }
}

/// Frees every block of a list made by `hoard_heap`.
fn free_hoard(mut list: *mut usize) {
    while !list.is_null() {
        // SAFETY: each block was made by `hoard_heap`, which wrote its successor and size.
        let (next, size) = unsafe { (list.read() as *mut usize, list.add(1).read()) };
        let layout = core::alloc::Layout::from_size_align(size, 8).expect("a valid layout");
        // SAFETY: allocated with this layout, freed once.
        unsafe { alloc::alloc::dealloc(list.cast(), layout) };
        list = next;
    }
}

ktest! {
    /// A panic's message is formatted without the heap: a thread that panics while the heap is
    /// exhausted dies of that panic (formatting the message used to allocate, fail, and panic
    /// again, until the stack overflowed); its report prints the message, and its `Death` says the
    /// message did not fit.
    fn a_panic_needs_no_heap() {
        // Warm the thread-record and stack caches: the spawn below must not need the heap.
        crate::sched::spawn("warm", || ()).join().expect("warm-up");
        let previous = heap::set_limit(heap::stats().mapped);
        let mut list = core::ptr::null_mut();
        for size in [1 << 20, 1 << 16, 1 << 12, 1 << 8, 16] {
            list = hoard_heap(size, list);
        }
        let outcome = crate::sched::spawn("broke-panics", || panic!("out of heap, and still a message: {}", 42)).join();
        free_hoard(list);
        heap::set_limit(previous);
        match outcome {
            Err(Death::Panic(message)) => assert_eq!(message, crate::sched::death::MESSAGE_LOST),
            other => panic!("expected the thread's panic, got {other:?}"),
        }
    }
}

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

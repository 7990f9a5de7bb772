//! Tests of the architecture layer: exceptions, the interrupt stack, the serial port, ACPI.

use core::sync::atomic::Ordering;

use crate::arch::cpu::IrqGuard;
use crate::ktest;
use crate::records::percpu::{current, this_cpu};
use crate::sched::thread::Death;

ktest! {
    /// `int3` is handled (counted) and execution continues right after it.
    fn breakpoint_resumes() {
        let (after_int3, counted) = {
            let _irq = IrqGuard::new(); // stay on one CPU, whose counter we read
            let before = this_cpu().counters.breakpoints.load(Ordering::Relaxed);
            let mut after_int3 = 0u64;
            // SAFETY: the breakpoint handler returns to the next instruction.
            unsafe { core::arch::asm!("int3", "mov {0}, 42", out(reg) after_int3) };
            (after_int3, this_cpu().counters.breakpoints.load(Ordering::Relaxed) - before)
        };
        assert_eq!(after_int3, 42, "the instruction after int3 did not run");
        assert_eq!(counted, 1, "the breakpoint was not counted once");
    }
}

ktest! {
    /// An exception runs on this CPU's interrupt stack (IST1), not on the interrupted thread's.
    fn exception_runs_on_the_interrupt_stack() {
        let (frame, ist) = {
            let _irq = IrqGuard::new(); // stay on one CPU, whose interrupt stack we read
            // SAFETY: as above.
            unsafe { core::arch::asm!("int3") };
            let cpu = this_cpu();
            (cpu.counters.last_trap_frame.load(Ordering::Relaxed), cpu.arch.interrupt_stack.get())
        };
        let (lo, hi) = current().stack_bounds();
        assert!(ist.contains(frame), "trap frame {frame:#x} is not on the interrupt stack {:#x}..{:#x}", ist.lo, ist.hi);
        assert!(!(lo..hi).contains(&frame), "trap frame {frame:#x} is on the thread's stack");
    }
}

ktest! {
    /// A page fault at a chosen address kills the thread with a report whose CR2 is that address.
    fn page_fault_reports_the_address() {
        const ADDR: u64 = 0x0000_1234_5678_9000;
        let death = crate::sched::spawn("faulter", || {
            // SAFETY: deliberately reads unmapped memory; the fault kills this thread.
            unsafe { core::ptr::read_volatile(ADDR as *const u64) }
        })
        .join()
        .expect_err("reading unmapped memory must fault");
        match death {
            Death::Fault { vector: 14, cr2, error_code, .. } => {
                assert_eq!(cr2, ADDR);
                assert_eq!(error_code & 0b11, 0, "a read of a not-present page");
            }
            other => panic!("expected a page fault, got {other}"),
        }
    }
}

ktest! {
    /// The test framework's own expectation: a test may declare that it must fault.
    #[expect(fault = 6)]
    fn invalid_opcode_is_an_expected_fault() {
        // SAFETY: `ud2` raises #UD, which kills this thread as the test expects.
        unsafe { core::arch::asm!("ud2") };
    }
}

ktest! {
    /// Bytes sent through the UART in loopback mode come back unchanged.
    fn serial_loopback_round_trip() {
        use uart_16550::backend::Backend;
        use uart_16550::spec::registers::offsets::{DATA, LSR, MCR};
        const MESSAGE: &[u8] = b"Prologue \x00\xff serial round trip";
        let received = crate::console::with_uart(|uart| {
            let backend = uart.backend_mut();
            // SAFETY: offsets of COM1's own registers; loopback is undone below.
            unsafe {
                while backend.read(LSR as u8) & (1 << 6) == 0 {} // transmitter empty
                let mcr = backend.read(MCR as u8);
                backend.write(MCR as u8, mcr | (1 << 4)); // loopback on
                let mut got = [0u8; MESSAGE.len()];
                for (i, &byte) in MESSAGE.iter().enumerate() {
                    backend.write(DATA as u8, byte);
                    while backend.read(LSR as u8) & 1 == 0 {} // data ready
                    got[i] = backend.read(DATA as u8);
                }
                backend.write(MCR as u8, mcr);
                got
            }
        })
        .expect("the serial port exists");
        assert_eq!(&received[..], MESSAGE);
    }
}

ktest! {
    /// The MADT lists as many CPUs as QEMU was started with (`-smp`, read from fw_cfg).
    fn madt_counts_the_cpus() {
        let boot_info = crate::boot_info();
        let rsdp = boot_info.rsdp_addr.into_option().expect("the bootloader found the RSDP");
        let list = crate::arch::acpi::cpus(rsdp, this_cpu_apic_id()).expect("the MADT parses");
        let qemu = crate::arch::fwcfg::cpu_count().expect("fw_cfg is present");
        assert_eq!(list.count, usize::from(qemu), "MADT CPUs vs QEMU -smp");
    }
}

fn this_cpu_apic_id() -> u32 {
    let _irq = IrqGuard::new();
    this_cpu().apic_id.load(Ordering::Relaxed)
}

ktest! {
    /// The rule "no instrumented code before the GS base is valid", checked on every CPU: each
    /// CPU's GS base is its own per-CPU block, and virtual address 8 -- where an early hook
    /// would have read `curg` with GS base 0 -- is unmapped, so such a call would have faulted
    /// before any handler existed and reset the CPU: this boot (and every CPU's start) would
    /// not have happened.
    fn gs_base_is_valid_on_every_cpu() {
        use x86_64::registers::model_specific::GsBase;
        assert!(!crate::mm::paging::is_mapped(0), "the page at address 0 is mapped");
        let cpus = crate::records::percpu::CPUS_ONLINE.load(Ordering::Acquire) as usize;
        let threads: alloc::vec::Vec<_> = (0..cpus)
            .map(|i| {
                crate::sched::spawn_on(i, "gs-check", move || {
                    let _irq = IrqGuard::new();
                    let cpu = this_cpu();
                    let gs = GsBase::read().as_u64() as usize;
                    (cpu.id as usize, gs, cpu as *const _ as usize, cpu.self_ptr as usize)
                })
            })
            .collect();
        for (i, t) in threads.into_iter().enumerate() {
            let (id, gs, block, self_ptr) = t.join().expect("gs-check thread");
            assert_eq!(id, i, "thread pinned to CPU {i} ran on CPU {id}");
            assert_eq!(gs, block, "CPU {i}: GS base is not its per-CPU block");
            assert_eq!(self_ptr, block, "CPU {i}: self pointer");
            assert_eq!(block, crate::records::percpu::cpu(i) as *const _ as usize);
        }
    }
}

/// A vector no handler claims (see the map in `arch::vectors`).
const UNCLAIMED_VECTOR: u8 = 0x90;

ktest! {
    /// An interrupt on a vector no handler claims still gets its end-of-interrupt: the CPU's timer
    /// goes on ticking afterwards. (Without the EOI, the local APIC blocks every interrupt of that
    /// priority or lower, the timer's included, for good.)
    fn an_unclaimed_vector_does_not_stop_the_timer() {
        let window = 20 * crate::time::tsc_hz() / 1000; // 20 ms
        let ticks = crate::sched::spawn_on(0, "unclaimed-irq", move || {
            let cpu = crate::records::percpu::cpu(0);
            let before = cpu.counters.ticks.load(Ordering::Relaxed);
            crate::arch::apic::send_ipi(cpu.apic_id.load(Ordering::Relaxed), UNCLAIMED_VECTOR);
            let end = crate::arch::cpu::rdtsc() + window;
            while crate::arch::cpu::rdtsc() < end {
                core::hint::spin_loop();
            }
            cpu.counters.ticks.load(Ordering::Relaxed) - before
        })
        .join()
        .expect("the probing thread");
        assert!(ticks >= 5, "only {ticks} timer ticks in 20 ms after an interrupt on an unclaimed vector");
    }
}

ktest! {
    /// A non-fatal NMI that arrives while its CPU holds the console lock does not deadlock: the
    /// handler counts it and does not print through that lock.
    fn an_nmi_while_the_console_is_locked_is_survived() {
        let window = 10 * crate::time::tsc_hz() / 1000; // 10 ms
        let handled = crate::sched::spawn_on(0, "nmi-self", move || {
            let cpu = crate::records::percpu::cpu(0);
            let before = cpu.counters.nmis.load(Ordering::Relaxed);
            crate::console::with_uart(|_| {
                crate::arch::apic::send_nmi(cpu.apic_id.load(Ordering::Relaxed));
                let end = crate::arch::cpu::rdtsc() + window;
                while cpu.counters.nmis.load(Ordering::Relaxed) == before && crate::arch::cpu::rdtsc() < end {
                    core::hint::spin_loop();
                }
            });
            cpu.counters.nmis.load(Ordering::Relaxed) - before
        })
        .join()
        .expect("the probing thread");
        assert_eq!(handled, 1, "the NMI sent to this CPU was not handled exactly once");
    }
}

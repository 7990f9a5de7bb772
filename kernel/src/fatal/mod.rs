//! Fatal errors: stop every CPU, print one clear report, exit QEMU with failure.
//!
//! A fatal error is one the kernel cannot survive: a panic or exception on g0, in an interrupt
//! handler or in a thread holding a spin lock; a stack overflow of g0 or an interrupt stack; a
//! double fault. The report runs on a dedicated stack with the prologue check disabled (`curg`
//! = `GFATAL`, whose `stackguard0` is 0), because the stack that failed may be the one that
//! overflowed, and because the report's own calls must not re-enter the slow path.
//!
//! Invariants: only the first CPU to fail reports; any other CPU that fails meanwhile halts.
//! The report is the last output: the console is written without its lock from here on (the
//! other CPUs are stopped by an NMI), and the QEMU exit follows.
//!
//! After its own report, a fatal report prints every thread with its stack (Go's
//! `GOTRACEBACK=all`), through the function the scheduler registers at boot
//! (`set_threads_report`: the scheduler is floors above, so it registers itself rather than
//! being named here).
//!
//! Also here, because every report needs them: backtraces (`backtrace`) and the report of a
//! trap (`report_trap`), which the exception policy prints before it kills a thread too.

pub mod backtrace;

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::arch::vectors::VECTOR_PAGE_FAULT;
use crate::records::g::{G, GKind};
use crate::records::percpu::{OFF_CURG, this_cpu_unchecked};
use crate::records::trap_entry::TrapFrame;
use backtrace::Backtrace;

/// No CPU is reporting a fatal error.
const NOBODY: u32 = u32::MAX;

/// The CPU that is reporting a fatal error, or `NOBODY`.
static REPORTING_CPU: AtomicU32 = AtomicU32::new(NOBODY);

const FATAL_STACK_SIZE: usize = 64 * 1024;

#[repr(C, align(16))]
struct FatalStack([u8; FATAL_STACK_SIZE]);

/// The stack fatal reports run on (one: only one CPU reports).
static mut FATAL_STACK: FatalStack = FatalStack([0; FATAL_STACK_SIZE]);

/// The context of a fatal report: prologue checks disabled (`stackguard0` = 0).
static GFATAL: G = G::system(GKind::Critical);

/// Prints every thread in a fatal report (set once at boot by `set_threads_report`).
static THREADS_REPORT: spin::Once<fn()> = spin::Once::new();

/// Registers `report` to print every thread after a fatal report's own text. It runs on the
/// fatal stack with every other CPU stopped, and must not take locks another CPU may hold.
pub fn set_threads_report(report: fn()) {
    THREADS_REPORT.call_once(|| report);
}

/// Is a fatal report under way (on any CPU)?
pub fn in_progress() -> bool {
    REPORTING_CPU.load(Ordering::Relaxed) != NOBODY
}

/// Stops the kernel with a report of `args` and a backtrace of the caller.
#[inline(never)]
pub fn fatal(args: fmt::Arguments<'_>) -> ! {
    let failed = crate::records::percpu::current();
    let trace = backtrace::here();
    report_and_exit(&mut || {
        crate::println!("FATAL: {args}");
        crate::println!("  on CPU {}, in {}", this_cpu_unchecked().id, failed);
        trace.print();
    })
}

/// Stops the kernel with the report of a trap (exception or interrupt) and `args`.
pub fn fatal_trap(frame: &TrapFrame, args: fmt::Arguments<'_>) -> ! {
    report_and_exit(&mut || {
        crate::println!("FATAL: {args}");
        report_trap(frame, None);
    })
}

/// Prints the standard exception report: what, where, in which context, registers, backtrace.
pub fn report_trap(frame: &TrapFrame, extra: Option<core::fmt::Arguments<'_>>) {
    let (mnemonic, name) = crate::arch::vectors::exception_name(frame.vector);
    let g = frame.interrupted();
    crate::println!(
        "EXCEPTION: {name} ({mnemonic}, vector {}) on CPU {} in {}",
        frame.vector,
        crate::records::percpu::this_cpu_unchecked().id,
        g
    );
    if let Some(extra) = extra {
        crate::println!("  {extra}");
    }
    if frame.vector == VECTOR_PAGE_FAULT {
        crate::println!("  error code {:#x}, CR2 {:#018x}", frame.error_code, crate::arch::cpu::read_cr2());
    } else {
        crate::println!("  error code {:#x}", frame.error_code);
    }
    crate::println!("{frame}");
    let (lo, hi) = g.stack_bounds();
    Backtrace::from_frame(frame.rip as usize, frame.rbp as usize, lo, hi).print();
}

/// Stops the kernel with a report of `args` and an explicit backtrace (used by the stack-guard
/// slow path, which knows the failing context's registers).
pub fn fatal_with_trace(args: fmt::Arguments<'_>, trace: &Backtrace) -> ! {
    report_and_exit(&mut || {
        crate::println!("FATAL: {args}");
        trace.print();
    })
}

/// Claims the report, stops the other CPUs, switches to the fatal stack and context, runs
/// `report`, and exits QEMU with failure.
fn report_and_exit(report: &mut dyn FnMut()) -> ! {
    x86_64::instructions::interrupts::disable();
    let me = this_cpu_unchecked().id;
    if let Err(other) = REPORTING_CPU.compare_exchange(NOBODY, me, Ordering::AcqRel, Ordering::Acquire) {
        if other != me {
            // Someone else reports; it will stop us with an NMI anyway.
            crate::arch::cpu::halt_forever();
        }
        // A fault inside our own report: say so in one line, and leave.
        crate::console::emergency_write("\nFATAL: fault while printing a fatal report\n");
        crate::console::exit(crate::arch::qemu::ExitCode::Failure);
    }
    crate::console::enter_emergency();
    stop_other_cpus(me);
    let mut report = report;
    // SAFETY: the fatal stack is used by this CPU only (we won the claim above), and
    // `run_report` never returns.
    unsafe {
        call_on_fatal_stack(&mut report as *mut &mut dyn FnMut() as *mut u8, run_report);
    }
}

/// Stops every other online CPU with an NMI (their handler halts them). Only CPUs that run the
/// kernel: a CPU that never finished its start-up has no interrupt table, and an NMI there would
/// reset the machine in the middle of the report.
fn stop_other_cpus(me: u32) {
    if !crate::arch::apic::ready() {
        return;
    }
    for cpu in crate::records::percpu::online_cpus().filter(|c| c.id != me) {
        crate::arch::apic::send_nmi(cpu.apic_id.load(Ordering::Relaxed));
    }
}

/// Runs on the fatal stack: the report, the final line, the exit.
extern "C" fn run_report(report: *mut u8) -> ! {
    // SAFETY: `report_and_exit` passed a pointer to a live `&mut dyn FnMut()` on its stack,
    // which stays mapped and untouched while we run.
    let report = unsafe { &mut *(report as *mut &mut dyn FnMut()) };
    crate::println!();
    report();
    if let Some(threads) = THREADS_REPORT.get() {
        threads();
    }
    crate::println!("kernel stopped by a fatal error");
    crate::console::exit(crate::arch::qemu::ExitCode::Failure)
}

/// Calls `f(arg)` on the fatal stack with `curg` = `GFATAL`.
///
/// Register contract: `rdi` = arg, `rsi` = f; never returns; interrupts must be disabled.
#[unsafe(naked)]
unsafe extern "C" fn call_on_fatal_stack(arg: *mut u8, f: extern "C" fn(*mut u8) -> !) -> ! {
    core::arch::naked_asm!(
        "lea rsp, [rip + {stack} + {size}]",
        "xor ebp, ebp",
        "lea rax, [rip + {gfatal}]",
        "mov gs:[{off_curg}], rax",
        "call rsi",
        "ud2",
        stack = sym FATAL_STACK,
        size = const FATAL_STACK_SIZE,
        gfatal = sym GFATAL,
        off_curg = const OFF_CURG,
    )
}

//! The serial console (COM1): `print!`/`println!`, the kernel logger, polled input, and the
//! run's final line (`exit`).
//!
//! Output goes through one `IrqSpinLock`, so lines from different CPUs and from interrupt
//! handlers never interleave inside a line, and a handler can print without deadlocking against
//! the thread it interrupted. During a fatal report the lock is bypassed (`enter_emergency`,
//! called by `fatal`): the other CPUs are stopped and the report must get out even if the lock
//! was held. The console imports nothing above the records floor: `fatal` calls down into it.

pub mod logger;

use core::fmt::{self, Write};

use uart_16550::Uart16550Tty;
use uart_16550::backend::PioBackend;

use crate::records::spin::{IrqSpinLock, Rank};

/// I/O port base of COM1.
const COM1: u16 = 0x3f8;

static SERIAL: IrqSpinLock<Option<Uart16550Tty<PioBackend>>> = IrqSpinLock::new(Rank::Console, None);

/// Initializes COM1. Until this runs, output is dropped.
pub fn init() {
    // SAFETY: 0x3f8 is COM1's port base on every PC (and in QEMU), used only here.
    let port = unsafe { Uart16550Tty::new_port(COM1, uart_16550::Config::default()) };
    if let Ok(port) = port {
        *SERIAL.lock() = Some(port);
    }
}

/// Number of `print!`s so far (lets the test runner notice that a test printed something).
static PRINTS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

pub fn prints() -> u64 {
    PRINTS.load(core::sync::atomic::Ordering::Relaxed)
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    PRINTS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    if EMERGENCY.load(core::sync::atomic::Ordering::Relaxed) {
        // SAFETY: the fatal reporter is the only CPU still running (`enter_emergency`).
        unsafe { SERIAL.force_unlock() };
    }
    if let Some(port) = SERIAL.lock().as_mut() {
        let _ = port.write_fmt(args);
    }
}

/// Set once a fatal report has stopped the other CPUs: from then on the console ignores its
/// lock, which a stopped CPU may hold.
static EMERGENCY: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// The fatal reporter, alone now: print without the lock from here on.
pub fn enter_emergency() {
    EMERGENCY.store(true, core::sync::atomic::Ordering::Relaxed);
}

/// Writes `s` even if the console lock is held (fatal paths only).
pub fn emergency_write(s: &str) {
    enter_emergency();
    _print(format_args!("{s}"));
}

/// Reads one byte typed on the serial line, if one is waiting.
pub fn try_read_byte() -> Option<u8> {
    SERIAL.lock().as_mut().and_then(|port| port.inner_mut().try_receive_byte().ok())
}

/// Runs `f` with exclusive use of the UART (for the loopback self-test).
pub fn with_uart<R>(f: impl FnOnce(&mut uart_16550::Uart16550<PioBackend>) -> R) -> Option<R> {
    SERIAL.lock().as_mut().map(|port| f(port.inner_mut()))
}

/// What a floor above prints at the end of every run, registered at boot (`on_exit`): a door
/// up by registration, not an import (the schedule explorer's report).
static EXIT_REPORT: spin::Once<fn()> = spin::Once::new();

/// Registers `report` to be printed just before the final line of the run.
pub fn on_exit(report: fn()) {
    EXIT_REPORT.call_once(|| report);
}

/// Ends the run: prints the registered end-of-run report, sends the scheduler trace out if it
/// was on (`trace::dump`), prints the kernel's final line (`prologue: exit success` or `...
/// failure`, which the runner requires as well as QEMU's exit status) and leaves QEMU.
pub fn exit(code: crate::arch::qemu::ExitCode) -> ! {
    if let Some(report) = EXIT_REPORT.get() {
        report();
    }
    if let Some(d) = crate::trace::dump() {
        crate::println!(
            "trace: {} events of {} CPU(s) sent to the debug console ({} older ones overwritten)",
            d.kept,
            d.cpus,
            d.overwritten
        );
    }
    match code {
        crate::arch::qemu::ExitCode::Success => crate::println!("prologue: exit success"),
        crate::arch::qemu::ExitCode::Failure => crate::println!("prologue: exit failure"),
    }
    crate::arch::qemu::leave(code)
}

/// Prints to the serial console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => ($crate::console::_print(format_args!($($arg)*)));
}

/// Prints a line to the serial console.
#[macro_export]
macro_rules! println {
    () => ($crate::print!("\n"));
    ($($arg:tt)*) => ($crate::console::_print(format_args!("{}\n", format_args!($($arg)*))));
}

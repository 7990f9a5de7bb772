//! The panic handler: a thread that panics dies alone; any other panic is fatal.
//!
//! A thread may die alone only if nothing it leaves behind is half-changed: it holds no spin
//! lock and runs with interrupts enabled. Then its report names it, its join handle returns
//! `Death::Panic` with the message, and the kernel and the other threads go on. (Prologue has
//! no unwinding: the dead thread's destructors do not run, so what it owned on the heap stays
//! allocated. Tests that panic on purpose own nothing.)
//!
//! A panic on g0, in an interrupt handler, with a lock held or before the scheduler runs is
//! fatal (`crate::fatal`).

use alloc::string::ToString;
use core::panic::PanicInfo;
use core::sync::atomic::Ordering;

use crate::sched::percpu::current;
use crate::sched::thread::Death;

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    let g = current();
    let location = info.location();
    let can_die_alone = g.is_thread()
        && g.locks.load(Ordering::Relaxed) == 0
        && crate::arch::cpu::interrupts_enabled()
        && crate::sched::is_running()
        && !crate::fatal::in_progress();
    if !can_die_alone {
        match location {
            Some(loc) => crate::fatal::fatal(format_args!("panic at {loc}: {}", info.message())),
            None => crate::fatal::fatal(format_args!("panic: {}", info.message())),
        }
    }
    let message = info.message().to_string();
    match location {
        Some(loc) => crate::println!("{} panicked at {loc}: {message}", crate::sched::thread::describe(g)),
        None => crate::println!("{} panicked: {message}", crate::sched::thread::describe(g)),
    }
    crate::arch::backtrace::here().print();
    crate::sched::thread::exit_dead(Death::Panic(message))
}

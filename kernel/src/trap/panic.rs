//! The panic handler: a thread that panics dies alone; any other panic is fatal.
//!
//! A thread may die alone only if nothing it leaves behind is half-changed (the rule is
//! `sched::death::may_die_alone`). Then its report names it, its join handle returns
//! `Death::Panic` with the message, and the kernel and the other threads go on. (Prologue has
//! no unwinding: the dead thread's destructors do not run, so what it owned on the heap stays
//! allocated. Tests that panic on purpose own nothing.)
//!
//! A panic on g0, in an interrupt handler, with a lock held or before the scheduler runs is
//! fatal (`crate::fatal`). The report needs no heap: the message is formatted into a buffer on
//! the stack (`PanicText`), so a panic of an allocation that failed can be reported; the join
//! handle gets a copy if the heap can hold one.

use crate::records::percpu::current;
use crate::sched::death::{PanicText, may_die_alone};
use crate::sched::thread::Death;
use core::panic::PanicInfo;

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    let g = current();
    let location = info.location();
    if let Err(why) = may_die_alone(g, crate::arch::cpu::interrupts_enabled()) {
        match location {
            Some(loc) => crate::fatal::fatal(format_args!("panic at {loc}: {} ({why})", info.message())),
            None => crate::fatal::fatal(format_args!("panic: {} ({why})", info.message())),
        }
    }
    let message = PanicText::new(format_args!("{}", info.message()));
    match location {
        Some(loc) => crate::println!("{} panicked at {loc}: {message}", g),
        None => crate::println!("{} panicked: {message}", g),
    }
    crate::fatal::backtrace::here().print();
    crate::sched::thread::exit_dead(Death::Panic(message.to_death_message()))
}

//! Prologue: a teaching kernel for x86-64 whose threads are scheduled like goroutines.
//!
//! The kernel is built in floors; every module imports only from its own floor and those below
//! it (docs/architecture.md draws them; `cargo test` checks it):
//!
//! 8. boot and run modes: this file, `cmdline`, `smp_boot`, `demo`, `shell`, `stats`, `crash`,
//!    `stress`, `bench`, `ktest`
//! 7. trap policy: `trap` (dispatch, exceptions, oops-or-fatal, page faults, panics)
//! 6. `sync`: channels, `select!`, `Mutex`, `WaitGroup`, `Once`
//! 5. the scheduler: `sched`
//! 4. memory: `mm`
//! 3. reports: `fatal` (the fatal report, backtraces)
//! 2. the records: `records` (`G`, `PerCpu`, spin locks, the context switch and trap entry
//!    stubs), `console`, `trace` (the scheduler trace's rings)
//! 1. the machine: `arch`, `time`, `rand`, `planted` (the planted kernel bugs' selector)
//!
//! The assembly on floor 2 enters the floors above through named doors, not imports:
//! `_start` calls `kernel_start` (below), the trap stubs call `trap::dispatch::trap_dispatch`,
//! and every prologue calls `mcount` (`sched::stackguard`).
//!
//! Boot, in order (each step's module explains itself):
//! 1. `records::start::_start` points GS at CPU 0's per-CPU block and calls `kernel_start` on
//!    the boot stack (the prologue check works from the first Rust instruction).
//! 2. `kernel_start`: serial console, descriptor tables, command line, memory management; then
//!    it moves CPU 0's scheduler context (g0) to a guarded stack and continues in `kernel_main`.
//! 3. `kernel_main`: the banner, the APIC timer, the other CPUs, then the first thread (which
//!    runs the demo, the tests, the stress test or the benchmarks), and the scheduler.

#![no_std]
#![no_main]
// `#[instrument_fn = "off"]`: the few functions that must run without the prologue check (see
// `sched::preempt::async_preempted`).
#![feature(instrument_fn)]

extern crate alloc;

// Floor 1
mod arch;
mod planted;
mod rand;
mod time;
// Floor 2
mod console;
mod records;
mod trace;
// Floor 3
mod fatal;
// Floor 4
mod mm;
// Floor 5
mod sched;
// Floor 6
mod sync;
// Floor 7
mod trap;
// Floor 8
mod bench;
mod cmdline;
mod crash;
mod demo;
mod ktest;
mod shell;
mod smp_boot;
mod stats;
mod stress;

use core::sync::atomic::Ordering;

use bootloader_api::BootInfo;
use bootloader_api::info::MemoryRegionKind;

use crate::arch::cpu::G0_STACK_SIZE;
use crate::arch::qemu::ExitCode;
use crate::cmdline::{Cmdline, Run};
use crate::console::exit;
use crate::records::percpu::{self, cpu};

/// Prologue's version, shown in the banner.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The command line, read once at boot (the text lives in `CMDLINE_TEXT`).
static CMDLINE: spin::Once<Cmdline<'static>> = spin::Once::new();
static mut CMDLINE_TEXT: [u8; 4096] = [0; 4096];

/// The parsed command line.
pub fn cmdline() -> &'static Cmdline<'static> {
    CMDLINE.get().expect("command line read at boot")
}

/// The boot information, kept for `kernel_main`.
static BOOT_INFO: spin::Once<&'static BootInfo> = spin::Once::new();

/// The bootloader's information about this machine.
pub fn boot_info() -> &'static BootInfo {
    BOOT_INFO.get().expect("boot info kept at boot")
}

/// First Rust code, on CPU 0's boot stack with interrupts disabled (called by `_start`, by
/// name: the records floor's door up to this one).
#[unsafe(no_mangle)]
pub extern "C" fn kernel_start(boot_info: &'static mut BootInfo) -> ! {
    let bsp = cpu(0);
    console::init();
    // SAFETY: first thing on CPU 0, interrupts disabled.
    unsafe { records::cpu_setup::init_bsp_early(bsp) };

    // SAFETY: only this function, once, on CPU 0, writes the buffer.
    let buf = unsafe { &mut *core::ptr::addr_of_mut!(CMDLINE_TEXT) };
    let len = arch::fwcfg::read_file(arch::fwcfg::CMDLINE_FILE, buf).unwrap_or(0);
    if len > buf.len() {
        println!("cmdline: error: the command line has {len} bytes; at most {} fit", buf.len());
        exit(ExitCode::Failure);
    }
    let Ok(text) = core::str::from_utf8(&buf[..len]) else {
        println!("cmdline: error: the command line is not valid UTF-8");
        exit(ExitCode::Failure);
    };
    let parsed = match cmdline::parse(text.trim()) {
        Ok(parsed) => parsed,
        Err(e) => {
            println!("cmdline: error: {e}");
            println!("cmdline: known keys: {}", cmdline::KEYS);
            exit(ExitCode::Failure);
        }
    };
    let cmdline = CMDLINE.call_once(|| parsed);
    console::logger::init(cmdline.log);
    select_planted_bug(cmdline.inject);

    mm::init(boot_info, cmdline.heap_max_mib << 20);
    mm::stack::init(cmdline.stack_max_kib * 1024, cmdline.stack_init_kib * 1024);
    BOOT_INFO.call_once(|| boot_info);

    // Guarded stacks for CPU 0: its interrupt stacks, and g0.
    let (interrupt, critical) = smp_boot::alloc_cpu_stacks().expect("no memory for CPU 0's interrupt stacks");
    // SAFETY: on CPU 0, interrupts disabled, stacks mapped for good.
    unsafe { records::cpu_setup::bind_interrupt_stacks(bsp, interrupt, critical) };
    let g0_stack = mm::stack::alloc_system(G0_STACK_SIZE).expect("no memory for CPU 0's g0 stack");
    bsp.g0().bind_stack(g0_stack.mapped_lo, g0_stack.top);
    // SAFETY: the new stack is described in g0's record; `kernel_main` never returns.
    unsafe { arch::call_on_stack(0, kernel_main, g0_stack.top) }
}

/// Sets up the schedule explorer from `strategy=`, `seed=`, `record=`, `coverage=` and
/// `pct_steps=` (on CPU 0, before the first thread).
fn configure_explorer(cmdline: &Cmdline<'_>, online: u32) -> Result<(), alloc::string::String> {
    use alloc::format;
    use sched::explore::{Strategy, replay};
    let strategy = cmdline.strategy.unwrap_or(Strategy::Every);
    if let Strategy::Pct { depth } = strategy {
        if online > 1 {
            return Err(format!("strategy=pct:{depth} schedules one CPU; {online} are online (boot with --smp 1)"));
        }
        sched::explore::pct::plan(cpu(0), depth, cmdline.pct_steps, 0, cpu(0).g0());
    }
    if strategy == Strategy::Points {
        let mut probe = [0u8; 1];
        let Some(len) = arch::fwcfg::read_file(replay::POINTS_FILE, &mut probe) else {
            return Err(format!("strategy=points needs the point list, fw_cfg file {}", replay::POINTS_FILE));
        };
        let mut text = alloc::vec![0u8; len];
        arch::fwcfg::read_file(replay::POINTS_FILE, &mut text);
        let text = core::str::from_utf8(&text).map_err(|_| format!("{} is not UTF-8", replay::POINTS_FILE))?;
        let points = replay::load(text).map_err(|e| {
            format!("{} line {}: expected `KEY ORDINAL` (hex key, ordinal from 1)", replay::POINTS_FILE, e.line)
        })?;
        log::info!("explore: {points} preemption points to replay");
    }
    if cmdline.coverage {
        replay::print_coverage_at_exit();
    }
    sched::explore::configure(strategy, cmdline.seed, cmdline.record);
    Ok(())
}

/// Continues the boot on CPU 0's guarded g0 stack.
extern "C" fn kernel_main(_: usize) -> ! {
    let boot_info = boot_info();
    let cmdline = cmdline();
    let bsp = cpu(0);

    arch::apic::init_base();
    arch::apic::enable_this_cpu();
    bsp.apic_id.store(arch::apic::id(), Ordering::Relaxed);
    let tsc_hz = arch::apic::calibrate();
    time::init(tsc_hz);
    sched::preempt::configure(cmdline.preempt, cmdline.quantum_ms);

    let usable: u64 =
        boot_info.memory_regions.iter().filter(|r| r.kind == MemoryRegionKind::Usable).map(|r| r.end - r.start).sum();
    let cpus = boot_info.rsdp_addr.into_option().and_then(|rsdp| {
        match arch::acpi::cpus(rsdp, bsp.apic_id.load(Ordering::Relaxed)) {
            Ok(list) => Some(list),
            Err(e) => {
                log::error!("acpi: cannot read the MADT ({e:?}); running on CPU 0 only");
                None
            }
        }
    });
    let cpus_found = cpus.as_ref().map_or(1, |list| list.count);
    if let Some(list) = &cpus {
        if list.ignored > 0 {
            log::warn!("smp: {} more CPUs in the MADT than Prologue supports ({})", list.ignored, percpu::MAX_CPUS);
        }
        smp_boot::start_all(list, cmdline.crash == Some(crash::Crash::StuckCpu));
    }
    let online = percpu::CPUS_ONLINE.load(Ordering::Relaxed);
    sched::vcpu_share::configure(cmdline.vcpu_share && online > 1, tsc_hz);
    fatal::set_threads_report(sched::traceback::print_all_stopped);
    sched::monitor::configure(cmdline.schedtrace_ms, cmdline.watchdog_s);
    if cmdline.trace {
        trace::start(cmdline.trace_kib, online as usize);
    }
    console::on_exit(sched::explore::report);
    if let Err(why) = configure_explorer(cmdline, online) {
        println!("explore: error: {why}");
        exit(ExitCode::Failure);
    }
    println!(
        "Prologue {VERSION}: {cpus_found} CPU(s) in the MADT, {} online, {} MiB usable memory",
        percpu::CPUS_ONLINE.load(Ordering::Relaxed),
        usable >> 20
    );
    println!("kernel: image base {:#x}, TSC {} MHz", records::start::KERNEL_BASE, tsc_hz / 1_000_000);

    if let Some(crash) = cmdline.crash.filter(|c| !c.in_thread()) {
        crash::at_boot(crash);
    }

    arch::apic::start_timer();
    let first = match (cmdline.crash, cmdline.run) {
        (Some(crash), _) => sched::spawn("crash", move || -> () { crash::in_thread(crash) }),
        (None, Run::Demo) => sched::spawn("main", || {
            demo::run();
            if cmdline.shell {
                shell::run();
            }
            exit(ExitCode::Success)
        }),
        (None, Run::Tests) => sched::spawn("ktest", || ktest::run(cmdline.tests)),
        (None, Run::Stress) => {
            sched::spawn("stress", || -> () { stress::run(cmdline.stress_seconds, cmdline.seed, cmdline.inject) })
        }
        (None, Run::Bench) => sched::spawn("bench", || bench::run(cmdline.bench)),
    };
    // The first thread ends the run itself (it exits QEMU); nobody joins it.
    drop(first);
    sched::run_scheduler(bsp)
}

/// `inject=NAME` naming a planted kernel bug (`planted`): selects it, before any other CPU or
/// thread runs; in a build without the planted bugs, stops with an error saying so. (Other names
/// are the stress test's own bugs, or a test's: their runs check them.)
fn select_planted_bug(inject: &str) {
    let Some(bug) = planted::from_name(inject) else { return };
    #[cfg(feature = "planted-bugs")]
    planted::select(bug);
    #[cfg(not(feature = "planted-bugs"))]
    {
        let _ = bug;
        println!(
            "kernel: error: inject={inject} is a planted kernel bug, and this kernel was built without them \
             (build it with --features planted-bugs)"
        );
        exit(ExitCode::Failure);
    }
}

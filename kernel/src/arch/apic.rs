//! The local APIC: per-CPU timer interrupts, end-of-interrupt, and inter-processor interrupts.
//!
//! Prologue drives the APIC in xAPIC mode through its memory-mapped registers (at the physical
//! address in `IA32_APIC_BASE`, reached through the physical-memory window). xAPIC is what
//! QEMU's TCG offers; the x2apic crate targets the MSR interface and would need destinations
//! shifted by hand here, so this small driver writes the registers itself -- a good place to
//! see them.
//!
//! The timer runs periodically at `HZ` on every CPU; its rate is calibrated once against the
//! PIT, together with the TSC (`calibrate`).
//!
//! Invariant: registers are only touched by the CPU they belong to (each CPU sees its own APIC
//! at the same address), with interrupts disabled or from a handler.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use x86_64::PhysAddr;
use x86_64::registers::model_specific::Msr;

use crate::arch::vectors::{SPURIOUS, TIMER, TLB_SHOOTDOWN, WAKEUP};

/// Timer interrupts per second.
pub const HZ: u64 = 1000;

const IA32_APIC_BASE: u32 = 0x1b;

const REG_ID: usize = 0x20;
const REG_TPR: usize = 0x80;
const REG_EOI: usize = 0xb0;
const REG_SVR: usize = 0xf0;
const REG_ESR: usize = 0x280;
const REG_ICR_LOW: usize = 0x300;
const REG_ICR_HIGH: usize = 0x310;
const REG_LVT_TIMER: usize = 0x320;
const REG_LVT_LINT0: usize = 0x350;
const REG_LVT_LINT1: usize = 0x360;
const REG_LVT_ERROR: usize = 0x370;
const REG_TIMER_INITIAL: usize = 0x380;
const REG_TIMER_CURRENT: usize = 0x390;
const REG_TIMER_DIVIDE: usize = 0x3e0;

const LVT_MASKED: u32 = 1 << 16;
const LVT_PERIODIC: u32 = 1 << 17;
const SVR_ENABLE: u32 = 1 << 8;
const ICR_PENDING: u32 = 1 << 12;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_FIXED: u32 = 0b000 << 8;
const ICR_NMI: u32 = 0b100 << 8;
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
/// Divide configuration value for "divide by 16".
const DIVIDE_BY_16: u32 = 0b0011;

/// Virtual address of the APIC registers.
static BASE: AtomicU64 = AtomicU64::new(0);
/// Timer ticks (after the divider) per timer period.
static TICKS_PER_PERIOD: AtomicU32 = AtomicU32::new(0);

fn read(reg: usize) -> u32 {
    // SAFETY: `BASE` maps the APIC's register page; `reg` is a register offset.
    unsafe { core::ptr::read_volatile((BASE.load(Ordering::Relaxed) as usize + reg) as *const u32) }
}

fn write(reg: usize, value: u32) {
    // SAFETY: as in `read`.
    unsafe { core::ptr::write_volatile((BASE.load(Ordering::Relaxed) as usize + reg) as *mut u32, value) }
}

/// This CPU's APIC id.
pub fn id() -> u32 {
    read(REG_ID) >> 24
}

/// Finds the APIC's registers (once, on CPU 0).
pub fn init_base() {
    // SAFETY: reading IA32_APIC_BASE has no side effects.
    let msr = unsafe { Msr::new(IA32_APIC_BASE).read() };
    let phys = PhysAddr::new(msr & 0xf_ffff_f000);
    BASE.store(crate::arch::phys::phys_to_virt(phys).as_u64(), Ordering::Relaxed);
}

/// Enables this CPU's APIC: spurious vector, local pins masked, errors cleared, all priorities
/// accepted. The timer stays off until `start_timer`.
pub fn enable_this_cpu() {
    write(REG_SVR, SVR_ENABLE | u32::from(SPURIOUS));
    write(REG_LVT_LINT0, LVT_MASKED);
    write(REG_LVT_LINT1, LVT_MASKED);
    write(REG_LVT_ERROR, LVT_MASKED);
    write(REG_LVT_TIMER, LVT_MASKED);
    write(REG_ESR, 0);
    write(REG_ESR, 0);
    write(REG_TPR, 0);
    end_of_interrupt();
}

/// Measures the TSC and APIC timer rates against 10 ms of the PIT; returns the TSC frequency.
/// Must run on CPU 0 with interrupts disabled, after `enable_this_cpu`.
pub fn calibrate() -> u64 {
    const MS: u64 = 10;
    write(REG_TIMER_DIVIDE, DIVIDE_BY_16);
    write(REG_LVT_TIMER, LVT_MASKED);
    let mut tsc_start = 0;
    let (tsc_end, apic_left) = crate::arch::pit::measure(
        MS,
        || {
            write(REG_TIMER_INITIAL, u32::MAX);
            tsc_start = crate::arch::cpu::rdtsc();
        },
        || (crate::arch::cpu::rdtsc(), read(REG_TIMER_CURRENT)),
    );
    write(REG_TIMER_INITIAL, 0);
    let apic_per_ms = (u32::MAX - apic_left) as u64 / MS;
    TICKS_PER_PERIOD.store((apic_per_ms * 1000 / HZ).max(1) as u32, Ordering::Relaxed);
    (tsc_end - tsc_start) * 1000 / MS
}

/// Starts this CPU's periodic timer at `HZ`.
pub fn start_timer() {
    write(REG_TIMER_DIVIDE, DIVIDE_BY_16);
    write(REG_LVT_TIMER, LVT_PERIODIC | u32::from(TIMER));
    write(REG_TIMER_INITIAL, TICKS_PER_PERIOD.load(Ordering::Relaxed));
}

/// Re-arms this CPU's timer in one-shot mode: one interrupt after `ticks` timer ticks (of the
/// rate `ticks_per_period` measures).
pub fn arm_oneshot(ticks: u64) {
    write(REG_TIMER_DIVIDE, DIVIDE_BY_16);
    write(REG_LVT_TIMER, u32::from(TIMER));
    write(REG_TIMER_INITIAL, ticks.clamp(1, u64::from(u32::MAX)) as u32);
}

/// Timer ticks (after the divider) in one period at `HZ`.
pub fn ticks_per_period() -> u64 {
    u64::from(TICKS_PER_PERIOD.load(Ordering::Relaxed))
}

/// Signals the end of the current interrupt.
pub fn end_of_interrupt() {
    write(REG_EOI, 0);
}

fn send(apic_id: u32, command: u32) {
    while read(REG_ICR_LOW) & ICR_PENDING != 0 {
        core::hint::spin_loop();
    }
    write(REG_ICR_HIGH, apic_id << 24);
    write(REG_ICR_LOW, command);
}

/// Sends interrupt `vector` to the CPU whose local APIC id is `apic_id` (this CPU included).
pub fn send_ipi(apic_id: u32, vector: u8) {
    send(apic_id, ICR_FIXED | u32::from(vector));
}

/// Sends a non-maskable interrupt to the CPU whose local APIC id is `apic_id`.
pub fn send_nmi(apic_id: u32) {
    send(apic_id, ICR_NMI | ICR_LEVEL_ASSERT);
}

/// Wakes the CPU whose local APIC id is `apic_id` from `hlt`.
pub fn send_wakeup(apic_id: u32) {
    send_ipi(apic_id, WAKEUP);
}

/// Asks the CPU whose local APIC id is `apic_id` to flush its TLB.
pub fn send_tlb_shootdown(apic_id: u32) {
    send_ipi(apic_id, TLB_SHOOTDOWN);
}

/// Is the local APIC set up (so that IPIs can be sent)?
pub fn ready() -> bool {
    BASE.load(Ordering::Relaxed) != 0
}

/// Sends the INIT IPI that resets application processor `apic_id`.
pub fn send_init(apic_id: u32) {
    send(apic_id, ICR_INIT | ICR_LEVEL_ASSERT);
}

/// Sends a start-up IPI: the AP starts in real mode at `page * 4096`.
pub fn send_startup(apic_id: u32, page: u8) {
    send(apic_id, ICR_STARTUP | ICR_LEVEL_ASSERT | u32::from(page));
}

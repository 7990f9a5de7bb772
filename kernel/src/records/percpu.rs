//! Per-CPU state, reached through the GS base.
//!
//! Each CPU owns one `PerCpu` block in the static array `PERCPU`; its GS base points at it from
//! the first instruction that CPU runs (see `records::start` and `smp_boot`). Assembly reads the
//! first fields at fixed offsets (`gs:[OFF_CURG]` in the prologue hook, the interrupt stubs, the
//! context switch); the offsets are checked against the struct layout at compile time below.
//!
//! The block names the three kinds of context a CPU can be running in:
//! - a thread (`curg` points at that thread's `G`),
//! - this CPU's scheduler, **g0**, on its own stack (`curg == g0`),
//! - an interrupt or exception handler on the interrupt stack (`curg == gintr`), or one of the
//!   critical handlers (NMI, double fault, machine check) on their own stacks (`curg == gcrit`).
//!
//! Invariants:
//! - `self_ptr` is the block's own address; `curg`, `g0`, `gintr`, `gcrit` are never null once
//!   the CPU runs Rust code.
//! - A thread may touch its CPU's block only while it cannot migrate: interrupts disabled or a
//!   spin lock held (`this_cpu` asserts this in debug builds). g0 and interrupt handlers never
//!   migrate. The exceptions are single GS-relative loads, which no migration can split:
//!   `current` (the thread's own `G`) and the flags `in_irq_here` and `growing_stack_here`.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::arch::gdt::ArchCpu;
use crate::records::counters::CpuCounters;
use crate::records::g::{G, GKind};
use crate::records::runq::{LocalRunQueue, SharedThreadList};
use crate::records::spin::{Rank, SpinLock};
use crate::records::timer_heap::TimerHeap;

pub use crate::arch::MAX_CPUS;

#[repr(C, align(64))]
pub struct PerCpu {
    /// This block's own address (`gs:[0]`), so Rust can turn the GS base into a reference.
    pub self_ptr: *mut PerCpu,
    /// The context running on this CPU now.
    pub curg: *mut G,
    /// This CPU's scheduler context.
    pub g0: *mut G,
    /// The context of interrupt and exception handlers on the interrupt stack.
    pub gintr: *mut G,
    /// The context of NMI, double-fault and machine-check handlers (checks disabled).
    pub gcrit: *mut G,
    /// Index into `PERCPU` (0 = the bootstrap processor).
    pub id: u32,
    /// Local APIC id of this CPU (written once, before the CPU starts; atomic because CPU 0
    /// writes it while other CPUs may read other fields of the block).
    pub apic_id: AtomicU32,
    /// Set once this CPU runs the scheduler.
    pub online: AtomicBool,
    /// Set while this CPU is halted in the idle loop, waiting for work.
    pub idle: AtomicBool,
    /// Set while this CPU handles an asynchronous interrupt (vector 32 and up), as opposed to
    /// an exception raised by the code it interrupted.
    pub in_irq: AtomicBool,
    /// Set while this CPU grows a thread's stack (`mm::stack::grow`), for the thread (which may
    /// hold any lock, the heap's included): the heap must not be used meanwhile.
    pub growing_stack: AtomicBool,
    /// Incremented by every pass through `schedule` (Go's `schedtick`).
    pub schedtick: AtomicU64,
    /// Timer interrupts taken by this CPU.
    pub ticks: AtomicU64,
    /// The tick at which the running thread's time slice started.
    pub slice_start: AtomicU64,
    /// TSC value at which this CPU's earliest timer is due (`u64::MAX`: none), so that the
    /// scheduler can skip the timer heap with one comparison.
    pub next_timer_tsc: AtomicU64,
    /// Records of the three non-thread contexts (pointed to by `g0`, `gintr`, `gcrit`).
    pub g0_rec: G,
    pub gintr_rec: G,
    pub gcrit_rec: G,
    /// GDT, TSS and interrupt stacks.
    pub arch: ArchCpu,
    /// This CPU's run queue (local ring plus `runnext`).
    pub runq: LocalRunQueue,
    /// Threads pinned to this CPU, ready to run (any CPU may add to it).
    pub inbox: SharedThreadList,
    /// Timers that fire on this CPU (sleep, timeouts).
    pub timers: SpinLock<TimerHeap>,
    /// Counters shown in statistics and read by tests.
    pub counters: CpuCounters,
    /// A small random-number state for `select!` and stealing (Go's `fastrand`).
    pub rand: core::cell::Cell<u64>,
    /// The schedule explorer's state for this CPU (its digest, its draws).
    pub explore: crate::records::explore::CpuExplore,
}

// Offsets used by assembly.
pub const OFF_SELF: usize = 0;
pub const OFF_CURG: usize = 8;
pub const OFF_G0: usize = 16;
pub const OFF_GINTR: usize = 24;
pub const OFF_GCRIT: usize = 32;
pub const OFF_G0_REC: usize = core::mem::offset_of!(PerCpu, g0_rec);

const _: () = {
    assert!(core::mem::offset_of!(PerCpu, self_ptr) == OFF_SELF);
    assert!(core::mem::offset_of!(PerCpu, curg) == OFF_CURG);
    assert!(core::mem::offset_of!(PerCpu, g0) == OFF_G0);
    assert!(core::mem::offset_of!(PerCpu, gintr) == OFF_GINTR);
    assert!(core::mem::offset_of!(PerCpu, gcrit) == OFF_GCRIT);
};

// SAFETY: a `PerCpu` is shared between CPUs only through its atomic fields, the lock-protected
// fields, and the run queue (whose stealing side is lock-free and atomic); the plain fields are
// touched only by the owning CPU, which cannot migrate while it does so (module invariant).
unsafe impl Sync for PerCpu {}

impl PerCpu {
    const fn new(id: u32) -> Self {
        PerCpu {
            self_ptr: core::ptr::null_mut(),
            curg: core::ptr::null_mut(),
            g0: core::ptr::null_mut(),
            gintr: core::ptr::null_mut(),
            gcrit: core::ptr::null_mut(),
            id,
            apic_id: AtomicU32::new(0),
            online: AtomicBool::new(false),
            idle: AtomicBool::new(false),
            in_irq: AtomicBool::new(false),
            growing_stack: AtomicBool::new(false),
            schedtick: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            slice_start: AtomicU64::new(0),
            next_timer_tsc: AtomicU64::new(u64::MAX),
            g0_rec: G::system(GKind::Scheduler),
            gintr_rec: G::system(GKind::Interrupt),
            gcrit_rec: G::system(GKind::Critical),
            arch: ArchCpu::new(),
            runq: LocalRunQueue::new(),
            inbox: SharedThreadList::new(),
            timers: SpinLock::new(Rank::Timers, TimerHeap::new()),
            counters: CpuCounters::new(),
            rand: core::cell::Cell::new(0x9e37_79b9_7f4a_7c15 ^ id as u64),
            explore: crate::records::explore::CpuExplore::new(),
        }
    }
}

/// The per-CPU blocks. CPU `i` has `PERCPU[i]`; only `records::start`/`smp_boot` take addresses
/// of it directly (to load the GS base); everything else goes through `this_cpu`/`cpu`.
pub static mut PERCPU: [PerCpu; MAX_CPUS] = {
    let mut cpus = [const { PerCpu::new(0) }; MAX_CPUS];
    let mut i = 0;
    while i < MAX_CPUS {
        cpus[i].id = i as u32;
        i += 1;
    }
    cpus
};

/// How many CPUs are running the kernel (set by `smp_boot` as they come up).
pub static CPUS_ONLINE: AtomicU32 = AtomicU32::new(1);

/// The block of the CPU this code runs on.
///
/// Must be called where the caller cannot migrate to another CPU: on g0, in an interrupt
/// handler, with interrupts disabled, or with a spin lock held (checked in debug builds).
#[inline(always)]
pub fn this_cpu() -> &'static PerCpu {
    let cpu = this_cpu_unchecked();
    debug_assert!(
        !cpu.current().preemptible(crate::arch::cpu::interrupts_enabled()),
        "this_cpu(): a preemptible thread touched per-CPU data (it may migrate)"
    );
    cpu
}

/// The block of the CPU this code runs on, with no migration check: for statistics and
/// reports, where a stale answer is harmless.
#[inline(always)]
pub fn this_cpu_unchecked() -> &'static PerCpu {
    let cpu: *const PerCpu;
    // SAFETY: gs:[0] holds the block's own address from the CPU's first instruction on.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) cpu, options(nostack, readonly, preserves_flags));
        &*cpu
    }
}

/// The context running on this CPU now (a thread, g0, or an interrupt context).
///
/// Safe to call anywhere: if a thread migrates right after, `current` is still that thread.
#[inline(always)]
pub fn current() -> &'static G {
    let g: *const G;
    // SAFETY: gs:[OFF_CURG] is never null once Rust runs (module invariant).
    unsafe {
        core::arch::asm!("mov {}, gs:[{off}]", out(reg) g, off = const OFF_CURG,
            options(nostack, readonly, preserves_flags));
        &*g
    }
}

/// Is this CPU handling an asynchronous interrupt right now (`PerCpu::in_irq`)?
#[inline(always)]
pub fn in_irq_here() -> bool {
    flag_here(core::mem::offset_of!(PerCpu, in_irq))
}

/// Is this CPU growing a thread's stack right now (`PerCpu::growing_stack`)?
#[inline(always)]
pub fn growing_stack_here() -> bool {
    flag_here(core::mem::offset_of!(PerCpu, growing_stack))
}

/// The `AtomicBool` at `offset` in this CPU's block, read in one GS-relative load.
/// `this_cpu_unchecked().flag.load(..)` would be two -- the block's address, then the flag -- and
/// a preemptible thread may migrate between any two instructions (an asynchronous preemption
/// lands anywhere): it would then read the flag of the CPU it left, which may well be set there
/// at that moment.
///
/// Register contract: `offset` in any register (a constant at every caller, folded into a `mov`),
/// the flag's byte out in any byte register; no other state touched.
#[inline(always)]
fn flag_here(offset: usize) -> bool {
    let flag: u8;
    // SAFETY: gs points at this CPU's block from its first instruction on, and the callers pass
    // the offset of a one-byte flag inside it (`offset_of!`).
    unsafe {
        core::arch::asm!("mov {flag}, byte ptr gs:[{off}]", flag = out(reg_byte) flag, off = in(reg) offset,
            options(nostack, readonly, preserves_flags));
    }
    flag != 0
}

/// The block of CPU `id`, for cross-CPU work (stealing, wakeups, statistics).
pub fn cpu(id: usize) -> &'static PerCpu {
    // SAFETY: the array is static; shared access goes through the `Sync` rules above.
    unsafe { &(*core::ptr::addr_of!(PERCPU))[id] }
}

/// All online CPUs.
pub fn online_cpus() -> impl Iterator<Item = &'static PerCpu> {
    (0..MAX_CPUS).map(cpu).filter(|c| c.online.load(Ordering::Acquire))
}

impl PerCpu {
    /// The context running on this CPU now.
    #[inline(always)]
    pub fn current(&self) -> &'static G {
        // SAFETY: `curg` is never null once Rust runs.
        unsafe { &*self.curg }
    }

    /// Points `g0`, `gintr` and `gcrit` at this block's records. Called once per CPU, before
    /// it takes any interrupt.
    ///
    /// # Safety
    /// Must run on the CPU that owns the block, with interrupts disabled.
    pub unsafe fn bind_records(&self) {
        let this = self as *const PerCpu as *mut PerCpu;
        // SAFETY: only the owning CPU writes these pointer fields, before anything reads them.
        unsafe {
            (*this).self_ptr = this;
            if (*this).curg.is_null() {
                (*this).curg = &raw mut (*this).g0_rec;
            }
            (*this).gintr = &raw mut (*this).gintr_rec;
            (*this).gcrit = &raw mut (*this).gcrit_rec;
            (*this).g0 = &raw mut (*this).g0_rec;
        }
    }

    /// This CPU's interrupt-context record.
    pub fn gintr(&self) -> &'static G {
        // SAFETY: set by `bind_records`, never null afterwards.
        unsafe { &*self.gintr }
    }

    /// This CPU's critical-context record.
    pub fn gcrit(&self) -> &'static G {
        // SAFETY: as above.
        unsafe { &*self.gcrit }
    }

    /// This CPU's g0 record.
    pub fn g0(&self) -> &'static G {
        // SAFETY: as above.
        unsafe { &*self.g0 }
    }

    /// Is `g` this CPU's g0?
    pub fn is_g0(&self, g: &G) -> bool {
        core::ptr::eq(g, self.g0)
    }

    /// Next number of this CPU's random sequence (`rand::wyrand`).
    pub fn fastrand(&self) -> u64 {
        let mut state = self.rand.get();
        let n = crate::rand::wyrand(&mut state);
        self.rand.set(state);
        n
    }
}

/// Counters summed over every online CPU.
pub fn totals() -> crate::records::counters::Totals {
    let mut t = crate::records::counters::Totals::default();
    for cpu in online_cpus() {
        t.add(&cpu.counters.snapshot());
    }
    t
}

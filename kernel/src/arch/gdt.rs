//! Per-CPU GDT and TSS.
//!
//! In long mode the GDT matters for two things only: the code segment (64-bit, ring 0) and the
//! TSS, whose interrupt stack table (IST) gives the CPU a known-good stack for an interrupt no
//! matter what stack it interrupted. Prologue uses four IST slots per CPU:
//! IST1 for every ordinary vector (the interrupt stack), IST2 double fault, IST3 NMI, IST4
//! machine check. A stack overflow on a thread's stack therefore never prevents the page-fault
//! handler from running: the CPU pushes the fault frame onto IST1, not onto the broken stack.
//!
//! Invariants: each CPU loads its own tables once (`load`), before enabling interrupts; the
//! GS selector is never reloaded afterwards (that would reset the GS base, see `records::start`).

use core::cell::UnsafeCell;

use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

use crate::arch::cpu::StackRange;

pub struct Tables {
    gdt: UnsafeCell<GlobalDescriptorTable>,
    tss: UnsafeCell<TaskStateSegment>,
}

impl Tables {
    pub const fn new() -> Tables {
        Tables { gdt: UnsafeCell::new(GlobalDescriptorTable::new()), tss: UnsafeCell::new(TaskStateSegment::new()) }
    }

    /// Builds this CPU's GDT and TSS and loads them.
    ///
    /// # Safety
    /// Must run once, on the CPU that owns these tables, with interrupts disabled. `self` must
    /// live forever (it is part of a static `PerCpu`).
    pub unsafe fn load(&'static self) {
        // SAFETY: by the contract, nothing else touches the tables yet.
        let (gdt, tss) = unsafe { (&mut *self.gdt.get(), &*self.tss.get()) };
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss_sel = gdt.append(Descriptor::tss_segment(tss));
        // SAFETY: `gdt` is 'static; the selectors index the entries just appended.
        unsafe {
            gdt.load_unsafe();
            CS::set_reg(code);
            SS::set_reg(data);
            DS::set_reg(SegmentSelector(0));
            ES::set_reg(SegmentSelector(0));
            load_tss(tss_sel);
        }
    }

    /// Points IST slot `ist` (1-based) at `stack`. Takes effect at the next interrupt that uses
    /// the slot.
    ///
    /// # Safety
    /// Must run on the owning CPU with interrupts disabled, and `stack` must be a mapped stack
    /// this CPU owns for good.
    pub unsafe fn set_ist(&self, ist: u16, stack: StackRange) {
        // SAFETY: by the contract no interrupt reads the TSS while we write the slot.
        let tss = unsafe { &mut *self.tss.get() };
        tss.interrupt_stack_table[usize::from(ist - 1)] = VirtAddr::new(stack.hi as u64);
    }
}

/// Per-CPU architectural state.
pub struct ArchCpu {
    /// GDT and TSS (the TSS holds the interrupt stack table).
    pub tables: Tables,
    /// The interrupt stack (IST1) shared by every vector except the three below.
    pub interrupt_stack: core::cell::Cell<StackRange>,
    /// Stacks for double fault, NMI and machine check (IST2..IST4).
    pub critical_stacks: core::cell::Cell<[StackRange; 3]>,
}

impl ArchCpu {
    pub const fn new() -> ArchCpu {
        ArchCpu {
            tables: Tables::new(),
            interrupt_stack: core::cell::Cell::new(StackRange { lo: 0, hi: 0 }),
            critical_stacks: core::cell::Cell::new([StackRange { lo: 0, hi: 0 }; 3]),
        }
    }
}

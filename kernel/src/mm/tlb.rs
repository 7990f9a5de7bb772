//! TLB maintenance after unmapping.
//!
//! A CPU may keep a translation in its TLB after the page-table entry is cleared, so before a
//! frame that was mapped is reused, every CPU that might have cached the mapping must flush it.
//! Prologue unmaps kernel pages only when freeing stack pages (grown parts, released stacks)
//! and page tables of idle stack chunks, and always flushes every online CPU before the frames
//! are freed (`flush_everywhere`): the requester flushes locally, then sends the
//! `TLB_SHOOTDOWN` IPI to the other CPUs and waits until each has flushed.
//!
//! Deadlock rule: the requester holds no lock while it waits, and while waiting it serves
//! shootdowns requested of it, so two CPUs shooting down at once both finish. CPUs running
//! with interrupts disabled (g0, irq locks) take the IPI as soon as they enable them, which they
//! do within a scheduling pass.
//!
//! Migration rule: the requester disables interrupts *before* its local flush and keeps them
//! disabled until every other CPU has flushed, so "this CPU" and "the others" are decided once. (A
//! thread that moved between its local flush and asking the others would leave the CPU it moved
//! to with the stale translation, and the frames are freed right after.)

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use x86_64::VirtAddr;

use crate::mm::layout::PAGE_SIZE;
use crate::records::percpu::{self, MAX_CPUS};

/// More pages than this are flushed with a full CR3 reload instead of one `invlpg` each.
const FULL_FLUSH_PAGES: usize = 32;

/// Per CPU: shootdown requests it has not served yet (a count, served all at once with a full
/// flush, so requests need no payload).
static PENDING: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// Shootdowns requested (statistics).
pub static SHOOTDOWNS: AtomicU64 = AtomicU64::new(0);

/// Flushes `lo..hi` from this CPU's TLB.
pub fn flush_local(lo: usize, hi: usize) {
    if (hi - lo) / PAGE_SIZE > FULL_FLUSH_PAGES {
        x86_64::instructions::tlb::flush_all();
        return;
    }
    let mut addr = lo;
    while addr < hi {
        x86_64::instructions::tlb::flush(VirtAddr::new(addr as u64));
        addr += PAGE_SIZE;
    }
}

/// Flushes `lo..hi` on every online CPU; returns when all have done it.
pub fn flush_everywhere(lo: usize, hi: usize) {
    if crate::planted::is(crate::planted::Bug::TlbFlushBeforeIrqOff) {
        // Planted: the local flush comes before interrupts are off; the thread may move to
        // another CPU before `shoot_down_others_pinned` decides which CPUs are "the others".
        flush_local(lo, hi);
        shoot_down_others_pinned();
        return;
    }
    let _irq = crate::arch::cpu::IrqGuard::new();
    flush_local(lo, hi);
    shoot_down_others();
}

/// `shoot_down_others` with interrupts disabled for it (only for the planted
/// `tlb-flush-before-irq-off`).
#[inline(never)]
fn shoot_down_others_pinned() {
    let _irq = crate::arch::cpu::IrqGuard::new();
    shoot_down_others();
}

/// Flushes every CPU's whole TLB (needed after freeing page tables).
pub fn flush_all_everywhere() {
    let _irq = crate::arch::cpu::IrqGuard::new();
    x86_64::instructions::tlb::flush_all();
    shoot_down_others();
}

/// Asks every other online CPU to flush, and waits until they have. Interrupts must be disabled
/// (since before the caller's local flush): the caller must not migrate, and it serves its own
/// CPU's requests by polling while it waits.
fn shoot_down_others() {
    debug_assert!(!crate::arch::cpu::interrupts_enabled(), "a TLB shootdown with interrupts enabled");
    if percpu::CPUS_ONLINE.load(Ordering::Acquire) <= 1 {
        return;
    }
    SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
    let me = percpu::this_cpu().id as usize;
    let targets: u64 = percpu::online_cpus().map(|c| c.id as usize).filter(|&id| id != me).fold(0, |m, id| m | 1 << id);
    for (id, pending) in PENDING.iter().enumerate() {
        if targets & (1 << id) != 0 {
            pending.fetch_add(1, Ordering::AcqRel);
            crate::arch::apic::send_tlb_shootdown(percpu::cpu(id).apic_id.load(Ordering::Relaxed));
        }
    }
    // Wait until each target has served (its counter is back to 0), serving our own meanwhile.
    while (0..MAX_CPUS).any(|id| targets & (1 << id) != 0 && PENDING[id].load(Ordering::Acquire) != 0) {
        serve_pending(me);
        crate::arch::cpu::relax();
    }
}

fn serve_pending(cpu: usize) {
    // Serve the requests seen so far; a request arriving after the load keeps the count above
    // zero (its IPI is on its way), so no request is ever marked served without a flush.
    let seen = PENDING[cpu].load(Ordering::Acquire);
    if seen != 0 {
        x86_64::instructions::tlb::flush_all();
        PENDING[cpu].fetch_sub(seen, Ordering::AcqRel);
    }
}

/// The `TLB_SHOOTDOWN` interrupt handler.
pub fn handle_shootdown() {
    serve_pending(percpu::this_cpu().id as usize);
}

//! Stacks: reserved virtual regions with an unmapped guard page below, mapped from the top,
//! grown in place on demand, and pooled for reuse.
//!
//! ```text
//!   slot:  | guard page | ........ reservation ........ |
//!          ^            ^ base      ^ mapped_lo          ^ top
//!          unmapped      unmapped     mapped (initial size, grows downward)
//! ```
//!
//! A thread's stack reserves `stack_max_kib` (default 256 KiB) and maps only its top
//! `stack_init_kib` (default 4 KiB) at first. When the prologue check finds the stack pointer
//! in the guard zone, the slow path calls `grow`, which maps more pages below `mapped_lo`
//! (doubling the mapped size, like Go's stack doubling) and lowers the thread's `stack_lo` and
//! guard. Growth happens in place because Rust code holds pointers into its stack, so a stack
//! can never be moved as Go moves goroutine stacks. The growth path takes no lock except the
//! frame allocator's: the page tables of every slot are created when the slot is first used
//! (`paging::ensure_tables`) and only the owning thread's growth writes its leaf entries.
//!
//! System stacks (g0, interrupt, critical; one set per CPU) live in their own region, are
//! fully mapped at once and never freed.
//!
//! Freed thread stacks go to a pool (up to `POOL_MAX`) for reuse. A stack that grew keeps its
//! extra pages in the pool while the pool's extra pages stay within `POOL_GROWN_BUDGET`;
//! beyond it they are unmapped first. Unmapping costs a TLB shootdown that waits for every CPU
//! (one spinning with interrupts off would stall it), so the common exit path avoids it; the
//! next thread to take the stack simply starts with more of it mapped. Past the pool's limit a
//! stack's frames and slot are released. `release_cached` empties the pool and frees page
//! tables no slot uses (memory pressure, and tests that compare frame counts with a baseline).
//!
//! Errors are values: running out of frames or address space is an `Err` for the caller.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use x86_64::structures::paging::PhysFrame;

use crate::mm::frame::{self, OutOfFrames};
use crate::mm::layout::{PAGE_SIZE, SYSTEM_STACKS_SIZE, SYSTEM_STACKS_START, THREAD_STACKS_SIZE, THREAD_STACKS_START};
use crate::mm::vm::{OutOfAddressSpace, SlotRegion};
use crate::mm::{paging, tlb};
use crate::records::g::G;
use crate::records::g::{STACK_GUARD, is_poison};
use crate::records::spin::{Rank, SpinLock};

/// Default reservation of a thread stack.
pub const DEFAULT_RESERVE: usize = 256 * 1024;
/// Default initially mapped size of a thread stack.
pub const DEFAULT_INITIAL: usize = 4 * 1024;
/// Smallest reservation accepted.
pub const MIN_RESERVE: usize = 8 * 1024;
/// Stacks kept in the pool at most.
pub const POOL_MAX: usize = 256;
/// Pages beyond their initial size that pooled stacks may keep mapped, in total (8 MiB).
pub const POOL_GROWN_BUDGET: usize = 2048;
/// Reservation of every system stack slot.
const SYSTEM_SLOT_RESERVE: usize = 64 * 1024;

/// Why a stack could not be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackError {
    OutOfFrames,
    OutOfAddressSpace,
}

impl From<OutOfFrames> for StackError {
    fn from(_: OutOfFrames) -> Self {
        StackError::OutOfFrames
    }
}

impl From<OutOfAddressSpace> for StackError {
    fn from(_: OutOfAddressSpace) -> Self {
        StackError::OutOfAddressSpace
    }
}

/// Why a stack could not grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrowError {
    /// The reservation is used up: a real stack overflow.
    ReservationExhausted,
    /// No frames for the new pages.
    OutOfFrames,
    /// Not now: the thread holds the frame allocator's lock. It runs on in its guard zone and
    /// the next check after the lock is released grows the stack.
    NotNow,
}

pub use crate::records::g::Stack;

/// Sizes of thread stacks, from the command line.
#[derive(Debug, Clone, Copy)]
struct ThreadStackConfig {
    reserve: usize,
    initial: usize,
}

static THREAD_CONFIG: SpinLock<ThreadStackConfig> =
    SpinLock::new(Rank::Stacks, ThreadStackConfig { reserve: DEFAULT_RESERVE, initial: DEFAULT_INITIAL });

static THREAD_REGION: SlotRegion = SlotRegion::new(THREAD_STACKS_START, THREAD_STACKS_SIZE);
static SYSTEM_REGION: SlotRegion = SlotRegion::new(SYSTEM_STACKS_START, SYSTEM_STACKS_SIZE);

static POOL: SpinLock<Pool> = SpinLock::new(Rank::Stacks, Pool { stacks: Vec::new(), grown_pages: 0 });

/// Freed stacks kept for reuse.
struct Pool {
    stacks: Vec<Stack>,
    /// Pages beyond the initial size that the pooled stacks keep mapped.
    grown_pages: usize,
}

/// Pages of `stack` beyond its initial size.
fn grown_pages(stack: &Stack) -> usize {
    (stack.mapped_size() - stack.initial) / PAGE_SIZE
}

/// Counters for statistics.
pub struct StackCounters {
    /// Stacks handed out and not yet freed.
    pub live: AtomicUsize,
    /// Growth steps taken (slow path or page fault).
    pub growths: AtomicU64,
    /// Pages mapped for thread stacks now.
    pub pages_mapped: AtomicUsize,
}

pub static COUNTERS: StackCounters =
    StackCounters { live: AtomicUsize::new(0), growths: AtomicU64::new(0), pages_mapped: AtomicUsize::new(0) };

/// Sets the thread-stack sizes (from `stack_max_kib=` / `stack_init_kib=`) and the slot sizes.
/// Must run before the first stack is allocated.
pub fn init(reserve: usize, initial: usize) {
    let reserve = crate::mm::layout::page_round_up(reserve.max(MIN_RESERVE));
    let initial = crate::mm::layout::page_round_up(initial.clamp(PAGE_SIZE, reserve));
    *THREAD_CONFIG.lock() = ThreadStackConfig { reserve, initial };
    THREAD_REGION.set_slot_size(reserve + PAGE_SIZE);
    SYSTEM_REGION.set_slot_size(SYSTEM_SLOT_RESERVE + PAGE_SIZE);
}

/// The configured thread-stack sizes `(reservation, initial)`.
pub fn thread_stack_sizes() -> (usize, usize) {
    let c = *THREAD_CONFIG.lock();
    (c.reserve, c.initial)
}

/// Maps fresh frames at `lo..hi` (page aligned) whose tables exist. On failure, unmaps what it
/// mapped and frees those frames.
fn map_stack_pages(lo: usize, hi: usize) -> Result<(), OutOfFrames> {
    let mut addr = hi;
    while addr > lo {
        addr -= PAGE_SIZE;
        match frame::alloc() {
            // SAFETY: the slot's tables exist and only the slot's owner writes its entries.
            Ok(f) => unsafe { paging::leaf_entry(addr) }.set_frame(f, paging::KERNEL_DATA),
            Err(e) => {
                unmap_stack_pages(addr + PAGE_SIZE, hi, false);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Unmaps `lo..hi` of a stack and frees the frames, after flushing every CPU's TLB if
/// `shootdown` (the stack may have run on other CPUs; otherwise the pages were mapped here and
/// never used). Pages not mapped are skipped. Returns how many were unmapped.
///
/// Uses no heap (it runs where a thread's stack grows, for a thread that may hold the heap's
/// lock): a frame cannot be freed before the flush, so the first pass only clears each entry's
/// present bit, keeping its frame address, and the second pass reads the frames back from the
/// entries, frees them and clears the entries.
fn unmap_stack_pages(lo: usize, hi: usize, shootdown: bool) -> usize {
    let pages = (lo..hi).step_by(PAGE_SIZE);
    for addr in pages.clone() {
        // SAFETY: the caller owns the stack; its tables exist.
        let entry = unsafe { paging::leaf_entry(addr) };
        if entry.flags().contains(paging::PRESENT) {
            entry.set_flags(entry.flags() - paging::PRESENT);
        }
    }
    if shootdown {
        tlb::flush_everywhere(lo, hi);
    } else {
        tlb::flush_local(lo, hi);
    }
    let mut unmapped = 0;
    for addr in pages {
        // SAFETY: as above.
        let entry = unsafe { paging::leaf_entry(addr) };
        if !entry.is_unused() {
            frame::free(PhysFrame::containing_address(entry.addr()));
            entry.set_unused();
            unmapped += 1;
        }
    }
    unmapped
}

/// Carves a fresh stack from `region`: a slot, its page tables, and `initial` mapped bytes.
fn alloc_fresh(region: &SlotRegion, reserve: usize, initial: usize) -> Result<Stack, StackError> {
    let slot_size = reserve + PAGE_SIZE;
    let slot = region.alloc()?;
    let (lo, hi) = region.range(slot, slot_size);
    let stack = Stack { slot, base: lo + PAGE_SIZE, top: hi, mapped_lo: hi - initial, initial };
    let mapped = paging::ensure_tables(stack.base, stack.top).and_then(|()| map_stack_pages(stack.mapped_lo, hi));
    if let Err(e) = mapped {
        region.release(slot);
        return Err(e.into());
    }
    Ok(stack)
}

/// Allocates a thread stack: from the pool if it has one, else fresh.
#[inline]
pub fn alloc() -> Result<Stack, StackError> {
    let pooled = {
        let mut pool = POOL.lock();
        let stack = pool.stacks.pop();
        if let Some(s) = &stack {
            pool.grown_pages -= grown_pages(s);
        }
        stack
    };
    let stack = match pooled {
        Some(stack) => stack,
        None => {
            let (reserve, initial) = thread_stack_sizes();
            let stack = match alloc_fresh(&THREAD_REGION, reserve, initial) {
                Err(StackError::OutOfFrames) => {
                    // Memory pressure: give back what the caches hold and try once more.
                    release_cached();
                    alloc_fresh(&THREAD_REGION, reserve, initial)?
                }
                other => other?,
            };
            COUNTERS.pages_mapped.fetch_add(initial / PAGE_SIZE, Ordering::Relaxed);
            stack
        }
    };
    COUNTERS.live.fetch_add(1, Ordering::Relaxed);
    Ok(stack)
}

/// Allocates a thread stack from fresh frames, bypassing the pool (for benchmarks).
pub fn alloc_uncached() -> Result<Stack, StackError> {
    let (reserve, initial) = thread_stack_sizes();
    let stack = alloc_fresh(&THREAD_REGION, reserve, initial)?;
    COUNTERS.pages_mapped.fetch_add(initial / PAGE_SIZE, Ordering::Relaxed);
    COUNTERS.live.fetch_add(1, Ordering::Relaxed);
    Ok(stack)
}

/// Releases a thread stack entirely, bypassing the pool (for benchmarks).
pub fn release_uncached(stack: Stack) {
    COUNTERS.live.fetch_sub(1, Ordering::Relaxed);
    release_stack(stack);
}

/// Frees a thread stack into the pool (keeping grown pages within the budget), or releases it
/// entirely if the pool is full. Must not be called on that stack.
#[inline]
pub fn free(stack: Stack) {
    COUNTERS.live.fetch_sub(1, Ordering::Relaxed);
    {
        let mut pool = POOL.lock();
        if pool.stacks.len() < POOL_MAX && stack.mapped_size() == stack.initial {
            pool.stacks.push(stack);
            return;
        }
    }
    free_slow(stack);
}

/// `free` for a full pool or a grown stack.
#[cold]
fn free_slow(mut stack: Stack) {
    let mut pool = POOL.lock();
    if pool.stacks.len() >= POOL_MAX {
        drop(pool);
        release_stack(stack);
        return;
    }
    let extra = grown_pages(&stack);
    if pool.grown_pages + extra > POOL_GROWN_BUDGET {
        drop(pool);
        let initial_lo = stack.top - stack.initial;
        let n = unmap_stack_pages(stack.mapped_lo, initial_lo, true);
        COUNTERS.pages_mapped.fetch_sub(n, Ordering::Relaxed);
        stack.mapped_lo = initial_lo;
        pool = POOL.lock();
        if pool.stacks.len() >= POOL_MAX {
            drop(pool);
            release_stack(stack);
            return;
        }
    } else {
        pool.grown_pages += extra;
    }
    pool.stacks.push(stack);
}

/// Unmaps a whole thread stack and gives its slot back.
fn release_stack(stack: Stack) {
    let n = unmap_stack_pages(stack.mapped_lo, stack.top, true);
    COUNTERS.pages_mapped.fetch_sub(n, Ordering::Relaxed);
    THREAD_REGION.release(stack.slot);
}

/// Empties the pool and frees the page tables of stack chunks no slot uses.
pub fn release_cached() {
    let pooled: Vec<Stack> = {
        let mut pool = POOL.lock();
        pool.grown_pages = 0;
        core::mem::take(&mut pool.stacks)
    };
    for stack in pooled {
        release_stack(stack);
    }
    // Unhook the tables of idle chunks while no slot of them can be handed out; flush every
    // CPU's TLB (holding no lock: see mm::tlb); only then reuse the tables' frames.
    let tables: Vec<PhysFrame> = THREAD_REGION.with_idle_chunks(|chunks| {
        chunks.iter().flat_map(|&(lo, _)| paging::detach_empty_tables(lo)).flatten().collect()
    });
    if !tables.is_empty() {
        tlb::flush_all_everywhere();
        for f in tables {
            frame::free(f);
        }
    }
    THREAD_REGION.compact();
}

/// Number of stacks in the pool.
pub fn pooled() -> usize {
    POOL.lock().stacks.len()
}

/// Allocates a fully mapped system stack of `size` bytes (g0, interrupt, critical). Never
/// freed.
pub fn alloc_system(size: usize) -> Result<Stack, StackError> {
    assert!(size <= SYSTEM_SLOT_RESERVE, "system stacks are at most {SYSTEM_SLOT_RESERVE} bytes");
    let mut stack = alloc_fresh(&SYSTEM_REGION, SYSTEM_SLOT_RESERVE, size)?;
    stack.base = stack.mapped_lo; // nothing below the mapped part is ever used
    Ok(stack)
}

/// The lowest address `g`'s stack may ever grow to.
pub fn reserved_lo(g: &G) -> usize {
    let stack = g.stack.get();
    stack.map(|s| s.base).unwrap_or_else(|| g.stack_bounds().0)
}

/// Grows the stack of thread `g` (not running: its context is saved, or it is in a page-fault
/// handler) so that `sp` is at least `STACK_GUARD` above its lowest mapped address, doubling the
/// mapped size at least. Lowers `g.stack_lo` and, unless a request is pending, `stackguard0`.
///
/// Runs on g0 or in the page-fault handler, with interrupts disabled, on behalf of a thread that
/// may hold any lock: so it takes none but the frame allocator's (and not that one if the thread
/// holds it), and never uses the heap (checked by the heap in debug builds).
pub fn grow(g: &G, sp: usize) -> Result<(), GrowError> {
    let cpu = crate::records::percpu::this_cpu();
    cpu.growing_stack.store(true, Ordering::Relaxed);
    let result = grow_mapped(g, sp);
    cpu.growing_stack.store(false, Ordering::Relaxed);
    result
}

fn grow_mapped(g: &G, sp: usize) -> Result<(), GrowError> {
    let Some(mut stack) = g.stack.get() else {
        return Err(GrowError::ReservationExhausted);
    };
    // LAB 4 BEGIN: the growth step: map at least double the stack, deep enough for `sp`, and move its bounds
    // LAB 4 STUB: let _ = (g, sp, &mut stack);
    // LAB 4 STUB: todo!("lab 4: the growth step")
    if sp < stack.base + STACK_GUARD {
        return Err(GrowError::ReservationExhausted);
    }
    if frame::held_by(g) {
        return Err(GrowError::NotNow);
    }
    let doubled = stack.top.saturating_sub(2 * stack.mapped_size());
    let needed = (sp - STACK_GUARD) & !(PAGE_SIZE - 1);
    let new_lo = doubled.min(needed).max(stack.base);
    if new_lo >= stack.mapped_lo {
        return Ok(()); // already mapped (another path grew it)
    }
    map_stack_pages(new_lo, stack.mapped_lo).map_err(|_| GrowError::OutOfFrames)?;
    COUNTERS.pages_mapped.fetch_add((stack.mapped_lo - new_lo) / PAGE_SIZE, Ordering::Relaxed);
    COUNTERS.growths.fetch_add(1, Ordering::Relaxed);
    stack.mapped_lo = new_lo;
    g.stack.set(Some(stack));
    g.stack_lo.store(new_lo, Ordering::Relaxed);
    if !is_poison(g.stackguard0.load(Ordering::Relaxed)) {
        g.stackguard0.store(new_lo + STACK_GUARD, Ordering::Relaxed);
    }
    g.stack_growths.fetch_add(1, Ordering::Relaxed);
    crate::trace::stack_grown(g, stack.top - stack.mapped_lo);
    crate::records::percpu::this_cpu().counters.stack_growths.fetch_add(1, Ordering::Relaxed);
    Ok(())
    // LAB 4 END
}

/// Where a faulting address lies relative to the stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackArea {
    /// In the guard page of thread-stack slot `slot` (covering `base..top`).
    GuardPage { slot: usize, base: usize, top: usize },
    /// In the reservation of thread-stack slot `slot`, not mapped.
    Reservation { slot: usize, base: usize, top: usize },
    /// In a system stack's guard page or unused reservation.
    SystemGuard { slot: usize },
}

/// Classifies a faulting address that lies in a stack region.
pub fn classify(addr: usize) -> Option<StackArea> {
    let slot_size = THREAD_REGION.slot_size();
    if let Some(slot) = THREAD_REGION.slot_of(addr, slot_size) {
        let (lo, hi) = THREAD_REGION.range(slot, slot_size);
        let base = lo + PAGE_SIZE;
        return Some(if addr < base {
            StackArea::GuardPage { slot, base, top: hi }
        } else {
            StackArea::Reservation { slot, base, top: hi }
        });
    }
    SYSTEM_REGION.slot_of(addr, SYSTEM_REGION.slot_size()).map(|slot| StackArea::SystemGuard { slot })
}

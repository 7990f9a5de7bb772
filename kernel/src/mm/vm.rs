//! Kernel virtual address space: fixed-size slots carved out of a region.
//!
//! Stacks need many equal pieces of address space; a region hands them out as numbered slots:
//! slot `i` covers `start + i * slot_size .. + slot_size`. Fresh slots come from a bump index;
//! released slots are reused first (last released, first reused, so a hot slot's page tables
//! are still there). The region also counts live slots per 2 MiB chunk, so that the page
//! tables of chunks nobody uses any more can be given back (`mm::stack::release_cached`).
//!
//! Invariant: a slot is either live (handed out, not released) or in `free` or above `next`;
//! never two at once.

use alloc::vec::Vec;

use crate::mm::layout::PAGE_SIZE;
use crate::records::spin::{Rank, SpinLock};

/// Address space covered by one leaf page table.
pub const CHUNK_SIZE: usize = 512 * PAGE_SIZE;

/// The address space is used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfAddressSpace;

pub struct SlotRegion {
    pub start: usize,
    pub size: usize,
    state: SpinLock<SlotState>,
}

struct SlotState {
    slot_size: usize,
    /// Slots `next..` were never handed out.
    next: usize,
    /// Released slots, reused first.
    free: Vec<usize>,
    /// Live slots overlapping each chunk.
    live_per_chunk: Vec<u32>,
}

impl SlotRegion {
    pub const fn new(start: usize, size: usize) -> SlotRegion {
        SlotRegion {
            start,
            size,
            state: SpinLock::new(
                Rank::SlotRegion,
                SlotState { slot_size: 0, next: 0, free: Vec::new(), live_per_chunk: Vec::new() },
            ),
        }
    }

    /// Sets the slot size. Must be called once, before the first `alloc`.
    pub fn set_slot_size(&self, slot_size: usize) {
        let mut s = self.state.lock();
        assert!(s.next == 0, "slot size changed after slots were handed out");
        s.slot_size = slot_size;
    }

    pub fn slot_size(&self) -> usize {
        self.state.lock().slot_size
    }

    /// Hands out a slot number.
    pub fn alloc(&self) -> Result<usize, OutOfAddressSpace> {
        let mut s = self.state.lock();
        let slot = match s.free.pop() {
            Some(slot) => slot,
            None => {
                if (s.next + 1) * s.slot_size > self.size {
                    return Err(OutOfAddressSpace);
                }
                s.next += 1;
                s.next - 1
            }
        };
        let chunks = self.chunks_of(slot, s.slot_size);
        if s.live_per_chunk.len() < chunks.end {
            s.live_per_chunk.resize(chunks.end, 0);
        }
        for c in chunks {
            s.live_per_chunk[c] += 1;
        }
        Ok(slot)
    }

    /// Gives slot `slot` back.
    pub fn release(&self, slot: usize) {
        let mut s = self.state.lock();
        for c in self.chunks_of(slot, s.slot_size) {
            s.live_per_chunk[c] -= 1;
        }
        s.free.push(slot);
    }

    /// The address range of slot `slot`.
    pub fn range(&self, slot: usize, slot_size: usize) -> (usize, usize) {
        let lo = self.start + slot * slot_size;
        (lo, lo + slot_size)
    }

    /// Which slot contains `addr`, if any was ever handed out.
    pub fn slot_of(&self, addr: usize, slot_size: usize) -> Option<usize> {
        if addr < self.start || addr >= self.start + self.size || slot_size == 0 {
            return None;
        }
        Some((addr - self.start) / slot_size)
    }

    fn chunks_of(&self, slot: usize, slot_size: usize) -> core::ops::Range<usize> {
        let first = slot * slot_size / CHUNK_SIZE;
        let last = ((slot + 1) * slot_size - 1) / CHUNK_SIZE;
        first..last + 1
    }

    /// Runs `f` with the address ranges of the chunks that no live slot uses (among those ever
    /// used), holding the region's lock: no slot in them can be handed out until `f` returns.
    pub fn with_idle_chunks<R>(&self, f: impl FnOnce(&[(usize, usize)]) -> R) -> R {
        let s = self.state.lock();
        let idle: Vec<(usize, usize)> = s
            .live_per_chunk
            .iter()
            .enumerate()
            .filter(|(_, live)| **live == 0)
            .map(|(c, _)| (self.start + c * CHUNK_SIZE, self.start + (c + 1) * CHUNK_SIZE))
            .collect();
        f(&idle)
    }
}

impl SlotRegion {
    /// Forgets released slots at the top of the used range (so the range shrinks back) and
    /// gives back the spare capacity of the bookkeeping tables.
    pub fn compact(&self) {
        let mut s = self.state.lock();
        s.free.sort_unstable();
        while s.next > 0 && s.free.last() == Some(&(s.next - 1)) {
            s.free.pop();
            s.next -= 1;
        }
        let chunks = if s.next == 0 { 0 } else { (s.next * s.slot_size - 1) / CHUNK_SIZE + 1 };
        s.live_per_chunk.truncate(chunks);
        s.live_per_chunk.shrink_to_fit();
        s.free.shrink_to_fit();
    }
}

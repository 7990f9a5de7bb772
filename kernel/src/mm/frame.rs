//! The physical frame allocator: 4 KiB frames from the bootloader's usable memory regions.
//!
//! A bitmap with one bit per frame of physical memory (1 = free) lives in the first usable
//! region large enough to hold it. Allocation scans 64 frames at a time from a hint (the lowest
//! word that may hold a free frame), so it is O(1) in the common case; freeing sets the bit
//! and lowers the hint. Freeing a frame that is already free is a bug caught at once (the bit
//! tells), which is the reason for a bitmap rather than a free list.
//!
//! Frames below 1 MiB are never handed out: the low megabyte holds firmware data and the
//! real-mode start-up code of the other CPUs (`smp_boot`).
//!
//! Invariants: `free` equals the number of set bits; a frame is handed out at most once until
//! freed. The lock is a `SpinLock` (never taken in interrupt handlers); `owner` names the
//! thread holding it, so that the stack-growth slow path can see that it must not wait for it.

use core::sync::atomic::{AtomicPtr, Ordering};

use bootloader_api::info::{MemoryRegionKind, MemoryRegions};
use x86_64::PhysAddr;
use x86_64::structures::paging::PhysFrame;

use crate::arch::phys::phys_to_virt;
use crate::mm::layout::PAGE_SIZE;
use crate::records::g::G;
use crate::records::spin::{Rank, SpinLock};

/// Frames below this physical address are never allocated.
const LOW_MEMORY_END: u64 = 1 << 20;

/// Out of physical memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfFrames;

struct Bitmap {
    /// One bit per frame, 1 = free. Points into the physical-memory window.
    words: &'static mut [u64],
    /// Lowest word index that may contain a free frame.
    hint: usize,
    free: usize,
    total: usize,
}

static FRAMES: SpinLock<Option<Bitmap>> = SpinLock::new(Rank::Frames, None);
/// The thread holding `FRAMES`, or null.
static OWNER: AtomicPtr<G> = AtomicPtr::new(core::ptr::null_mut());

/// Counts of usable frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameStats {
    /// Frames managed by the allocator.
    pub total: usize,
    /// Frames free now.
    pub free: usize,
}

impl FrameStats {
    pub fn used(&self) -> usize {
        self.total - self.free
    }
}

/// Builds the bitmap from the bootloader's memory map.
pub fn init(regions: &MemoryRegions) {
    let usable = || {
        regions.iter().filter(|r| r.kind == MemoryRegionKind::Usable).map(|r| {
            let start = r.start.max(LOW_MEMORY_END).next_multiple_of(PAGE_SIZE as u64);
            let end = r.end & !(PAGE_SIZE as u64 - 1);
            (start, end.max(start))
        })
    };
    let top = usable().map(|(_, end)| end).max().unwrap_or(0);
    let frames = (top / PAGE_SIZE as u64) as usize;
    let words_len = frames.div_ceil(64);
    let bitmap_bytes = (words_len * 8).next_multiple_of(PAGE_SIZE);

    // Put the bitmap at the start of the first usable region that can hold it.
    let (bitmap_phys, _) = usable()
        .find(|(start, end)| end - start >= bitmap_bytes as u64)
        .expect("no usable memory region can hold the frame bitmap");
    let ptr = phys_to_virt(PhysAddr::new(bitmap_phys)).as_mut_ptr::<u64>();
    // SAFETY: the bytes belong to a usable region nobody else uses yet (the allocator does not
    // exist), and the bitmap's own frames are marked used below before any allocation.
    let words = unsafe {
        core::ptr::write_bytes(ptr, 0, words_len);
        core::slice::from_raw_parts_mut(ptr, words_len)
    };
    let mut map = Bitmap { words, hint: 0, free: 0, total: 0 };
    for (start, end) in usable() {
        for frame in (start / PAGE_SIZE as u64)..(end / PAGE_SIZE as u64) {
            let in_bitmap = frame * PAGE_SIZE as u64 >= bitmap_phys
                && frame * (PAGE_SIZE as u64) < bitmap_phys + bitmap_bytes as u64;
            if !in_bitmap {
                map.words[frame as usize / 64] |= 1 << (frame % 64);
                map.free += 1;
            }
        }
    }
    map.total = map.free;
    *FRAMES.lock() = Some(map);
}

/// Runs `f` with the bitmap locked, recording the owner for `held_by`.
fn with_bitmap<R>(f: impl FnOnce(&mut Bitmap) -> R) -> R {
    let mut guard = FRAMES.lock();
    OWNER.store(crate::records::percpu::current() as *const G as *mut G, Ordering::Relaxed);
    let result = f(guard.as_mut().expect("frame allocator used before mm::init"));
    OWNER.store(core::ptr::null_mut(), Ordering::Relaxed);
    result
}

/// Does `g` hold the frame allocator's lock right now? (Then it must not wait for it.)
pub fn held_by(g: &G) -> bool {
    core::ptr::eq(OWNER.load(Ordering::Relaxed), g)
}

/// Allocates one frame. Its contents are undefined.
pub fn alloc() -> Result<PhysFrame, OutOfFrames> {
    with_bitmap(|map| {
        let len = map.words.len();
        for i in map.hint..len {
            let word = map.words[i];
            if word != 0 {
                let bit = word.trailing_zeros() as usize;
                map.words[i] = word & !(1 << bit);
                map.hint = i;
                map.free -= 1;
                let addr = ((i * 64 + bit) * PAGE_SIZE) as u64;
                return Ok(PhysFrame::containing_address(PhysAddr::new(addr)));
            }
        }
        map.hint = len;
        Err(OutOfFrames)
    })
}

/// Allocates one frame filled with zeros.
pub fn alloc_zeroed() -> Result<PhysFrame, OutOfFrames> {
    let frame = alloc()?;
    // SAFETY: the frame was just allocated, so nothing else uses it; the window maps it.
    unsafe { core::ptr::write_bytes(phys_to_virt(frame.start_address()).as_mut_ptr::<u8>(), 0, PAGE_SIZE) };
    Ok(frame)
}

/// Returns `frame` to the allocator. Panics if it was already free (a double free).
pub fn free(frame: PhysFrame) {
    let index = (frame.start_address().as_u64() / PAGE_SIZE as u64) as usize;
    with_bitmap(|map| {
        let (word, bit) = (index / 64, index % 64);
        assert!(map.words[word] & (1 << bit) == 0, "frame {:#x} freed twice", frame.start_address());
        map.words[word] |= 1 << bit;
        map.free += 1;
        map.hint = map.hint.min(word);
    })
}

/// Current counts.
pub fn stats() -> FrameStats {
    with_bitmap(|map| FrameStats { total: map.total, free: map.free })
}

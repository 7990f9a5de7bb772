//! The kernel's virtual memory map (see docs/memory.md for the picture).
//!
//! ```text
//! 0xffff_8000_0000_0000  bootloader's dynamic range: physical-memory window, boot info, ...
//! 0xffff_c000_0000_0000  kernel heap (grows upward on demand, up to heap_max_mib)
//! 0xffff_d000_0000_0000  thread stacks: slots of [guard page | reservation]
//! 0xffff_e000_0000_0000  system stacks (g0, interrupt, critical): same slot layout
//! 0xffff_ffff_8000_0000  kernel image
//! ```
//!
//! Each region has its own top-level (PML4) entries, so their page tables never mix.

/// Size of a page and of a frame.
pub const PAGE_SIZE: usize = 4096;

pub const HEAP_START: usize = 0xffff_c000_0000_0000;
/// The heap may never grow beyond this, whatever the command line says.
pub const HEAP_LIMIT: usize = 64 << 30;

pub const THREAD_STACKS_START: usize = 0xffff_d000_0000_0000;
pub const THREAD_STACKS_SIZE: usize = 512 << 30;

pub const SYSTEM_STACKS_START: usize = 0xffff_e000_0000_0000;
pub const SYSTEM_STACKS_SIZE: usize = 1 << 30;

/// Rounds `x` up to a multiple of the page size.
pub const fn page_round_up(x: usize) -> usize {
    (x + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

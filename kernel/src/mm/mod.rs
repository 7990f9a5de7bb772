//! Memory management: physical frames, page tables, the kernel heap, and stacks.
//!
//! Start-up order (`init`): frames from the bootloader's memory map, then the page-table
//! access over the physical-memory window, then the heap, then the stack regions. After
//! `init`, every allocator returns `Err` (or a null pointer, for the heap) when memory runs
//! out; nothing in here panics on exhaustion.

pub mod frame;
pub mod heap;
pub mod layout;
pub mod paging;
pub mod stack;
mod tests;
pub mod tlb;
pub mod vm;

use bootloader_api::BootInfo;

/// Sets up memory management from the bootloader's information.
pub fn init(boot_info: &'static BootInfo, heap_max: usize) {
    let phys_offset = boot_info
        .physical_memory_offset
        .into_option()
        .expect("the bootloader must map physical memory (BootloaderConfig::physical_memory)");
    paging::init(phys_offset);
    frame::init(&boot_info.memory_regions);
    heap::init(heap_max);
}

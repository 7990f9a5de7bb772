//! Starting the application processors (every CPU but the first).
//!
//! An AP wakes up in 16-bit real mode at the address an INIT-SIPI-SIPI sequence gives it (a
//! page below 1 MiB). The trampoline below takes it to long mode on the kernel's page tables:
//!
//! ```text
//!   real mode (CS = page >> 4)  --lgdt, CR0.PE-->  32-bit protected mode
//!   --CR4.PAE, CR3, EFER.LME|NXE, CR0.PG-->  long mode, still at the low page (identity-mapped
//!   for the duration)  --jmp-->  ap_entry64 in the kernel image, on the AP's own g0 stack
//! ```
//!
//! The trampoline is copied to the low page and patched with absolute addresses (it runs at
//! whatever page was free). CPU 0 prepares everything an AP needs before waking it -- its
//! per-CPU block, g0 stack, interrupt stacks -- so that the AP sets its GS base in assembly
//! before any (instrumented) Rust runs, exactly as `_start` does on CPU 0. APs are started one
//! at a time (they share the trampoline's data); if one does not answer within
//! `START_TIMEOUT`, it is reported and no further CPU is started (a CPU stuck half-way through
//! the trampoline still reads its data, which must not change under it).

use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;

use bootloader_api::info::MemoryRegionKind;
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::{PageTableFlags, PhysFrame};
use x86_64::{PhysAddr, VirtAddr};

use crate::arch::acpi::CpuList;
use crate::arch::cpu::{CRITICAL_STACK_SIZE, G0_STACK_SIZE, INTERRUPT_STACK_SIZE, StackRange};
use crate::mm::layout::PAGE_SIZE;
use crate::mm::paging;
use crate::records::percpu::{self, PerCpu};

/// How long an AP gets to reach Rust after its start-up IPIs.
const START_TIMEOUT: Duration = Duration::from_millis(500);

// The trampoline. Register contract: entered in real mode with CS = trampoline page >> 4, IP
// = 0; keeps the trampoline's physical base in ebx/rbx throughout; leaves with rsp = the AP's
// g0 stack top and rdi = its per-CPU block, jumping to `ap_entry64`. Interrupts stay disabled.
core::arch::global_asm!(
    r#"
    .section .rodata.ap_trampoline, "a"
    .p2align 12
    .global ap_trampoline_start
    .global ap_trampoline_end
    .global ap_tramp_gdtr
    .global ap_tramp_pm32_ptr
    .global ap_tramp_lm64_ptr
    .global ap_tramp_cr3
    .global ap_tramp_stack
    .global ap_tramp_percpu
    .global ap_tramp_entry
    .code16
ap_trampoline_start:
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    movzx %ax, %ebx
    shl $4, %ebx
    lgdtl (ap_tramp_gdtr - ap_trampoline_start)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl *(ap_tramp_pm32_ptr - ap_trampoline_start)

    .code32
ap_tramp_pm32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov (ap_tramp_cr3 - ap_trampoline_start)(%ebx), %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx
    rdmsr
    or $0x900, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80010000, %eax
    mov %eax, %cr0
    ljmpl *(ap_tramp_lm64_ptr - ap_trampoline_start)(%ebx)

    .code64
ap_tramp_lm64:
    mov (ap_tramp_stack - ap_trampoline_start)(%rbx), %rsp
    mov (ap_tramp_percpu - ap_trampoline_start)(%rbx), %rdi
    mov (ap_tramp_entry - ap_trampoline_start)(%rbx), %rax
    jmp *%rax

    .p2align 3
ap_tramp_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
    .quad 0x00af9a000000ffff
ap_tramp_gdt_end:
ap_tramp_gdtr:
    .word ap_tramp_gdt_end - ap_tramp_gdt - 1
    .long 0
ap_tramp_pm32_ptr:
    .long 0
    .word 0x08
ap_tramp_lm64_ptr:
    .long 0
    .word 0x18
    .p2align 3
ap_tramp_cr3:
    .quad 0
ap_tramp_stack:
    .quad 0
ap_tramp_percpu:
    .quad 0
ap_tramp_entry:
    .quad 0
    .global ap_tramp_pm32_label
    .global ap_tramp_lm64_label
    .global ap_tramp_gdt_label
    .set ap_tramp_pm32_label, ap_tramp_pm32
    .set ap_tramp_lm64_label, ap_tramp_lm64
    .set ap_tramp_gdt_label, ap_tramp_gdt
ap_trampoline_end:
    .code64
    "#,
    options(att_syntax)
);

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static ap_tramp_gdtr: u8;
    static ap_tramp_pm32_ptr: u8;
    static ap_tramp_lm64_ptr: u8;
    static ap_tramp_cr3: u8;
    static ap_tramp_stack: u8;
    static ap_tramp_percpu: u8;
    static ap_tramp_entry: u8;
    static ap_tramp_pm32_label: u8;
    static ap_tramp_lm64_label: u8;
    static ap_tramp_gdt_label: u8;
}

/// Offset of trampoline symbol `sym` from the trampoline's start.
fn offset(sym: *const u8) -> usize {
    sym as usize - core::ptr::addr_of!(ap_trampoline_start) as usize
}

/// The AP's first instruction in the kernel image.
///
/// Register contract: rsp = the AP's g0 stack top, rdi = its `PerCpu`; interrupts disabled.
/// Sets the GS base, then calls `ap_main`. Never returns.
#[unsafe(naked)]
unsafe extern "C" fn ap_entry64() -> ! {
    core::arch::naked_asm!(
        "mov rax, rdi",
        "mov rdx, rdi",
        "shr rdx, 32",
        "mov ecx, 0xC0000101",
        "wrmsr",
        "xor ebp, ebp",
        "call {main}",
        "ud2",
        main = sym ap_main,
    )
}

/// Set by an AP once it runs Rust code.
static AP_ALIVE: AtomicBool = AtomicBool::new(false);

/// The AP's first Rust code (GS base valid, `curg` = its g0).
extern "C" fn ap_main(cpu: &'static PerCpu) -> ! {
    // SAFETY: once, on this CPU, interrupts disabled; the block lives forever.
    unsafe { cpu.arch.tables.load() };
    crate::records::trap_entry::load_idt();
    crate::arch::apic::enable_this_cpu();
    crate::arch::apic::start_timer();
    percpu::CPUS_ONLINE.fetch_add(1, Ordering::AcqRel);
    AP_ALIVE.store(true, Ordering::Release);
    crate::sched::run_scheduler(cpu)
}

/// A page below 1 MiB that the memory map says is free and nothing maps at its own address.
fn trampoline_page() -> Option<u64> {
    // Below the extended BIOS data area, above the real-mode interrupt table.
    const LOW: u64 = 0x1000;
    const HIGH: u64 = 0x9f000;
    let regions = &crate::boot_info().memory_regions;
    regions
        .iter()
        .filter(|r| r.kind == MemoryRegionKind::Usable)
        .flat_map(|r| {
            let end = (r.end & !(PAGE_SIZE as u64 - 1)).min(HIGH);
            (r.start.next_multiple_of(PAGE_SIZE as u64).max(LOW)..end).step_by(PAGE_SIZE)
        })
        .find(|&page| !paging::is_mapped(page as usize))
}

/// Prepares CPU `index` (per-CPU block, stacks) for start-up. CPU 0 runs this.
fn prepare(index: usize, apic_id: u32) -> Result<&'static PerCpu, crate::mm::stack::StackError> {
    let cpu = percpu::cpu(index);
    // SAFETY: the AP is not running yet; CPU 0 is the only one touching its block.
    unsafe { cpu.bind_records() };
    cpu.apic_id.store(apic_id, Ordering::Relaxed);
    let (interrupt, critical) = alloc_cpu_stacks()?;
    // SAFETY: as above; the stacks are mapped and belong to this CPU for good.
    unsafe { crate::records::cpu_setup::bind_interrupt_stacks(cpu, interrupt, critical) };
    let g0 = crate::mm::stack::alloc_system(G0_STACK_SIZE)?;
    cpu.g0().bind_stack(g0.mapped_lo, g0.top);
    Ok(cpu)
}

/// Waits (spinning on the TSC clock) until `done` or `timeout`.
fn wait_until(timeout: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = crate::time::now() + timeout;
    while crate::time::now() < deadline {
        if done() {
            return true;
        }
        core::hint::spin_loop();
    }
    done()
}

/// Starts every AP in `cpus` (whose first entry is CPU 0). Returns how many came up.
///
/// With `leave_last_stuck` (the test-only `crash=stuck-cpu`), the last AP is sent a trampoline
/// that stops in an endless loop as soon as it reaches 32-bit protected mode, with the real-mode
/// interrupt table still in its IDTR: a CPU that never finished its start-up, as a real machine
/// may have one (an interrupt there reads garbage gates and resets the machine).
pub fn start_all(cpus: &CpuList, leave_last_stuck: bool) -> usize {
    if cpus.count <= 1 {
        return 0;
    }
    let Some(page) = trampoline_page() else {
        log::error!("smp: no free page below 1 MiB for the start-up trampoline; running on CPU 0 only");
        return 0;
    };
    let (l4, _) = Cr3::read();
    if l4.start_address().as_u64() >= 1 << 32 {
        log::error!("smp: the kernel's page table is above 4 GiB, out of reach of the trampoline");
        return 0;
    }
    // Copy the trampoline, identity-map its page, and patch its absolute addresses.
    let base = page as usize;
    let len = core::ptr::addr_of!(ap_trampoline_end) as usize - core::ptr::addr_of!(ap_trampoline_start) as usize;
    let window = crate::arch::phys::phys_to_virt(PhysAddr::new(page)).as_mut_ptr::<u8>();
    let patch32 = |sym: *const u8, value: u32| {
        // SAFETY: `window + offset` lies inside the copied trampoline page.
        unsafe { window.add(offset(sym)).cast::<u32>().write_unaligned(value) }
    };
    let patch64 = |sym: *const u8, value: u64| {
        // SAFETY: as above.
        unsafe { window.add(offset(sym)).cast::<u64>().write_unaligned(value) }
    };
    // SAFETY: the page is free memory (memory map) that nothing else uses; the source is the
    // trampoline in the kernel image.
    unsafe { core::ptr::copy_nonoverlapping(core::ptr::addr_of!(ap_trampoline_start), window, len) };
    let gdtr_base = core::ptr::addr_of!(ap_tramp_gdtr).wrapping_add(2);
    patch32(gdtr_base, (base + offset(core::ptr::addr_of!(ap_tramp_gdt_label))) as u32);
    patch32(core::ptr::addr_of!(ap_tramp_pm32_ptr), (base + offset(core::ptr::addr_of!(ap_tramp_pm32_label))) as u32);
    patch32(core::ptr::addr_of!(ap_tramp_lm64_ptr), (base + offset(core::ptr::addr_of!(ap_tramp_lm64_label))) as u32);
    patch64(core::ptr::addr_of!(ap_tramp_cr3), l4.start_address().as_u64());
    patch64(core::ptr::addr_of!(ap_tramp_entry), ap_entry64 as *const () as u64);
    let frame = PhysFrame::containing_address(PhysAddr::new(page));
    if paging::map(VirtAddr::new(page), frame, PageTableFlags::PRESENT | PageTableFlags::WRITABLE).is_err() {
        log::error!("smp: no memory to map the start-up trampoline");
        return 0;
    }

    let mut started = 0;
    for (index, &apic_id) in cpus.apic_ids.iter().enumerate().take(cpus.count).skip(1) {
        let cpu = match prepare(index, apic_id) {
            Ok(cpu) => cpu,
            Err(e) => {
                log::error!("smp: no memory for CPU {index} (APIC id {apic_id}): {e:?}");
                break;
            }
        };
        if leave_last_stuck && index == cpus.count - 1 {
            // `jmp $` at the first protected-mode instruction.
            // SAFETY: inside the copied trampoline page, which only this AP will run.
            unsafe {
                window.add(offset(core::ptr::addr_of!(ap_tramp_pm32_label))).cast::<[u8; 2]>().write([0xeb, 0xfe])
            };
        }
        patch64(core::ptr::addr_of!(ap_tramp_stack), cpu.g0().stack_bounds().1 as u64);
        patch64(core::ptr::addr_of!(ap_tramp_percpu), cpu as *const PerCpu as u64);
        AP_ALIVE.store(false, Ordering::SeqCst);
        crate::arch::apic::send_init(apic_id);
        wait_until(Duration::from_millis(10), || false);
        for _ in 0..2 {
            crate::arch::apic::send_startup(apic_id, (page >> 12) as u8);
            if wait_until(Duration::from_micros(200), || AP_ALIVE.load(Ordering::Acquire)) {
                break;
            }
        }
        if wait_until(START_TIMEOUT, || AP_ALIVE.load(Ordering::Acquire)) {
            started += 1;
        } else {
            log::error!(
                "smp: CPU {index} (APIC id {apic_id}) did not start within {START_TIMEOUT:?}; not starting the CPUs after it"
            );
            break;
        }
    }
    // The trampoline is no longer needed (APs that did not start are left in INIT state). The
    // page tables that mapped it stay: they may be shared with the bootloader's low mappings.
    paging::unmap(VirtAddr::new(page));
    crate::mm::tlb::flush_all_everywhere();
    started
}

/// Gives this CPU guarded stacks from `mm::stack` for its interrupt stack table. Returns the
/// ranges of the interrupt stack and the three critical stacks.
pub fn alloc_cpu_stacks() -> Result<(StackRange, [StackRange; 3]), crate::mm::stack::StackError> {
    let range = |s: crate::mm::stack::Stack| StackRange { lo: s.mapped_lo, hi: s.top };
    let interrupt = range(crate::mm::stack::alloc_system(INTERRUPT_STACK_SIZE)?);
    let mut critical = [StackRange::default(); 3];
    for c in &mut critical {
        *c = range(crate::mm::stack::alloc_system(CRITICAL_STACK_SIZE)?);
    }
    Ok((interrupt, critical))
}

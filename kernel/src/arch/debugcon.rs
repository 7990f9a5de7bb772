//! QEMU's debug console: an output-only port (0xe9) that QEMU writes to a file given with
//! `-debugcon file:PATH`, apart from the serial console. The scheduler trace leaves the machine
//! through it (`trace::dump`), so that its bytes never mix with what the kernel prints.
//!
//! Without `-debugcon`, QEMU ignores writes to the port: writing costs a little time, nothing else.

/// The I/O port of QEMU's ISA debug console (its default `iobase`).
const PORT: u16 = 0xe9;

/// Writes `bytes` to the debug console.
pub fn write(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    // SAFETY: `rep outsb` reads `rcx` bytes from `[rsi]` (the slice, valid for reads) and writes
    // them to port `dx`; the debug console has no effect on memory. The direction flag is clear
    // (the ABI guarantees it at a call).
    unsafe {
        core::arch::asm!(
            "rep outsb",
            inout("rsi") bytes.as_ptr() => _,
            inout("rcx") bytes.len() => _,
            in("dx") PORT,
            options(nostack, preserves_flags, readonly)
        );
    }
}

//! The legacy programmable interval timer (PIT, 8254), used only as a known clock to measure
//! the TSC and local-APIC timer frequencies at boot.
//!
//! Channel 2 counts down at 1.193182 MHz; its output is readable in bit 5 of port 0x61 and its
//! gate is bit 0 of the same port. Programmed in mode 0 (interrupt on terminal count), the
//! output goes high when the count reaches zero: a busy-wait of exactly `count` PIT ticks.

use x86_64::instructions::port::Port;

const PIT_HZ: u64 = 1_193_182;

/// Busy-waits `ms` milliseconds (at most 54) measured by the PIT, calling `start` just before
/// the count starts and returning what `end` returns right after it ends.
pub fn measure<T>(ms: u64, start: impl FnOnce(), end: impl FnOnce() -> T) -> T {
    let count = (PIT_HZ * ms / 1000).min(0xffff) as u16;
    let mut gate = Port::<u8>::new(0x61);
    let mut command = Port::<u8>::new(0x43);
    let mut channel2 = Port::<u8>::new(0x42);
    // SAFETY: ports 0x42/0x43/0x61 are the PIT's channel 2 and the speaker gate; nothing else
    // in the kernel uses them.
    unsafe {
        let g = gate.read();
        gate.write((g & !0x02) | 0x01); // gate on, speaker off
        command.write(0b1011_0000); // channel 2, lobyte/hibyte, mode 0, binary
        channel2.write(count as u8);
        channel2.write((count >> 8) as u8);
        // Restart the count by toggling the gate.
        let g = gate.read();
        gate.write(g & !0x01);
        gate.write(g | 0x01);
        start();
        while gate.read() & 0x20 == 0 {
            core::hint::spin_loop();
        }
    }
    end()
}

/// Remaps the legacy 8259 interrupt controllers to vectors 0x20..0x2f and masks every line:
/// Prologue uses the local APIC only, but a PIC left at its power-on vectors (0x08..0x0f)
/// would deliver spurious interrupts on exception vectors.
pub fn disable_legacy_pic() {
    let mut master_cmd = Port::<u8>::new(0x20);
    let mut master_data = Port::<u8>::new(0x21);
    let mut slave_cmd = Port::<u8>::new(0xa0);
    let mut slave_data = Port::<u8>::new(0xa1);
    // SAFETY: the standard 8259 initialization sequence on its fixed ports.
    unsafe {
        master_cmd.write(0x11);
        slave_cmd.write(0x11);
        master_data.write(0x20);
        slave_data.write(0x28);
        master_data.write(0x04);
        slave_data.write(0x02);
        master_data.write(0x01);
        slave_data.write(0x01);
        master_data.write(0xff);
        slave_data.write(0xff);
    }
}

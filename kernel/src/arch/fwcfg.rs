//! QEMU's firmware configuration device (`fw_cfg`), used to read the kernel command line.
//!
//! The runner passes `-fw_cfg name=opt/prologue/cmdline,file=...`; the kernel finds that file
//! in the fw_cfg directory and reads it through the legacy I/O ports (selector 0x510, data
//! 0x511). Works the same under BIOS and UEFI, and needs no disk image per command line.
//! Multi-byte fields of the directory are big-endian.

use x86_64::instructions::port::Port;

const SELECTOR_PORT: u16 = 0x510;
const DATA_PORT: u16 = 0x511;
const SELECT_SIGNATURE: u16 = 0x0000;
const SELECT_FILE_DIR: u16 = 0x0019;

/// Name of the command-line file the runner provides.
pub const CMDLINE_FILE: &str = "opt/prologue/cmdline";

fn select(key: u16) {
    // SAFETY: the fw_cfg selector port only chooses which item the data port reads.
    unsafe { Port::<u16>::new(SELECTOR_PORT).write(key) };
}

fn read_bytes(buf: &mut [u8]) {
    let mut data = Port::<u8>::new(DATA_PORT);
    for b in buf {
        // SAFETY: reading the data port returns the next byte of the selected item.
        *b = unsafe { data.read() };
    }
}

fn read_be32() -> u32 {
    let mut b = [0; 4];
    read_bytes(&mut b);
    u32::from_be_bytes(b)
}

/// Is the fw_cfg device present (signature "QEMU")?
pub fn present() -> bool {
    select(SELECT_SIGNATURE);
    let mut sig = [0; 4];
    read_bytes(&mut sig);
    &sig == b"QEMU"
}

/// Reads fw_cfg file `name` into `buf`; returns the file's full length (only the first
/// `buf.len()` bytes are read: a larger result means it did not fit), or `None` if the device
/// or the file is missing.
pub fn read_file(name: &str, buf: &mut [u8]) -> Option<usize> {
    if !present() {
        return None;
    }
    select(SELECT_FILE_DIR);
    let count = read_be32();
    for _ in 0..count {
        let size = read_be32() as usize;
        let mut sel = [0; 2];
        read_bytes(&mut sel);
        let mut reserved = [0; 2];
        read_bytes(&mut reserved);
        let mut raw_name = [0u8; 56];
        read_bytes(&mut raw_name);
        let len = raw_name.iter().position(|&b| b == 0).unwrap_or(raw_name.len());
        if &raw_name[..len] == name.as_bytes() {
            select(u16::from_be_bytes(sel));
            let n = size.min(buf.len());
            read_bytes(&mut buf[..n]);
            return Some(size);
        }
    }
    None
}

/// The number of CPUs QEMU was started with (`-smp`), from fw_cfg item 0x05.
pub fn cpu_count() -> Option<u16> {
    if !present() {
        return None;
    }
    select(0x0005);
    let mut b = [0; 2];
    read_bytes(&mut b);
    Some(u16::from_le_bytes(b))
}

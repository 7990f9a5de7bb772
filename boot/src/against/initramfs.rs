//! The initramfs of a comparison run: a `newc` cpio archive holding `/init`, `/dev` and
//! `/dev/console`, which Linux unpacks into its root file system before it runs `/init`.
//!
//! The format, as the kernel's `Documentation/driver-api/early-userspace/buffer-format.rst`
//! defines it: each entry is a 110-byte header -- the magic `070701`, then 13 fields of 8
//! hexadecimal digits (inode, mode, uid, gid, link count, mtime, data size, the device's major
//! and minor, the major and minor of the device a special file refers to, the name's length
//! counting its final NUL, and a checksum that is 0 in this format) -- followed by the name and
//! its NUL, padded with NULs to a multiple of 4 bytes, then the data, padded the same way. An
//! entry named `TRAILER!!!` ends the archive.
//!
//! `/dev/console` must exist before `/init` starts: the kernel opens it as the program's
//! standard input and output, and its own devtmpfs is not mounted in an initramfs. Names are
//! stored without the leading `/`, as cpio(1) writes them; the kernel unpacks them into `/`.
//! Every time stamp is 0, so the archive of the same program is the same bytes.

use anyhow::{Result, bail};

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";

/// File types, as in `st_mode`.
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFCHR: u32 = 0o020_000;

/// The console's device number: character device 5:1.
const CONSOLE: (u32, u32) = (5, 1);

/// One archive entry.
struct Entry<'a> {
    name: &'a str,
    mode: u32,
    nlink: u32,
    /// The device a character device refers to (major, minor).
    rdev: (u32, u32),
    data: &'a [u8],
}

/// The archive with `init` as `/init` (mode 0755), the directory `/dev` and `/dev/console`.
pub fn archive(init: &[u8]) -> Result<Vec<u8>> {
    let entries = [
        Entry { name: "init", mode: S_IFREG | 0o755, nlink: 1, rdev: (0, 0), data: init },
        Entry { name: "dev", mode: S_IFDIR | 0o755, nlink: 2, rdev: (0, 0), data: &[] },
        Entry { name: "dev/console", mode: S_IFCHR | 0o600, nlink: 1, rdev: CONSOLE, data: &[] },
    ];
    let mut out = Vec::with_capacity(init.len() + 512);
    for (ino, entry) in (1..).zip(&entries) {
        push(&mut out, ino, entry)?;
    }
    push(&mut out, 0, &Entry { name: TRAILER, mode: 0, nlink: 1, rdev: (0, 0), data: &[] })?;
    Ok(out)
}

/// Appends one entry (header, name, data, each padded to 4 bytes).
fn push(out: &mut Vec<u8>, ino: u32, entry: &Entry) -> Result<()> {
    let Ok(size) = u32::try_from(entry.data.len()) else {
        bail!("{} is {} bytes: a cpio entry holds less than 4 GiB", entry.name, entry.data.len());
    };
    let namesize = entry.name.len() as u32 + 1;
    let fields = [ino, entry.mode, 0, 0, entry.nlink, 0, size, 0, 0, entry.rdev.0, entry.rdev.1, namesize, 0];
    out.extend_from_slice(MAGIC.as_bytes());
    for field in fields {
        out.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    out.extend_from_slice(entry.name.as_bytes());
    out.push(0);
    pad(out);
    out.extend_from_slice(entry.data);
    pad(out);
    Ok(())
}

/// Pads with NULs to a multiple of 4 bytes (the archive starts aligned, so this aligns both
/// the end of the header and name, and the end of the data).
fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry read back: its header fields, name, and where its data starts.
    struct Parsed {
        offset: usize,
        fields: Vec<u32>,
        name: String,
        data_offset: usize,
    }

    /// Reads the archive back, checking the magic, the NUL after each name and the zero padding.
    fn read_back(archive: &[u8]) -> Vec<Parsed> {
        let mut entries = Vec::new();
        let mut at = 0;
        loop {
            let header = &archive[at..at + 110];
            assert_eq!(&header[..6], MAGIC.as_bytes(), "magic at offset {at}");
            let fields: Vec<u32> = header[6..]
                .chunks(8)
                .map(|f| u32::from_str_radix(std::str::from_utf8(f).unwrap(), 16).unwrap())
                .collect();
            let namesize = fields[11] as usize;
            let name_end = at + 110 + namesize;
            assert_eq!(archive[name_end - 1], 0, "the name ends in a NUL");
            let name = String::from_utf8(archive[at + 110..name_end - 1].to_vec()).unwrap();
            let data_offset = name_end.next_multiple_of(4);
            assert!(archive[name_end..data_offset].iter().all(|&b| b == 0), "name padding is NULs");
            let data_end = data_offset + fields[6] as usize;
            let next = data_end.next_multiple_of(4);
            assert!(archive[data_end..next].iter().all(|&b| b == 0), "data padding is NULs");
            let done = name == TRAILER;
            entries.push(Parsed { offset: at, fields, name, data_offset });
            if done {
                assert_eq!(next, archive.len(), "nothing follows the trailer");
                return entries;
            }
            at = next;
        }
    }

    #[test]
    fn archive_has_init_dev_console_and_trailer() {
        // Five bytes of data: neither the name nor the data ends on a 4-byte boundary.
        let init = b"\x7fELF!";
        let archive = archive(init).unwrap();
        assert_eq!(archive.len() % 4, 0);
        let entries = read_back(&archive);
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["init", "dev", "dev/console", "TRAILER!!!"]);
        for e in &entries {
            assert_eq!(e.offset % 4, 0, "{} starts aligned", e.name);
            assert_eq!(e.data_offset % 4, 0, "{}'s data starts aligned", e.name);
            assert_eq!(e.fields[11] as usize, e.name.len() + 1, "{}'s namesize counts the NUL", e.name);
            assert_eq!(e.fields[12], 0, "no checksum in newc");
        }
        let [init_entry, dev, console, trailer] = &entries[..] else { panic!("four entries") };
        // `init`: a regular file, 0755, holding the data.
        assert_eq!(init_entry.fields[1], 0o100_755);
        assert_eq!(init_entry.fields[6], 5);
        assert_eq!(&archive[init_entry.data_offset..init_entry.data_offset + 5], init);
        // 110 + "init\0" = 115, padded to 116.
        assert_eq!(init_entry.data_offset, 116);
        // `dev`: a directory, no data.
        assert_eq!(dev.fields[1], 0o040_755);
        assert_eq!(dev.fields[6], 0);
        // `dev/console`: character device 5:1, no data.
        assert_eq!(console.fields[1], 0o020_600);
        assert_eq!((console.fields[9], console.fields[10]), (5, 1));
        assert_eq!(console.fields[6], 0);
        // The trailer: no data, and distinct inode numbers before it.
        assert_eq!(trailer.fields[6], 0);
        assert_eq!([init_entry.fields[0], dev.fields[0], console.fields[0]], [1, 2, 3]);
    }

    #[test]
    fn same_program_same_bytes() {
        assert_eq!(archive(b"abc").unwrap(), archive(b"abc").unwrap());
    }
}

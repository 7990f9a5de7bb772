//! Replaying a run: the image's build id, the line that reproduces a failed run, and the check
//! that a replay boots the image it was recorded on.
//!
//! Under `--icount` a run is a function of the kernel image, its command line and its seed
//! (docs/stress.md, "Replaying a failure"), so a replay line names all three: the runner's own
//! arguments (which give the command line and the seed) and `--expect-build-id`. The build id is
//! a SHA-256 over the image's loaded segments (the code and data the guest runs; not the debug
//! information, which differs between checkouts in different directories). The runner refuses
//! to boot an image whose id differs from the expected one.

use std::path::Path;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// The build id of the kernel ELF at `elf`: the first 16 bytes of a SHA-256 over its loaded
/// segments, in hex.
pub fn build_id(elf: &Path) -> Result<String> {
    let bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    let segments = loaded_segments(&bytes).with_context(|| format!("{} is not a 64-bit ELF file", elf.display()))?;
    let mut hash = Sha256::new();
    for (vaddr, data) in segments {
        hash.update(vaddr.to_le_bytes());
        hash.update((data.len() as u64).to_le_bytes());
        hash.update(data);
    }
    Ok(hash.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect())
}

/// The `PT_LOAD` segments of an ELF64 little-endian file: (virtual address, file bytes).
fn loaded_segments(elf: &[u8]) -> Option<Vec<(u64, &[u8])>> {
    if elf.get(..4)? != b"\x7fELF" || *elf.get(4)? != 2 || *elf.get(5)? != 1 {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?));
    let phoff = u64_at(0x20)? as usize;
    let phentsize = u16_at(0x36)? as usize;
    let phnum = u16_at(0x38)? as usize;
    let mut segments = Vec::new();
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        const PT_LOAD: u32 = 1;
        if u32_at(ph)? != PT_LOAD {
            continue;
        }
        let offset = u64_at(ph + 8)? as usize;
        let vaddr = u64_at(ph + 16)?;
        let filesz = u64_at(ph + 32)? as usize;
        segments.push((vaddr, elf.get(offset..offset.checked_add(filesz)?)?));
    }
    if segments.is_empty() { None } else { Some(segments) }
}

/// Refuses to go on if `expected` is given and is not the id of the image at `elf`.
pub fn check_build_id(elf: &Path, expected: Option<&str>) -> Result<()> {
    let Some(expected) = expected else { return Ok(()) };
    let actual = build_id(elf)?;
    if actual != expected.to_ascii_lowercase() {
        bail!(
            "this replay was recorded on the kernel image with build id {expected}, but the image built now has \
             {actual}: the kernel source, the toolchain or the build options differ, so the schedule would not \
             repeat (check out the commit the replay line came from)"
        );
    }
    Ok(())
}

/// The line printed after a failed run: how to run it again, exactly.
pub fn line(args: &[String], icount: bool) -> String {
    let words: Vec<String> = args.iter().map(|a| crate::cli::shell_quote(a)).collect();
    let caveat = if icount {
        ""
    } else {
        "\n(without --icount the guest's time follows the host's, so this repeats the seed but not the schedule; \
         add --icount for an exact replay)"
    };
    format!("replay: cargo run -- {}{caveat}", words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_of_a_tiny_elf() {
        // An ELF64 header with one PT_LOAD program header whose 4 bytes follow it.
        let mut elf = vec![0u8; 0x40 + 0x38 + 4];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let ph = 0x40;
        elf[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
        elf[ph + 8..ph + 16].copy_from_slice(&(0x78u64).to_le_bytes());
        elf[ph + 16..ph + 24].copy_from_slice(&0x1000u64.to_le_bytes());
        elf[ph + 32..ph + 40].copy_from_slice(&4u64.to_le_bytes());
        elf[0x78..].copy_from_slice(b"code");
        assert_eq!(loaded_segments(&elf), Some(vec![(0x1000, &b"code"[..])]));
        assert_eq!(loaded_segments(b"not an elf"), None);
    }

    #[test]
    fn the_line_says_when_it_is_not_exact() {
        let args = ["--icount".to_string(), "stress".to_string(), "--seed".to_string(), "3".to_string()];
        assert_eq!(line(&args, true), "replay: cargo run -- --icount stress --seed 3");
        assert!(line(&args[1..], false).contains("repeats the seed but not the schedule"));
    }
}

//! Disk images, made with the `bootloader` crate from a kernel ELF.
//!
//! Images are written next to the ELF and remade only when the ELF is newer. They are written to
//! a temporary name and renamed, so parallel tests never see a half-written image. The
//! temporary name is unique per call (process id and a counter), not per process: test trials
//! run in threads of one process and often make the same image at once.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use bootloader_boot_config::{BootConfig, LevelFilter};

/// Which firmware boots the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Firmware {
    Bios,
    Uefi,
}

impl Firmware {
    fn suffix(self) -> &'static str {
        match self {
            Firmware::Bios => "bios.img",
            Firmware::Uefi => "uefi.img",
        }
    }
}

/// The bootloader's own settings: warnings only, no framebuffer logging (slow under emulation).
fn boot_config() -> BootConfig {
    let mut config = BootConfig::default();
    config.log_level = LevelFilter::Warn;
    config.frame_buffer_logging = false;
    config.serial_logging = true;
    config
}

fn is_newer(a: &Path, b: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((modified(a), modified(b)), (Some(x), Some(y)) if x >= y)
}

/// Makes (or reuses) the disk image of `elf` for `firmware`.
pub fn make(elf: &Path, firmware: Firmware) -> Result<PathBuf> {
    let image = elf.with_extension(firmware.suffix());
    if is_newer(&image, elf) {
        return Ok(image);
    }
    static MADE: AtomicU64 = AtomicU64::new(0);
    let call = MADE.fetch_add(1, Ordering::Relaxed);
    let tmp = elf.with_extension(format!("{}.{}-{call}.tmp", firmware.suffix(), std::process::id()));
    let config = boot_config();
    match firmware {
        Firmware::Bios => bootloader::BiosBoot::new(elf).set_boot_config(&config).create_disk_image(&tmp),
        Firmware::Uefi => bootloader::UefiBoot::new(elf).set_boot_config(&config).create_disk_image(&tmp),
    }
    .with_context(|| format!("making the {firmware:?} disk image of {}", elf.display()))?;
    std::fs::rename(&tmp, &image).with_context(|| format!("renaming {} to {}", tmp.display(), image.display()))?;
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test threads of one process (libtest-mimic runs trials in threads) often make the same
    /// image at once: each must get it, none may lose its temporary file to another.
    #[test]
    fn threads_making_one_image_at_once_all_get_it() {
        let dir = std::env::temp_dir().join(format!("prologue-image-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let elf = dir.join("kernel");
        std::fs::write(&elf, b"\x7fELF not a real kernel: the image only carries it").unwrap();
        let makers: Vec<_> = (0..4)
            .map(|_| {
                let elf = elf.clone();
                std::thread::spawn(move || make(&elf, Firmware::Bios).map_err(|e| format!("{e:#}")))
            })
            .collect();
        for maker in makers {
            let image = maker.join().unwrap().unwrap();
            assert!(std::fs::metadata(&image).unwrap().len() > 0);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Disk images, made with the `bootloader` crate from a kernel ELF.
//!
//! Images are written next to the ELF and remade only when the ELF is newer. They are written to
//! a temporary name and renamed, so parallel tests never see a half-written image.

use std::path::{Path, PathBuf};

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
    let tmp = elf.with_extension(format!("{}.{}.tmp", firmware.suffix(), std::process::id()));
    let config = boot_config();
    match firmware {
        Firmware::Bios => bootloader::BiosBoot::new(elf).set_boot_config(&config).create_disk_image(&tmp),
        Firmware::Uefi => bootloader::UefiBoot::new(elf).set_boot_config(&config).create_disk_image(&tmp),
    }
    .with_context(|| format!("making the {firmware:?} disk image of {}", elf.display()))?;
    std::fs::rename(&tmp, &image).with_context(|| format!("renaming {} to {}", tmp.display(), image.display()))?;
    Ok(image)
}

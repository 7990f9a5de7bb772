//! What the host must have: `qemu-system-x86_64`, and OVMF for UEFI boots.
//!
//! If either is missing and we run as root on a machine with `apt-get`, they are installed
//! (`qemu-system-x86` and `ovmf`, saying so on stderr); otherwise the error names the exact
//! command to run.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

const PACKAGES: [&str; 2] = ["qemu-system-x86", "ovmf"];

/// OVMF firmware images that can be passed with `-bios`, by distribution.
const OVMF_CANDIDATES: [&str; 3] = ["/usr/share/ovmf/OVMF.fd", "/usr/share/OVMF/OVMF.fd", "/usr/share/qemu/OVMF.fd"];

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Installs the packages with apt-get, as root.
fn install(what: &str) -> Result<()> {
    let command = format!("apt-get install -y {}", PACKAGES.join(" "));
    if !is_root() || find_in_path("apt-get").is_none() {
        bail!("{what} not found: install it with `sudo {command}` (Debian/Ubuntu)");
    }
    eprintln!("boot: {what} not found; installing {} with apt-get (running as root)", PACKAGES.join(" "));
    let run = |args: &[&str]| Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").status();
    let mut ok = run(&["install", "-y", PACKAGES[0], PACKAGES[1]]).map(|s| s.success()).unwrap_or(false);
    if !ok {
        // A fresh machine may have no package lists yet.
        let _ = run(&["update"]);
        ok = run(&["install", "-y", PACKAGES[0], PACKAGES[1]]).map(|s| s.success()).unwrap_or(false);
    }
    if !ok {
        bail!("{what} not found, and `{command}` failed");
    }
    Ok(())
}

/// The QEMU binary.
pub fn qemu() -> Result<PathBuf> {
    if let Some(path) = find_in_path("qemu-system-x86_64") {
        return Ok(path);
    }
    install("qemu-system-x86_64")?;
    find_in_path("qemu-system-x86_64")
        .ok_or_else(|| anyhow::anyhow!("qemu-system-x86_64 still not found after installing it"))
}

/// The OVMF (UEFI) firmware image.
pub fn ovmf() -> Result<PathBuf> {
    let find = || OVMF_CANDIDATES.iter().map(Path::new).find(|p| p.is_file()).map(Path::to_path_buf);
    if let Some(path) = find() {
        return Ok(path);
    }
    install("the OVMF UEFI firmware")?;
    find().ok_or_else(|| anyhow::anyhow!("OVMF still not found after installing it (looked in {OVMF_CANDIDATES:?})"))
}

//! What the comparison runs need on the host besides QEMU: `go` (Debian's `golang-go`, Go
//! 1.19), `gcc` with the static C library, and a Linux kernel image `/boot/vmlinuz-*`
//! (`linux-image-amd64`, Linux 6.1).
//!
//! As in `host.rs`: whatever is missing is installed with `apt-get install -y` when we run as
//! root (saying so on stderr; `apt-get update` once if the install fails, since a fresh machine
//! may have no package lists), and only when a comparison runs, never at build time. Without
//! root the error names the exact command to run.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context, Result, anyhow, bail};

/// Where Debian installs kernel images.
const BOOT_DIR: &str = "/boot";

/// One apt-get at a time, should two comparisons run at once.
static INSTALLING: Mutex<()> = Mutex::new(());

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Installs `packages` with apt-get, as root; `what` names what was missing.
fn install(what: &str, packages: &[&str]) -> Result<()> {
    let command = format!("apt-get install -y {}", packages.join(" "));
    if !is_root() || find_in_path("apt-get").is_none() {
        bail!("{what} not found: install it with `sudo {command}` (Debian/Ubuntu)");
    }
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    eprintln!("boot: {what} not found; installing {} with apt-get (running as root)", packages.join(" "));
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let install_args: Vec<&str> = ["install", "-y"].iter().chain(packages).copied().collect();
    if !apt(&install_args) {
        // A fresh machine may have no package lists yet.
        apt(&["update"]);
        if !apt(&install_args) {
            bail!("{what} not found, and `{command}` failed");
        }
    }
    Ok(())
}

/// The `go` command.
pub fn go() -> Result<PathBuf> {
    if let Some(path) = find_in_path("go") {
        return Ok(path);
    }
    install("go (the Go toolchain)", &["golang-go"])?;
    find_in_path("go").ok_or_else(|| anyhow!("go still not found after installing golang-go"))
}

/// Whether `gcc` finds the static C library (`-print-file-name` prints the bare name if not).
fn has_static_libc(gcc: &Path) -> bool {
    Command::new(gcc)
        .arg("-print-file-name=libc.a")
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| Path::new(String::from_utf8_lossy(&out.stdout).trim()).is_absolute())
}

/// The `gcc` command, with the static C library that `gcc -static` links.
pub fn gcc() -> Result<PathBuf> {
    if let Some(path) = find_in_path("gcc").filter(|gcc| has_static_libc(gcc)) {
        return Ok(path);
    }
    install("gcc with the static C library", &["gcc", "libc6-dev"])?;
    find_in_path("gcc")
        .filter(|gcc| has_static_libc(gcc))
        .ok_or_else(|| anyhow!("gcc or libc.a still not found after installing gcc and libc6-dev"))
}

/// One piece of a version string: version strings compare piece by piece, numbers as numbers
/// (so `6.1.0-10` is newer than `6.1.0-9`).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Piece {
    Number(u64),
    Text(String),
}

fn version_key(version: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut rest = version;
    while let Some(first) = rest.chars().next() {
        let digits = first.is_ascii_digit();
        let end = rest.find(|c: char| c.is_ascii_digit() != digits).unwrap_or(rest.len());
        let (piece, tail) = rest.split_at(end);
        pieces.push(match piece.parse() {
            Ok(n) if digits => Piece::Number(n),
            _ => Piece::Text(piece.to_string()),
        });
        rest = tail;
    }
    pieces
}

/// The newest of the `vmlinuz-VERSION` files in `dir`.
fn newest_kernel_in(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let version = name.strip_prefix("vmlinuz-")?;
            Some((version_key(version), dir.join(&name)))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, path)| path)
}

/// The newest Linux kernel image in /boot.
pub fn linux_kernel() -> Result<PathBuf> {
    let boot = Path::new(BOOT_DIR);
    let kernel = match newest_kernel_in(boot) {
        Some(kernel) => kernel,
        None => {
            install("a Linux kernel image (/boot/vmlinuz-*)", &["linux-image-amd64"])?;
            newest_kernel_in(boot)
                .ok_or_else(|| anyhow!("no /boot/vmlinuz-* even after installing linux-image-amd64"))?
        }
    };
    // QEMU reads it; say so here if we cannot (some distributions make it readable by root only).
    File::open(&kernel).with_context(|| format!("the kernel image {} is not readable", kernel.display()))?;
    Ok(kernel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_compare_as_numbers() {
        assert!(version_key("6.1.0-10-amd64") > version_key("6.1.0-9-amd64"));
        assert!(version_key("6.10.0-1-amd64") > version_key("6.9.12-1-amd64"));
        assert!(version_key("6.1.0-9-amd64") == version_key("6.1.0-9-amd64"));
    }

    #[test]
    fn the_newest_image_is_chosen() {
        let dir = std::env::temp_dir().join(format!("prologue-boot-dir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-27-amd64", "config-6.1.0-99-amd64", "vmlinuz"] {
            std::fs::write(dir.join(name), b"").unwrap();
        }
        let newest = newest_kernel_in(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(newest, Some(dir.join("vmlinuz-6.1.0-27-amd64")));
    }
}

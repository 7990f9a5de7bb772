//! Symbolizing the kernel's backtraces on the host.
//!
//! The kernel prints each return address of a backtrace on a line `    #N 0xADDR`. The kernel is
//! loaded at `KERNEL_BASE` (its ELF addresses start at 0), so `ADDR - KERNEL_BASE` is an ELF
//! address that the kernel's debug information (line tables) turns into a function and a
//! `file:line`, with inlined calls unfolded.

use std::path::Path;

use addr2line::Loader;

/// Where the bootloader maps the kernel (`arch::start::KERNEL_BASE` in the kernel).
pub const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;

pub struct Symbolizer {
    loader: Option<Loader>,
}

impl Symbolizer {
    /// Reads the debug information of `elf`; without it, lines pass through unchanged.
    pub fn new(elf: &Path) -> Symbolizer {
        Symbolizer { loader: Loader::new(elf).ok() }
    }

    /// A symbolizer that changes nothing.
    pub fn none() -> Symbolizer {
        Symbolizer { loader: None }
    }

    /// The function containing kernel address `addr` (its full path, from the symbol table) and
    /// the `file:line` of `addr` in it, if the debug information knows them.
    pub fn locate(&self, addr: u64) -> Option<(String, String)> {
        let loader = self.loader.as_ref()?;
        let probe = addr.checked_sub(KERNEL_BASE)?;
        let function = loader.find_symbol(probe).map(|s| strip_hash(&addr2line::demangle_auto(s.into(), None)))?;
        let location = loader
            .find_location(probe)
            .ok()
            .flatten()
            .map(|l| format!("{}:{}", shorten(l.file.unwrap_or("?")), l.line.unwrap_or(0)))
            .unwrap_or_else(|| "?".to_string());
        Some((function, location))
    }

    /// If `line` is a backtrace line, appends the function and location of its address: the
    /// containing function's full path (from the symbol table) and its source line, then the
    /// functions inlined at that line (from the debug information), innermost first.
    pub fn annotate(&self, line: &str) -> String {
        let Some(loader) = &self.loader else { return line.to_string() };
        let Some(addr) = backtrace_address(line) else { return line.to_string() };
        let Some(probe) = addr.checked_sub(KERNEL_BASE) else { return line.to_string() };
        let mut frames: Vec<(String, String)> = Vec::new();
        if let Ok(mut iter) = loader.find_frames(probe) {
            while let Ok(Some(frame)) = iter.next() {
                let function = frame
                    .function
                    .as_ref()
                    .and_then(|f| f.demangle().ok().map(|s| s.into_owned()))
                    .unwrap_or_else(|| "??".to_string());
                let location = frame
                    .location
                    .map(|l| format!("{}:{}", shorten(l.file.unwrap_or("?")), l.line.unwrap_or(0)))
                    .unwrap_or_default();
                frames.push((strip_hash(&function), location));
            }
        }
        let symbol = loader.find_symbol(probe).map(|s| strip_hash(&addr2line::demangle_auto(s.into(), None)));
        let Some(name) = symbol.or_else(|| frames.last().map(|f| f.0.clone())) else { return line.to_string() };
        let mut out = format!("{line} {name}");
        // The last frame is the containing function, its location the line in it.
        if let Some((_, location)) = frames.last().filter(|f| !f.1.is_empty()) {
            out.push_str(&format!(" at {location}"));
        }
        if frames.len() > 1 {
            let inlined: Vec<String> = frames[..frames.len() - 1].iter().map(|(f, l)| format!("{f} ({l})")).collect();
            out.push_str(&format!("\n          inlined: {}", inlined.join(" <- ")));
        }
        out
    }
}

/// The address of a backtrace line `#N 0xADDR`.
fn backtrace_address(line: &str) -> Option<u64> {
    let rest = line.trim_start().strip_prefix('#')?;
    let mut parts = rest.split_whitespace();
    parts.next()?.parse::<u32>().ok()?;
    let addr = parts.next()?.strip_prefix("0x")?;
    if parts.next().is_some() {
        return None;
    }
    u64::from_str_radix(addr, 16).ok()
}

/// Drops the `::h0123...` hash suffix of legacy-mangled names.
fn strip_hash(name: &str) -> String {
    match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => head.to_string(),
        _ => name.to_string(),
    }
}

/// Paths inside the workspace relative to it; the standard library's after `library/`.
fn shorten(file: &str) -> String {
    let root = crate::kernel::workspace_root();
    if let Ok(rel) = Path::new(file).strip_prefix(&root) {
        return rel.display().to_string();
    }
    match file.find("/library/") {
        Some(i) => file[i + 1..].to_string(),
        None => file.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_backtrace_lines() {
        assert_eq!(backtrace_address("    #0  0xffffffff80001234"), Some(0xffff_ffff_8000_1234));
        assert_eq!(backtrace_address("    #12 0x10"), Some(0x10));
        assert_eq!(backtrace_address("test foo ... ok"), None);
        assert_eq!(backtrace_address("    #1 0x10 already annotated"), None);
    }

    #[test]
    fn strips_legacy_hashes() {
        assert_eq!(strip_hash("kernel::f::h0123456789abcdef"), "kernel::f");
        assert_eq!(strip_hash("kernel::f"), "kernel::f");
    }
}

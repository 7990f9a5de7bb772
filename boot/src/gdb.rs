//! Debugging the kernel with GDB: the command that attaches to a `--gdb` run, and the helpers
//! it loads.
//!
//! A `--gdb` run boots the `kernel-gdb` build (full debug information: GDB knows functions by
//! their paths, and the types and locals) with QEMU's CPUs stopped and its gdbstub on a TCP port.
//! The printed command loads the kernel's symbols at the address the kernel runs at
//! (`KERNEL_BASE`: the ELF's addresses start at 0) and `boot/gdb/prologue.py`, which adds
//! `info kthreads` and `kthread N bt` (the scheduler's threads, like Go's `runtime-gdb.py`).

use std::path::{Path, PathBuf};

use crate::cli::shell_quote;
use crate::symbols::KERNEL_BASE;

/// The GDB helpers' script (in the repository, next to the runner's sources).
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("gdb").join("prologue.py")
}

/// The arguments after `gdb` that attach to a run of `elf` waiting on `port`, with the helpers
/// loaded.
pub fn args(elf: &Path, port: u16) -> Vec<String> {
    vec![
        "-x".to_string(),
        script().display().to_string(),
        "-ex".to_string(),
        format!("symbol-file -o {KERNEL_BASE:#x} {}", elf.display()),
        "-ex".to_string(),
        format!("target remote localhost:{port}"),
    ]
}

/// The whole command, ready to paste into a shell.
pub fn command(elf: &Path, port: u16) -> String {
    let words: Vec<String> = args(elf, port).iter().map(|a| shell_quote(a)).collect();
    format!("gdb {}", words.join(" "))
}

/// If `gdb` is not installed: what to do about it.
pub fn missing() -> Option<String> {
    let path = std::env::var_os("PATH")?;
    if std::env::split_paths(&path).any(|dir| dir.join("gdb").is_file()) {
        return None;
    }
    Some("gdb is not installed: install it with `sudo apt-get install gdb` (Debian/Ubuntu)".to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_loads_the_helpers_and_the_symbols_where_the_kernel_runs() {
        let command = super::command(std::path::Path::new("/t/kernel"), 4321);
        let script = super::script();
        assert!(script.is_file(), "{} is missing", script.display());
        assert_eq!(
            command,
            format!(
                "gdb -x {} -ex 'symbol-file -o 0xffffffff80000000 /t/kernel' -ex 'target remote localhost:4321'",
                script.display()
            )
        );
    }
}

//! Building the comparison programs of `bench/` into `target/against/<name>/init`: the Go
//! program with `go build` (static: `CGO_ENABLED=0`), the C program with
//! `gcc -static -O2 -pthread`. A program is rebuilt only when one of its sources is newer than
//! the binary. Builds write to a temporary name and rename, so a half-written binary is never
//! booted; Go's caches live under `target/against/` too, so nothing is written to `$HOME`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

use super::{Anchor, tools};
use crate::kernel::workspace_root;

/// Where the sources of `which` are, relative to the repository root.
fn source_dir(which: Anchor) -> &'static str {
    match which {
        Anchor::Go => "bench/go",
        Anchor::LinuxPthreads => "bench/linux",
    }
}

/// `target/against/`: binaries, archives and Go's caches.
fn out_root() -> PathBuf {
    workspace_root().join("target").join("against")
}

/// The newest modification time of the files in `dir` (the sources: nothing else lives there).
fn newest_source(dir: &Path) -> Result<SystemTime> {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let meta = entry.metadata().with_context(|| format!("reading {}", entry.path().display()))?;
        if meta.is_file() {
            newest = newest.max(meta.modified().context("file modification times are not available")?);
        }
    }
    Ok(newest)
}

/// Builds (or reuses) the program of `which`; returns the path of the binary.
pub fn build(which: Anchor) -> Result<PathBuf> {
    let src = workspace_root().join(source_dir(which));
    let out_dir = out_root().join(which.name());
    let binary = out_dir.join("init");
    let newest = newest_source(&src)?;
    let built = std::fs::metadata(&binary).and_then(|m| m.modified()).ok();
    if built.is_some_and(|built| built >= newest) {
        return Ok(binary);
    }
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let tmp = out_dir.join(format!("init.{}.tmp", std::process::id()));
    let command = match which {
        Anchor::Go => go_command(&src, &tmp)?,
        Anchor::LinuxPthreads => gcc_command(&src, &tmp)?,
    };
    run(command, &format!("building {}", source_dir(which)))?;
    std::fs::rename(&tmp, &binary).with_context(|| format!("renaming {} to {}", tmp.display(), binary.display()))?;
    Ok(binary)
}

/// `go build` of the package in `src`, a static linux/amd64 binary written to `out`.
fn go_command(src: &Path, out: &Path) -> Result<Command> {
    let go = tools::go()?;
    eprintln!("boot: building bench/go with {}", version(&go, "version")?);
    let cache = out_root().join("go-cache");
    let mut cmd = Command::new(go);
    cmd.current_dir(src)
        .args(["build", "-trimpath", "-buildvcs=false", "-o"])
        .arg(out)
        .arg(".")
        .env("CGO_ENABLED", "0")
        .env("GOOS", "linux")
        .env("GOARCH", "amd64")
        .env("GOAMD64", "v1")
        .env("GOCACHE", cache.join("build"))
        .env("GOPATH", cache.join("gopath"))
        // No settings from the user's Go environment file, no downloads (there are no
        // dependencies, and a newer Go must not fetch another toolchain).
        .env("GOENV", "off")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env_remove("GOFLAGS");
    Ok(cmd)
}

/// `gcc -static -O2 -pthread` of `src/pthreads.c`, written to `out`.
fn gcc_command(src: &Path, out: &Path) -> Result<Command> {
    let gcc = tools::gcc()?;
    eprintln!("boot: building bench/linux with {}", version(&gcc, "--version")?);
    let mut cmd = Command::new(gcc);
    cmd.args(["-static", "-O2", "-pthread", "-Wall", "-Wextra", "-o"]).arg(out).arg(src.join("pthreads.c"));
    Ok(cmd)
}

/// The first line that `tool arg` prints: its version, to show which compiler made the figures.
pub fn version(tool: &Path, arg: &str) -> Result<String> {
    let output = Command::new(tool).arg(arg).output().with_context(|| format!("running {} {arg}", tool.display()))?;
    Ok(String::from_utf8_lossy(&output.stdout).lines().next().unwrap_or("an unknown version").to_string())
}

/// Runs a build command; its output is shown if it fails (or warns).
fn run(mut cmd: Command, what: &str) -> Result<()> {
    let output = cmd.stdin(Stdio::null()).output().with_context(|| format!("{what}: starting {cmd:?}"))?;
    let messages = String::from_utf8_lossy(&output.stderr);
    if !messages.trim().is_empty() {
        eprintln!("{}", messages.trim_end());
    }
    if !output.status.success() {
        bail!("{what} failed: {:?} exited with {}", cmd.get_program(), output.status);
    }
    Ok(())
}

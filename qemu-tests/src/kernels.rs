//! Kernel builds, cached for the life of the test process, and the list of ktests.
//!
//! Each variant is built at most once per process: cargo takes a second or more even when
//! nothing changed, and every trial asking again would add up to minutes. Builds are quiet
//! (cargo's output is shown only if the build fails). One lock serialises them: two kernel builds
//! at once only slow each other down on a small machine. A failed build is remembered too, so
//! every trial that needs it fails at once with the same message instead of rebuilding.
//!
//! The list of ktests comes from the kernel itself: booted with `test=list`, it prints
//! `ktest NAME EXPECTATION` per test and then `N tests`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use boot::{Firmware, RunConfig, RunResult, Variant};

/// Built kernels by variant: the ELF path, or the build error's text.
static BUILDS: LazyLock<Mutex<HashMap<Variant, Result<PathBuf, String>>>> = LazyLock::new(Default::default);

/// The watchdog for `test=list`: a boot that runs no test.
const LIST_TIMEOUT: Duration = Duration::from_secs(120);

/// The kernel ELF of `variant`, built on first use.
pub fn elf(variant: &Variant) -> Result<PathBuf> {
    let mut builds = BUILDS.lock().unwrap_or_else(PoisonError::into_inner);
    let built = builds
        .entry(variant.clone())
        .or_insert_with(|| boot::kernel::build(variant, true).map_err(|e| format!("{e:#}")));
    built.clone().map_err(|e| anyhow!(e))
}

/// Builds `variant` (once), makes its disk image for `cfg.firmware` and boots it.
pub fn boot(variant: &Variant, cfg: &RunConfig) -> Result<RunResult> {
    let elf = elf(variant)?;
    let image = boot::image::make(&elf, cfg.firmware)?;
    boot::run(&image, &elf, cfg).with_context(|| format!("running the kernel build {} in QEMU", variant.name()))
}

/// The names of the debug kernel's ktests, in the kernel's (sorted) order.
pub fn list() -> Result<Vec<String>> {
    let cfg = RunConfig {
        firmware: Firmware::Bios,
        cmdline: "test=list".into(),
        timeout: Some(LIST_TIMEOUT),
        ..RunConfig::default()
    };
    let result = boot(&Variant::debug(), &cfg)?;
    if !result.outcome.is_success() {
        bail!("listing the ktests (test=list) failed: {}", result.outcome);
    }
    parse_list(&result.transcript)
}

/// The test names in the output of `test=list`, checked against its closing `N tests` line.
pub fn parse_list(transcript: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mut count = None;
    for line in transcript.lines() {
        if let Some(rest) = line.strip_prefix("ktest ") {
            let name =
                rest.split_whitespace().next().with_context(|| format!("a ktest line without a name: {line:?}"))?;
            names.push(name.to_string());
        } else if let Some(n) = line.strip_suffix(" tests").and_then(|n| n.parse::<usize>().ok()) {
            count = Some(n);
        }
    }
    match count {
        None => bail!("the kernel's test list has no closing 'N tests' line"),
        Some(n) if n != names.len() => bail!("the kernel announced {n} tests but listed {}", names.len()),
        // No tests means the registration is broken (e.g. the linker dropped the section): a
        // suite of nothing must not pass.
        Some(0) => bail!("the kernel lists no ktests at all"),
        Some(_) => Ok(names),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_list() {
        let t = "Prologue 0.1.0: 1 CPU(s) in the MADT\nktest mm::heap::small_boxes Pass\n\
                 ktest sync::chan::send_on_closed Panic(\"send on closed channel\")\n2 tests\nprologue: exit success\n";
        assert_eq!(parse_list(t).unwrap(), ["mm::heap::small_boxes", "sync::chan::send_on_closed"]);
    }

    #[test]
    fn an_empty_list_is_an_error() {
        let err = parse_list("0 tests\nprologue: exit success\n").unwrap_err();
        assert_eq!(err.to_string(), "the kernel lists no ktests at all");
    }

    #[test]
    fn a_truncated_list_is_an_error() {
        let err = parse_list("ktest a Pass\nktest b Pass\n3 tests\n").unwrap_err();
        assert_eq!(err.to_string(), "the kernel announced 3 tests but listed 2");
        let err = parse_list("ktest a Pass\n").unwrap_err();
        assert!(err.to_string().contains("no closing"), "{err}");
    }
}

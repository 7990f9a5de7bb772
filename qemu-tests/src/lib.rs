//! Prologue's host test suite: what `cargo test` runs besides the host crates' unit tests.
//!
//! The test programs that use this library have the `libtest-mimic` harness (`tests/visible.rs`,
//! the trace, tracebacks and deadlock reports, and `tests/stress.rs` use it the same way):
//!
//! - `tests/ktests.rs`: every in-kernel test ("ktest") as its own host test, once per kernel
//!   configuration (`bios-smp1::sync::chan::close_wakes_receivers`, ...), plus one ktest booted
//!   with UEFI firmware. `cargo test NAME` runs the trials whose name contains NAME.
//! - `tests/runner.rs`: the runner's judgement of every way a run can end (panic, triple fault,
//!   hang, bad command line, stack overflows) and of the demo.
//!
//! The rule that shapes everything: booting is slow (seconds per boot under TCG emulation), so a
//! configuration boots **once** for all its selected trials, the first time one of them runs;
//! each trial then reads its own result line from that run's transcript. A trial passes only on
//! its own `test NAME ... ok` line: a missing line is a failure, never a pass.
//!
//! Modules: `kernels` (builds, cached per process, and the ktest list), `config` (the
//! configurations), `suite` (one configuration's shared run and each trial's verdict). The unit
//! tests here check the test programs themselves: each with its own `main` is declared
//! `harness = false` (else it would run nothing and pass).

pub mod config;
pub mod kernels;
pub mod suite;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// The `[[test]]` targets of this crate's `Cargo.toml` declared with `harness = false`.
    fn targets_without_harness(manifest: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let mut name = None;
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                name = None;
            } else if let Some(value) = line.strip_prefix("name = ") {
                name = Some(value.trim_matches('"').to_string());
            } else if line == "harness = false"
                && let Some(name) = &name
            {
                found.insert(name.clone());
            }
        }
        found
    }

    /// A test program with its own `main` (the libtest-mimic ones) must be declared with
    /// `harness = false`: with the default harness its `main` is never called and the program
    /// runs "0 tests" and passes, so every check in it is silently skipped.
    #[test]
    fn every_test_program_with_its_own_main_has_no_harness() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let without_harness = targets_without_harness(&manifest);
        let mut wrong = Vec::new();
        for entry in std::fs::read_dir(root.join("tests")).unwrap() {
            let path = entry.unwrap().path();
            let source = std::fs::read_to_string(&path).unwrap();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let own_main = source.lines().any(|line| line.starts_with("fn main()"));
            if own_main != without_harness.contains(&name) {
                wrong.push(name);
            }
        }
        assert!(wrong.is_empty(), "test programs whose `fn main` and `harness = false` disagree: {wrong:?}");
    }
}

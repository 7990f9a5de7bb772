//! The planted kernel bugs (`kernel/src/planted.rs`, feature `planted-bugs`), as `cargo test`
//! checks them:
//! - without the feature, `inject=` naming a kernel bug is a boot error that says so, and the
//!   kernel ELF has no planted-bug symbol (the selector `PLANTED_BUG_SELECTED` exists only with
//!   the feature; every planted line asks it, so without it they are dead code and compiled away);
//! - for four bugs of different subsystems, a short forced-preemption torture run catches it
//!   with the invariant's own message, and the same run without the bug succeeds;
//! - the TLB bug, which no torture invariant can see (a stale translation on another CPU), is
//!   caught by its focused ktest, which passes without it in every ktest configuration.
//!
//! Every check reads the kernel's own lines, not just QEMU's exit status.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use boot::{RunConfig, Variant};
use libtest_mimic::{Arguments, Trial};
use qemu_tests::kernels;

/// Guest seconds of each torture run (the bugs are caught within a second; the clean run needs
/// time for the "did its work" checks, such as a thread moving between the CPUs).
const SECONDS: u64 = 10;
/// The selector's symbol: present only in a planted-bugs build.
const SELECTOR: &str = "PLANTED_BUG_SELECTED";

fn main() {
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test("feature_off_kernel_bug_is_a_boot_error", || check(boot_error())),
        Trial::test("feature_off_elf_has_no_planted_symbols", || check(no_symbols())),
        Trial::test("forced_preemption_clean_run_succeeds", || check(clean_run())),
        Trial::test("forced_preemption_catches_once_done_early", || {
            check(caught("once-done-early", &["Once::call_once returned before its function had run"]))
        }),
        Trial::test("forced_preemption_catches_coop_preempt_spinlock", || {
            check(caught("coop-preempt-spinlock", &["switched holding"]))
        }),
        Trial::test("forced_preemption_catches_timer_lock_in_tick", || {
            check(caught("timer-lock-in-tick", &["SpinLock taken in an interrupt handler"]))
        }),
        // Two threads on one stack break in many ways: a child dies of a fault, or the kernel
        // stops on a guard page hit or a dead thread resumed, or a record is recycled twice.
        Trial::test("forced_preemption_catches_stack_freed_while_in_use", || {
            check(caught(
                "stack-freed-while-in-use",
                &["child died", "a dead thread was resumed", "recycled with its result", "stack guard page hit"],
            ))
        }),
        Trial::test("focused_ktest_catches_tlb_flush_before_irq_off", || check(tlb_caught())),
    ];
    libtest_mimic::run(&args, trials).exit();
}

fn check(result: Result<()>) -> Result<(), libtest_mimic::Failed> {
    result.map_err(|e| format!("{e:#}").into())
}

fn forced() -> Variant {
    Variant::with_features(&["planted-bugs", "always-preempt"])
}

fn boot_error() -> Result<()> {
    let cfg = RunConfig {
        cmdline: "stress=1 seed=1 inject=mutex-park-unlocked".into(),
        timeout: Some(Duration::from_secs(120)),
        ..RunConfig::default()
    };
    let run = kernels::boot(&Variant::debug(), &cfg)?;
    ensure!(!run.outcome.is_success(), "a kernel bug was accepted by a build without them");
    ensure!(
        run.transcript
            .lines()
            .any(|l| l.starts_with("kernel: error: inject=mutex-park-unlocked is a planted kernel bug")
                && l.contains("--features planted-bugs")),
        "no boot error naming the bug and the feature; outcome: {}",
        run.outcome
    );
    ensure!(!run.transcript.contains("stress: "), "the torture test started anyway");
    Ok(())
}

fn no_symbols() -> Result<()> {
    let normal = symbol_names(&std::fs::read(kernels::elf(&Variant::debug())?)?)?;
    ensure!(normal.len() > 100, "the normal ELF has only {} symbols: not a symbol table", normal.len());
    // The selector, and the function that sets it (`kernel::planted::select`, v0-mangled). The
    // name table (`planted::from_name`) stays: the boot error needs it.
    let planted: Vec<&String> =
        normal.iter().filter(|s| s.contains("PLANTED_BUG") || s.contains("7planted6select")).collect();
    ensure!(planted.is_empty(), "the normal build has planted-bug symbols: {planted:?}");
    // The same check on a planted build must see the selector (or it would prove nothing).
    let with = symbol_names(&std::fs::read(kernels::elf(&Variant::with_features(&["planted-bugs"]))?)?)?;
    ensure!(with.iter().any(|s| s == SELECTOR), "the planted-bugs build has no {SELECTOR} symbol");
    Ok(())
}

/// The names in an ELF64 file's symbol table (`SHT_SYMTAB`, strings from its linked section).
fn symbol_names(elf: &[u8]) -> Result<Vec<String>> {
    let u16_at = |o: usize| -> Result<u64> {
        Ok(u16::from_le_bytes(elf.get(o..o + 2).context("ELF truncated")?.try_into()?) as u64)
    };
    let u32_at = |o: usize| -> Result<u64> {
        Ok(u32::from_le_bytes(elf.get(o..o + 4).context("ELF truncated")?.try_into()?) as u64)
    };
    let u64_at =
        |o: usize| -> Result<u64> { Ok(u64::from_le_bytes(elf.get(o..o + 8).context("ELF truncated")?.try_into()?)) };
    ensure!(elf.starts_with(b"\x7fELF\x02\x01"), "not a little-endian ELF64 file");
    let (shoff, shentsize, shnum) = (u64_at(0x28)? as usize, u16_at(0x3a)? as usize, u16_at(0x3c)? as usize);
    let section = |i: usize| shoff + i * shentsize;
    let mut names = Vec::new();
    for i in 0..shnum {
        if u32_at(section(i) + 4)? != 2 {
            continue; // not SHT_SYMTAB
        }
        let (offset, size, entsize) =
            (u64_at(section(i) + 24)? as usize, u64_at(section(i) + 32)? as usize, u64_at(section(i) + 56)? as usize);
        let strtab = section(u32_at(section(i) + 40)? as usize);
        let (str_offset, str_size) = (u64_at(strtab + 24)? as usize, u64_at(strtab + 32)? as usize);
        let strings = elf.get(str_offset..str_offset + str_size).context("string table out of the file")?;
        for sym in (offset..offset + size).step_by(entsize.max(1)) {
            let name = u32_at(sym)? as usize;
            let end = strings[name..].iter().position(|&b| b == 0).map_or(strings.len(), |p| name + p);
            names.push(String::from_utf8_lossy(&strings[name..end]).into_owned());
        }
    }
    Ok(names)
}

/// A forced-preemption (`strategy=every`) torture run at two CPUs, with `inject` if not empty.
fn torture(inject: &str) -> Result<boot::RunResult> {
    let mut cmdline = format!("stress={SECONDS} seed=1 strategy=every");
    if !inject.is_empty() {
        cmdline.push_str(&format!(" inject={inject}"));
    }
    let cfg =
        RunConfig { smp: 2, cmdline, timeout: Some(Duration::from_secs(SECONDS * 6 + 120)), ..RunConfig::default() };
    kernels::boot(&forced(), &cfg)
}

fn clean_run() -> Result<()> {
    let run = torture("")?;
    let verdict = run.transcript.lines().find(|l| l.starts_with("stress: SUCCESS") || l.starts_with("stress: FAILURE"));
    ensure!(
        run.outcome.is_success() && verdict.is_some_and(|l| l.starts_with("stress: SUCCESS")),
        "the planted-bugs build without a bug failed: {}; verdict: {}",
        run.outcome,
        verdict.unwrap_or("<none>")
    );
    Ok(())
}

/// The TLB bug under its focused ktest, `mm::tests::a_flush_everywhere_reaches_every_cpu`
/// (forced preemption at two CPUs: the flushing thread often moves half-way).
fn tlb_caught() -> Result<()> {
    const TEST: &str = "mm::tests::a_flush_everywhere_reaches_every_cpu";
    let cfg = RunConfig {
        smp: 2,
        cmdline: format!("test={TEST} seed=1 inject=tlb-flush-before-irq-off"),
        timeout: Some(Duration::from_secs(180)),
        ..RunConfig::default()
    };
    let run = kernels::boot(&forced(), &cfg)?;
    ensure!(!run.outcome.is_success(), "the planted TLB bug was not caught (the test passed)");
    let failed = boot::parse_test_results(&run.transcript)
        .into_iter()
        .find(|t| t.name == TEST)
        .and_then(|t| t.failed().map(str::to_string));
    ensure!(
        failed.as_deref().is_some_and(|reason| reason.contains("stale translations after flush_everywhere")),
        "the focused test did not fail with stale translations ({failed:?}); outcome: {}",
        run.outcome
    );
    Ok(())
}

/// `bug` must be caught, and the kernel's report must say one of `expected` (a `stress:
/// FAILURE` line, or a panic's or fatal report's message: what the invariant that caught it says).
fn caught(bug: &str, expected: &[&str]) -> Result<()> {
    let run = torture(bug)?;
    ensure!(!run.outcome.is_success(), "the planted bug '{bug}' was not caught (the run succeeded)");
    ensure!(
        expected.iter().any(|e| run.transcript.contains(e)),
        "the planted bug '{bug}' was not reported as expected ({expected:?}); outcome: {}",
        run.outcome
    );
    Ok(())
}

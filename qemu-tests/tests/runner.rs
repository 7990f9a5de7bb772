//! The runner's own tests: every way a run can end, provoked on purpose with the kernel's
//! `crash=` command-line word (or a bad command line), and judged by `boot::run`.
//!
//! Each check asserts on text the kernel computed (its FATAL line, its error naming the bad
//! word, the primes of the demo), not only on the outcome's kind: an outcome can be right for
//! the wrong reason (a boot that dies early also "fails"). All boots use the debug kernel, BIOS
//! and one CPU unless a check is about something else.

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use boot::{Firmware, Input, Outcome, RunConfig, RunResult, Variant};
use libtest_mimic::{Arguments, Trial};
use qemu_tests::kernels;

/// The watchdog of boots that should end by themselves within seconds.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The watchdog of the deliberate hang: short, since the run is known to end by it, but long
/// enough for the boot before the hang on a loaded host (15 s was not: on a 2-core host busy with
/// other QEMUs the kernel had printed nothing when the watchdog stopped it).
const HANG_TIMEOUT: Duration = Duration::from_secs(30);

/// One check: `Ok` if the runner behaved.
type Check = fn() -> Result<()>;

fn main() {
    let args = Arguments::from_args();
    let checks: [(&str, Check); 18] = [
        ("kernel_panic_is_a_fatal_failure", kernel_panic_is_a_fatal_failure),
        ("triple_fault_is_reported_as_such", triple_fault_is_reported_as_such),
        ("hang_is_stopped_by_the_watchdog", hang_is_stopped_by_the_watchdog),
        ("unknown_test_name_is_a_failure", unknown_test_name_is_a_failure),
        ("bad_command_line_word_is_named", bad_command_line_word_is_named),
        ("g0_stack_overflow_is_fatal", g0_stack_overflow_is_fatal),
        ("interrupt_stack_overflow_is_fatal", interrupt_stack_overflow_is_fatal),
        ("demo_prints_the_first_100_primes", demo_prints_the_first_100_primes),
        ("smp_option_reaches_the_guest", smp_option_reaches_the_guest),
        ("uefi_output_is_free_of_escape_codes", uefi_output_is_free_of_escape_codes),
        ("typed_input_reaches_the_shell", typed_input_reaches_the_shell),
        ("overflow_report_is_symbolized", overflow_report_is_symbolized),
        ("overflow_with_interrupts_off_is_fatal", overflow_with_interrupts_off_is_fatal),
        ("a_switch_on_g0_is_refused", a_switch_on_g0_is_refused),
        ("yield_holding_a_spin_lock_is_fatal", yield_holding_a_spin_lock_is_fatal),
        ("a_lock_order_violation_is_fatal", a_lock_order_violation_is_fatal),
        ("a_stuck_cpu_does_not_spoil_a_fatal_report", a_stuck_cpu_does_not_spoil_a_fatal_report),
        ("a_small_guest_skips_what_it_cannot_run", a_small_guest_skips_what_it_cannot_run),
    ];
    let trials = checks
        .into_iter()
        .map(|(name, check)| Trial::test(name, move || check().map_err(|e| format!("{e:#}").into())))
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// Boots the debug kernel with `cfg`.
fn boot(cfg: RunConfig) -> Result<RunResult> {
    kernels::boot(&Variant::debug(), &cfg)
}

/// Boots the debug kernel (BIOS, one CPU) with command line `cmdline`.
fn boot_with(cmdline: &str) -> Result<RunResult> {
    boot(RunConfig { cmdline: cmdline.into(), timeout: Some(TIMEOUT), ..RunConfig::default() })
}

/// The end of a transcript, for failure messages.
fn tail(transcript: &str) -> String {
    let lines: Vec<&str> = transcript.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The reason of a `Failure` outcome; anything else is an error that shows the transcript.
fn failure_reason(run: &RunResult) -> Result<&str> {
    match &run.outcome {
        Outcome::Failure(reason) => Ok(reason),
        other => bail!("expected a kernel failure, got: {other}\n--- transcript (end) ---\n{}", tail(&run.transcript)),
    }
}

/// Checks that a `Failure` reason starts with `start`.
fn expect_failure_starting(run: &RunResult, start: &str) -> Result<()> {
    let reason = failure_reason(run)?;
    ensure!(reason.starts_with(start), "the failure should start with {start:?}, but is {reason:?}");
    ensure!(
        run.transcript.lines().any(|l| l == "prologue: exit failure"),
        "the kernel's final line 'prologue: exit failure' is missing:\n{}",
        tail(&run.transcript)
    );
    Ok(())
}

fn kernel_panic_is_a_fatal_failure() -> Result<()> {
    let run = boot_with("crash=panic")?;
    expect_failure_starting(&run, "FATAL: panic at kernel/src/crash.rs")?;
    let reason = failure_reason(&run)?;
    ensure!(reason.contains("crash=panic requested"), "the panic message is missing from {reason:?}");
    // The backtrace was symbolized on the host: the frame that panicked is named.
    ensure!(
        run.transcript
            .lines()
            .any(|l| l.trim_start().starts_with('#') && l.contains("kernel::crash::at_boot at kernel/src/crash.rs")),
        "no symbolized backtrace frame names kernel::crash::at_boot:\n{}",
        tail(&run.transcript)
    );
    Ok(())
}

fn triple_fault_is_reported_as_such() -> Result<()> {
    let run = boot_with("crash=triple-fault")?;
    ensure!(run.outcome == Outcome::TripleFault, "expected a triple fault, got: {}", run.outcome);
    // It is the requested one, not a crash during boot.
    ensure!(
        run.transcript.contains("crash: triple-fault requested on the command line"),
        "the kernel never reached the requested triple fault:\n{}",
        tail(&run.transcript)
    );
    ensure!(!run.transcript.contains("prologue: exit"), "a triple fault cannot print a final line");
    Ok(())
}

fn hang_is_stopped_by_the_watchdog() -> Result<()> {
    let started = Instant::now();
    let run = boot(RunConfig { cmdline: "crash=hang".into(), timeout: Some(HANG_TIMEOUT), ..RunConfig::default() })?;
    let took = started.elapsed();
    let expected = Outcome::Timeout { seconds: HANG_TIMEOUT.as_secs(), during: None };
    ensure!(run.outcome == expected, "expected {expected}, got: {}", run.outcome);
    ensure!(
        run.transcript.contains("crash: hanging with interrupts disabled"),
        "the kernel never reached the requested hang:\n{}",
        tail(&run.transcript)
    );
    // The watchdog waited its time, and then really stopped QEMU.
    ensure!(took >= HANG_TIMEOUT && took < HANG_TIMEOUT + Duration::from_secs(60), "the hang run took {took:?}");
    Ok(())
}

fn unknown_test_name_is_a_failure() -> Result<()> {
    let run = boot_with("test=no_such_test")?;
    expect_failure_starting(&run, "ktest: no test matches 'no_such_test'")
}

fn bad_command_line_word_is_named() -> Result<()> {
    let run = boot_with("log=warn bogus=1")?;
    expect_failure_starting(&run, "cmdline: error: bad command-line word 'bogus=1': unknown key")
}

fn g0_stack_overflow_is_fatal() -> Result<()> {
    let run = boot_with("crash=g0-overflow")?;
    expect_failure_starting(&run, "FATAL: stack overflow on the scheduler stack (g0) of CPU 0")
}

fn interrupt_stack_overflow_is_fatal() -> Result<()> {
    let run = boot_with("crash=irq-overflow")?;
    expect_failure_starting(&run, "FATAL: stack overflow on the interrupt stack of CPU 0")
}

/// The first `n` primes, computed here, to compare with the kernel's.
fn primes(n: usize) -> Vec<u64> {
    let mut found: Vec<u64> = Vec::with_capacity(n);
    let mut candidate = 2;
    while found.len() < n {
        if found.iter().take_while(|&&p| p * p <= candidate).all(|&p| candidate % p != 0) {
            found.push(candidate);
        }
        candidate += 1;
    }
    found
}

fn demo_prints_the_first_100_primes() -> Result<()> {
    let run = boot_with("")?;
    ensure!(run.outcome.is_success(), "the demo failed: {}\n{}", run.outcome, tail(&run.transcript));
    let lines: Vec<&str> = run.transcript.lines().collect();
    ensure!(
        lines.iter().any(|l| l.starts_with("Prologue ") && l.contains(" CPU(s) in the MADT")),
        "no banner line in:\n{}",
        run.transcript
    );
    let Some(summary) = lines.iter().position(|l| l.starts_with("demo: the first 100 primes, found by 101 threads"))
    else {
        bail!("no 'demo: the first 100 primes' line in:\n{}", run.transcript);
    };
    // The table of primes: the lines of numbers just above the summary.
    let table = lines[..summary]
        .iter()
        .rev()
        .take_while(|l| !l.trim().is_empty() && l.split_whitespace().all(|w| w.parse::<u64>().is_ok()))
        .collect::<Vec<_>>();
    let printed: Vec<u64> =
        table.iter().rev().flat_map(|l| l.split_whitespace()).filter_map(|w| w.parse().ok()).collect();
    ensure!(printed == primes(100), "the demo's primes are wrong: {printed:?}");
    Ok(())
}

fn smp_option_reaches_the_guest() -> Result<()> {
    let run = boot(RunConfig { smp: 4, cmdline: "test=list".into(), timeout: Some(TIMEOUT), ..RunConfig::default() })?;
    ensure!(run.outcome.is_success(), "test=list failed: {}\n{}", run.outcome, tail(&run.transcript));
    ensure!(
        run.transcript.lines().any(|l| l.starts_with("Prologue ") && l.contains(": 4 CPU(s) in the MADT")),
        "the kernel did not find the 4 CPUs of -smp 4:\n{}",
        tail(&run.transcript)
    );
    Ok(())
}

fn uefi_output_is_free_of_escape_codes() -> Result<()> {
    let cfg = RunConfig {
        firmware: Firmware::Uefi,
        cmdline: "test=list".into(),
        timeout: Some(TIMEOUT),
        ..RunConfig::default()
    };
    let run = boot(cfg)?;
    ensure!(run.outcome.is_success(), "the UEFI boot failed: {}\n{}", run.outcome, tail(&run.transcript));
    // OVMF writes ANSI escape codes to the serial port; the runner removes them, so the banner
    // is a line of its own, from its first character.
    ensure!(
        run.transcript.lines().any(|l| l.starts_with("Prologue ") && l.contains(" CPU(s) in the MADT")),
        "no clean banner line in the UEFI transcript:\n{}",
        tail(&run.transcript)
    );
    ensure!(!run.transcript.contains('\u{1b}'), "an escape code survived in the UEFI transcript");
    Ok(())
}

/// What is typed on the serial line reaches the kernel's shell, which answers: `ps` lists the
/// shell's own thread, `sieve 20` computes the 20th prime, `exit` ends the run with success.
fn typed_input_reaches_the_shell() -> Result<()> {
    let cfg = RunConfig {
        cmdline: "shell=on".into(),
        input: Some(Input { after_line: "shell:".into(), bytes: b"ps\nsieve 20\nbogus\nexit\n".to_vec() }),
        timeout: Some(TIMEOUT),
        ..RunConfig::default()
    };
    let run = boot(cfg)?;
    ensure!(run.outcome.is_success(), "the shell session failed: {}\n{}", run.outcome, tail(&run.transcript));
    let t = &run.transcript;
    ensure!(t.contains("prologue> ps"), "the typed command was not echoed:\n{}", tail(t));
    ensure!(
        t.lines().any(|l| l.contains(" main ") && l.contains("running")),
        "ps did not list the running shell thread:\n{}",
        tail(t)
    );
    ensure!(
        t.contains("the first 20 primes end with [53, 59, 61, 67, 71]"),
        "sieve 20 gave no right answer:\n{}",
        tail(t)
    );
    ensure!(t.contains("unknown command 'bogus'"), "a bad command was not reported:\n{}", tail(t));
    Ok(())
}

/// A thread's stack overflow is reported naming the thread, and the runner symbolizes the
/// backtrace: the recursing function appears by its full path, with its source line.
fn overflow_report_is_symbolized() -> Result<()> {
    let run = boot_with("test=sched::tests::deep_recursion_overflows_alone")?;
    ensure!(run.outcome.is_success(), "the overflow test failed: {}\n{}", run.outcome, tail(&run.transcript));
    let t = &run.transcript;
    let Some(report) = t.lines().position(|l| l.contains("stack overflow in thread") && l.contains("\"recurser\""))
    else {
        bail!("no overflow report naming the thread \"recurser\":\n{}", tail(t));
    };
    // The report may share its first line with the test's `test NAME ... ` prefix; the frames
    // follow, up to the test's result line.
    let frames: Vec<&str> = t.lines().skip(report + 1).take_while(|l| !l.starts_with("test ")).collect();
    ensure!(
        frames.iter().any(|l| l.trim_start().starts_with('#')
            && l.contains("kernel::sched::tests::recurse_forever at kernel/src/sched/tests.rs:")),
        "the backtrace does not name the recursing function:\n{}",
        frames.join("\n")
    );
    Ok(())
}

/// A thread that overflows its stack with interrupts disabled cannot die alone (it may be in the
/// middle of queueing threads): the overflow is fatal, and the report names the thread and why.
fn overflow_with_interrupts_off_is_fatal() -> Result<()> {
    let run = boot_with("crash=overflow-irqs-off")?;
    expect_failure_starting(&run, "FATAL: stack overflow in thread")?;
    let reason = failure_reason(&run)?;
    ensure!(
        reason.contains("\"crash\"") && reason.contains("interrupts disabled"),
        "the report does not say why: {reason:?}"
    );
    Ok(())
}

/// Only a thread can switch: `yield_now` on the scheduler's own stack is refused, fatally, by name.
fn a_switch_on_g0_is_refused() -> Result<()> {
    let run = boot_with("crash=switch-on-g0")?;
    expect_failure_starting(&run, "FATAL: a thread switch was asked for on the scheduler (g0)")
}

/// A thread that yields with a spin lock held would leave every other thread spinning on it.
fn yield_holding_a_spin_lock_is_fatal() -> Result<()> {
    let run = boot_with("crash=yield-holding-lock")?;
    expect_failure_starting(&run, "FATAL: thread")?;
    let reason = failure_reason(&run)?;
    ensure!(reason.contains("switched holding 1 spin lock"), "the report does not say what was wrong: {reason:?}");
    Ok(())
}

/// Two spin locks taken against the lock order stop the kernel at the second one, naming both.
fn a_lock_order_violation_is_fatal() -> Result<()> {
    let run = boot_with("crash=lock-order")?;
    let reason = failure_reason(&run)?;
    ensure!(
        reason.contains("lock order: taking a Heap lock while holding a Frames lock"),
        "the report does not name the two locks: {reason:?}"
    );
    Ok(())
}

/// A fatal report stops the other CPUs with an NMI; a CPU that never finished its start-up (it
/// has no interrupt table) must not get one: it would reset the machine in the middle of the
/// report (a triple fault).
fn a_stuck_cpu_does_not_spoil_a_fatal_report() -> Result<()> {
    let run =
        boot(RunConfig { smp: 3, cmdline: "crash=stuck-cpu".into(), timeout: Some(TIMEOUT), ..RunConfig::default() })?;
    ensure!(
        run.transcript.contains("did not start within"),
        "the stuck CPU was not reported at boot:\n{}",
        tail(&run.transcript)
    );
    expect_failure_starting(&run, "FATAL: panic at kernel/src/crash.rs")?;
    ensure!(
        run.transcript.contains("kernel stopped by a fatal error"),
        "the report is not complete:\n{}",
        tail(&run.transcript)
    );
    Ok(())
}

/// In a 128 MiB guest, the test that needs 1 GiB says it is skipped and why; the run succeeds.
fn a_small_guest_skips_what_it_cannot_run() -> Result<()> {
    let run = boot(RunConfig {
        memory_mib: 128,
        cmdline: "test=sched::tests::hundred_thousand_idle_threads".into(),
        timeout: Some(TIMEOUT),
        ..RunConfig::default()
    })?;
    ensure!(run.outcome.is_success(), "the run failed: {}\n{}", run.outcome, tail(&run.transcript));
    ensure!(
        run.transcript.lines().any(|l| l.starts_with("test sched::tests::hundred_thousand_idle_threads ... skipped: needs a 1 GiB guest")),
        "the test did not say it was skipped:\n{}",
        tail(&run.transcript)
    );
    ensure!(run.transcript.lines().any(|l| l == "0 passed, 0 failed, 1 skipped"), "no summary counting the skip");
    Ok(())
}

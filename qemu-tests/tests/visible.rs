//! Seeing the scheduler: the trace and its two views, tracebacks of every thread, deadlock
//! reports, schedtrace, and the kernel's watchdog -- each checked on a real boot, against what
//! the kernel itself computed (its counters, its thread names, its final line).
//!
//! - The trace of a short SMP test run parses, its Chrome JSON events agree with the kernel's own
//!   counters (switches, preemptions, steals, spawns), its flows pair up, and the SVG is valid XML
//!   with one lane per CPU.
//! - Three deadlocks (`crash=deadlock-*`) are each reported with the right threads and what they
//!   wait on, and fail the run.
//! - The shell's `bt`, schedtrace and a watchdog timeout show every thread or every CPU.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use boot::{Input, Outcome, RunConfig, RunResult, Variant};
use libtest_mimic::{Arguments, Trial};
use qemu_tests::kernels;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(180);

type Check = fn() -> Result<()>;

fn main() {
    let args = Arguments::from_args();
    let checks: [(&str, Check); 7] = [
        ("trace_agrees_with_the_kernel_counters", trace_agrees_with_the_kernel_counters),
        ("deadlock_on_a_channel_nobody_sends_on", deadlock_on_a_channel_nobody_sends_on),
        ("deadlock_on_a_wait_group_never_done", deadlock_on_a_wait_group_never_done),
        ("deadlock_of_two_mutexes_abba", deadlock_of_two_mutexes_abba),
        ("shell_bt_shows_every_thread", shell_bt_shows_every_thread),
        ("schedtrace_prints_every_cpu", schedtrace_prints_every_cpu),
        ("watchdog_shows_every_thread", watchdog_shows_every_thread),
    ];
    let trials = checks
        .into_iter()
        .map(|(name, check)| Trial::test(name, move || check().map_err(|e| format!("{e:#}").into())))
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

fn tail(transcript: &str) -> String {
    let lines: Vec<&str> = transcript.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn boot(cfg: RunConfig) -> Result<RunResult> {
    kernels::boot(&Variant::debug(), &cfg)
}

/// A fresh directory for one check's files.
fn scratch(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("prologue-visible-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The tests whose trace is checked: asynchronous and cooperative preemptions, a deferral, and
/// work stolen by the second CPU.
const TRACED_TESTS: &str = "sched::preempt_tests::tight_loops_are_preempted_asynchronously,\
                            sched::preempt_tests::spin_lock_defers_preemption,\
                            sched::smp_tests::fan_out_is_stolen_by_every_cpu";

fn trace_agrees_with_the_kernel_counters() -> Result<()> {
    let dir = scratch("trace")?;
    let cfg = RunConfig {
        smp: 2,
        cmdline: format!("test={TRACED_TESTS} trace=on trace_kib=4096"),
        timeout: Some(TIMEOUT),
        debugcon: Some(boot::trace::raw_path(&dir)),
        ..RunConfig::default()
    };
    let run = boot(cfg)?;
    ensure!(run.outcome.is_success(), "the traced run failed: {}\n{}", run.outcome, tail(&run.transcript));
    ensure!(run.transcript.lines().any(|l| l == "3 passed, 0 failed, 0 skipped"), "no summary of 3 passing tests");
    let written = boot::trace::write_views(&dir, "visible test")?;

    // The JSON, read as any viewer would.
    let text = std::fs::read_to_string(&written.json)?;
    let doc: Value = serde_json::from_str(&text).context("trace.json is not JSON")?;
    let events = doc["traceEvents"].as_array().context("no traceEvents array")?;
    let other = &doc["otherData"];
    ensure!(other["events_overwritten"] == 0, "events were overwritten: the counts cannot agree ({other})");
    let counter = |name: &str| other["kernel_counters"][name].as_u64().with_context(|| format!("no counter {name}"));
    let count = |pred: &dyn Fn(&Value) -> bool| events.iter().filter(|e| pred(e)).count() as u64;
    let named = |prefix: &'static str| {
        move |e: &Value| e["ph"] == "i" && e["pid"] == 1 && e["name"].as_str().is_some_and(|n| n.starts_with(prefix))
    };
    let runs = count(&|e| e["ph"] == "X" && e["cat"] == "run" && e["pid"] == 0);
    let checks = [
        ("switches", runs, counter("switches")?),
        ("preempt_coop", count(&named("preempted (cooperative)")), counter("preempt_coop")?),
        ("preempt_async", count(&named("async preemption injected")), counter("preempt_async")?),
        ("steals", count(&named("stolen from CPU")), counter("steals")?),
        ("spawns", count(&named("created")), counter("spawns")?),
    ];
    // The counters are read when the trace stops; the other CPU may have counted one more event
    // of a kind than it recorded by then (kernel/src/trace/dump.rs).
    for (what, seen, counted) in checks {
        ensure!(counted > 0, "the workload did not make the kernel count any {what}: the check would prove nothing");
        ensure!(
            seen <= counted && counted - seen <= 1,
            "{what}: {seen} in trace.json, {counted} counted by the kernel"
        );
    }
    // The kernel's trace line agrees with what the runner decoded.
    let line =
        format!("trace: {} events of 2 CPU(s) sent to the debug console (0 older ones overwritten)", written.events);
    ensure!(run.transcript.lines().any(|l| l == line), "no line {line:?} in the transcript");
    // Every flow that starts ends, and on a thread's track.
    let mut flows: BTreeMap<u64, (u32, u32)> = BTreeMap::new();
    for e in events.iter().filter(|e| e["cat"] == "wakeup") {
        let id = e["id"].as_u64().context("a flow without an id")?;
        let slot = flows.entry(id).or_default();
        match e["ph"].as_str() {
            Some("s") => slot.0 += 1,
            Some("f") => slot.1 += 1,
            other => bail!("a wake-up event of phase {other:?}"),
        }
    }
    ensure!(!flows.is_empty(), "no wake-up flows");
    ensure!(flows.values().all(|&(s, f)| s == 1 && f == 1), "unpaired flows");
    // Thread tracks are named after the kernel's thread names.
    ensure!(
        events.iter().any(|e| e["ph"] == "M"
            && e["name"] == "thread_name"
            && e["args"]["name"].as_str().is_some_and(|n| n.ends_with(" ktest"))),
        "no thread track named after the ktest runner thread"
    );

    // The SVG: valid XML, one lane per CPU, with runs in them.
    let svg = std::fs::read_to_string(&written.svg)?;
    let xml = roxmltree::Document::parse(&svg).context("timeline.svg is not valid XML")?;
    let lanes: Vec<_> = xml.descendants().filter(|n| n.attribute("class") == Some("lane")).collect();
    let cpus: HashSet<&str> = lanes.iter().filter_map(|n| n.attribute("data-cpu")).collect();
    ensure!(lanes.len() == 2 && cpus == HashSet::from(["0", "1"]), "{} lanes, for CPUs {cpus:?}", lanes.len());
    for lane in &lanes {
        let bars = lane.children().filter(|n| n.has_tag_name("rect")).count();
        ensure!(bars > 1, "lane {:?} has no thread runs", lane.attribute("data-cpu"));
    }
    Ok(())
}

/// Boots `crash=NAME` and returns its transcript, checking that it failed with `fatal` first.
fn deadlock_run(crash: &str, fatal: &str) -> Result<String> {
    let run = boot(RunConfig { cmdline: format!("crash={crash}"), timeout: Some(TIMEOUT), ..RunConfig::default() })?;
    match &run.outcome {
        Outcome::Failure(reason) if reason.starts_with(fatal) => {}
        other => bail!("expected a failure starting with {fatal:?}, got: {other}\n{}", tail(&run.transcript)),
    }
    ensure!(run.transcript.lines().any(|l| l == "prologue: exit failure"), "no final failure line");
    ensure!(run.transcript.lines().any(|l| l == "threads:"), "no thread list:\n{}", tail(&run.transcript));
    Ok(run.transcript)
}

/// The line of thread `name` in a thread list, which must contain every one of `parts`.
fn thread_line<'a>(transcript: &'a str, name: &str, parts: &[&str]) -> Result<&'a str> {
    let quoted = format!("\"{name}\": ");
    let line = transcript
        .lines()
        .find(|l| l.starts_with("thread ") && l.contains(&quoted))
        .with_context(|| format!("no line for thread {name:?}:\n{}", tail(transcript)))?;
    for part in parts {
        ensure!(line.contains(part), "thread {name:?}: {line:?} should say {part:?}");
    }
    Ok(line)
}

/// The symbolized frames printed under `line`.
fn frames_after<'a>(transcript: &'a str, line: &str) -> Vec<&'a str> {
    transcript
        .lines()
        .skip_while(|l| *l != line)
        .skip(2)
        .take_while(|l| l.trim_start().starts_with('#') || l.trim_start().starts_with("inlined:"))
        .collect()
}

fn deadlock_on_a_channel_nobody_sends_on() -> Result<()> {
    let t = deadlock_run("deadlock-chan", "FATAL: all threads are asleep: deadlock (2 threads parked")?;
    let receiver = thread_line(&t, "receiver", &["waiting: chan receive on 0x"])?;
    ensure!(
        frames_after(&t, receiver).iter().any(|f| f.contains("Chan<u64>>::recv")),
        "the receiver's stack does not show Chan::recv:\n{}",
        tail(&t)
    );
    thread_line(&t, "crash", &["waiting: join on 0x"])?;
    Ok(())
}

fn deadlock_on_a_wait_group_never_done() -> Result<()> {
    let t = deadlock_run("deadlock-waitgroup", "FATAL: all threads are asleep: deadlock (2 threads parked")?;
    let waiter = thread_line(&t, "waiter", &["waiting: wait group on 0x"])?;
    ensure!(frames_after(&t, waiter).iter().any(|f| f.contains("WaitGroup>::wait")), "no WaitGroup::wait frame");
    thread_line(&t, "crash", &["waiting: join on 0x"])?;
    Ok(())
}

fn deadlock_of_two_mutexes_abba() -> Result<()> {
    let t = deadlock_run("deadlock-abba", "FATAL: deadlock: a cycle of mutex waits: thread ")?;
    let fatal = t.lines().find(|l| l.starts_with("FATAL:")).unwrap_or_default();
    // Threads 2 and 3 are abba-1 and abba-2 (thread 1 is the first thread, which keeps running).
    ensure!(
        fatal.ends_with("thread 2 waits for thread 3, which waits for thread 2")
            || fatal.ends_with("thread 3 waits for thread 2, which waits for thread 3"),
        "the cycle is not named: {fatal:?}"
    );
    // Whichever closed the cycle is running (its stack is the report's); the other is parked on
    // the mutex the first holds.
    let one = thread_line(&t, "abba-1", &[])?;
    let two = thread_line(&t, "abba-2", &[])?;
    let parked = if one.contains("waiting") { one } else { two };
    ensure!(parked.contains("waiting: mutex lock on 0x"), "{parked:?}");
    ensure!(
        parked.contains("held by thread 2 \"abba-1\"") || parked.contains("held by thread 3 \"abba-2\""),
        "the holder is not named: {parked:?}"
    );
    // The first thread was not asleep: this is the wait-for graph's finding, not the idle check's.
    thread_line(&t, "crash", &["waiting: sleep"]).or_else(|_| thread_line(&t, "crash", &["runnable"]))?;
    Ok(())
}

fn shell_bt_shows_every_thread() -> Result<()> {
    let cfg = RunConfig {
        cmdline: "shell=on".into(),
        input: Some(Input { after_line: "shell:".into(), bytes: b"bt\nexit\n".to_vec() }),
        timeout: Some(TIMEOUT),
        ..RunConfig::default()
    };
    let run = boot(cfg)?;
    ensure!(run.outcome.is_success(), "the shell session failed: {}\n{}", run.outcome, tail(&run.transcript));
    let t = &run.transcript;
    let main = thread_line(t, "main", &["running on CPU 0"])?;
    ensure!(
        frames_after(t, main).iter().any(|f| f.contains("kernel::shell::run")),
        "bt does not show the shell's own stack:\n{}",
        tail(t)
    );
    Ok(())
}

fn schedtrace_prints_every_cpu() -> Result<()> {
    let cfg = RunConfig {
        smp: 2,
        cmdline:
            "schedtrace=50 test=sched::smp_tests::fan_out_is_stolen_by_every_cpu,sched::tests::ten_thousand_threads"
                .into(),
        timeout: Some(TIMEOUT),
        ..RunConfig::default()
    };
    let run = boot(cfg)?;
    ensure!(run.outcome.is_success(), "the run failed: {}\n{}", run.outcome, tail(&run.transcript));
    let heads: Vec<u64> = run
        .transcript
        .lines()
        .filter_map(|l| l[l.find("SCHED ")? + 6..].split_once("ms: global queue ")?.0.parse().ok())
        .collect();
    // (A block may start on the line of a test that is still running: `test NAME ... SCHED ...`.)
    ensure!(heads.len() >= 2, "fewer than two schedtrace blocks:\n{}", tail(&run.transcript));
    ensure!(heads.windows(2).all(|w| w[1] >= w[0] + 45), "schedtrace blocks not 50 ms apart: {heads:?}");
    for cpu in 0..2 {
        let prefix = format!("SCHED   cpu {cpu}: runq ");
        let lines: Vec<&str> = run.transcript.lines().filter(|l| l.starts_with(&prefix)).collect();
        ensure!(lines.len() == heads.len(), "CPU {cpu}: {} lines for {} blocks", lines.len(), heads.len());
        let switches: Vec<u64> =
            lines.iter().filter_map(|l| l.split(" switches ").nth(1)?.split(' ').next()?.parse().ok()).collect();
        ensure!(switches.len() == lines.len(), "unreadable switch counts: {lines:?}");
        ensure!(switches.windows(2).all(|w| w[1] >= w[0]), "CPU {cpu}'s switch count went back: {switches:?}");
    }
    Ok(())
}

/// A run the kernel does not end (the shell waits for input that never comes) is stopped by the
/// kernel's own watchdog before the runner's, with every thread's traceback. (The test sets the
/// kernel's watchdog itself, well before the runner's, so that a slow boot on a busy host cannot
/// make the runner's come first; the runner's default is unit-tested in `boot::qemu`.)
fn watchdog_shows_every_thread() -> Result<()> {
    let run =
        boot(RunConfig { cmdline: "shell=on watchdog=8".into(), timeout: Some(TIMEOUT), ..RunConfig::default() })?;
    let expected = "FATAL: watchdog: the run did not finish within 8 s";
    match &run.outcome {
        Outcome::Failure(reason) if reason.starts_with(expected) => {}
        other => bail!("expected a failure starting with {expected:?}, got: {other}\n{}", tail(&run.transcript)),
    }
    let main = thread_line(&run.transcript, "main", &["waiting: sleep"])?;
    ensure!(
        frames_after(&run.transcript, main).iter().any(|f| f.contains("kernel::shell::run")),
        "the shell thread's stack is not shown:\n{}",
        tail(&run.transcript)
    );
    Ok(())
}

//! The GDB helpers (`boot/gdb/prologue.py`) and the `kernel-gdb` build, checked with a real gdb
//! against a real kernel: the ktest `sched::gdb_tests::two_threads_parked_for_gdb` parks
//! "gdb-receiver" on a channel and "gdb-locker" on a mutex and then calls `threads_parked`; QEMU
//! waits for a debugger on a free port; `gdb -batch`, started with the very arguments the runner
//! prints for `--gdb`, breaks there by the function's full path and runs `info kthreads` and
//! `kthread N bt`. The check reads gdb's output: the threads by name with their states and wait
//! reasons, a frame in `park` and in the parked test's closure, and the types and paths that only
//! full debug information gives (`ptype G`, locals, `print *locker.g`,
//! `break kernel::sched::preempt::preempt_m`). gdb kills
//! QEMU when it is done.

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use boot::{RunConfig, Variant};
use libtest_mimic::{Arguments, Trial};
use qemu_tests::kernels;

/// The runner's watchdog: QEMU is killed by then even if gdb never connects.
const TIMEOUT: Duration = Duration::from_secs(120);

fn main() {
    let args = Arguments::from_args();
    let trials = vec![Trial::test("gdb_lists_parked_threads_and_their_stacks", || {
        gdb_lists_parked_threads_and_their_stacks().map_err(|e| format!("{e:#}").into())
    })];
    libtest_mimic::run(&args, trials).exit();
}

/// A TCP port nobody listens on now (the system's choice), so that two runs do not collide.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free TCP port")?;
    Ok(listener.local_addr()?.port())
}

fn gdb_lists_parked_threads_and_their_stacks() -> Result<()> {
    if let Some(missing) = boot::gdb::missing() {
        bail!("{missing}");
    }
    let variant = Variant { full_debug: true, ..Variant::debug() };
    let elf = kernels::elf(&variant)?;
    let image = boot::image::make(&elf, boot::Firmware::Bios)?;
    let port = free_port()?;
    let cfg = RunConfig {
        cmdline: "test=sched::gdb_tests::two_threads_parked_for_gdb".into(),
        timeout: Some(TIMEOUT),
        gdb: true,
        gdb_port: port,
        ..RunConfig::default()
    };
    let started = Instant::now();
    let qemu = {
        let (image, elf) = (image.clone(), elf.clone());
        std::thread::spawn(move || boot::run(&image, &elf, &cfg))
    };
    let commands = ["set tcp connect-timeout 60", "set pagination off"];
    let after = [
        "break kernel::sched::gdb_tests::threads_parked",
        "continue",
        "info args",
        "info kthreads",
        "kthread ids[0] bt",
        "kthread ids[1] bt",
        "ptype kernel::records::g::G",
        "up",
        "info locals",
        "print *locker.g",
        "break kernel::sched::preempt::preempt_m",
        "kill",
    ];
    let mut gdb = Command::new("gdb");
    gdb.arg("-batch").arg("-nx");
    for c in commands {
        gdb.arg("-iex").arg(c);
    }
    gdb.args(boot::gdb::args(&elf, port));
    for c in after {
        gdb.arg("-ex").arg(c);
    }
    let output = gdb.output().context("running gdb")?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    // gdb's `kill` ended QEMU; the run's outcome (killed by a debugger) does not matter here.
    let run = qemu.join().map_err(|_| anyhow::anyhow!("the QEMU thread panicked"))?;
    let transcript = run.map(|r| r.transcript).unwrap_or_else(|e| format!("(QEMU run failed: {e:#})"));
    let context = || format!("--- gdb ---\n{text}\n--- kernel ---\n{transcript}");
    let has = |what: &str| text.contains(what);
    ensure!(
        has("Breakpoint 1, kernel::sched::gdb_tests::threads_parked"),
        "gdb did not stop at threads_parked\n{}",
        context()
    );
    let row = |name: &str| text.lines().find(|l| l.contains(&format!("\"{name}\""))).map(str::to_string);
    let receiver = row("gdb-receiver").with_context(|| format!("info kthreads has no gdb-receiver\n{}", context()))?;
    ensure!(
        receiver.contains("waiting") && receiver.ends_with("chan receive"),
        "receiver row: {receiver}\n{}",
        context()
    );
    let locker = row("gdb-locker").with_context(|| format!("info kthreads has no gdb-locker\n{}", context()))?;
    ensure!(locker.contains("waiting") && locker.ends_with("mutex lock"), "locker row: {locker}\n{}", context());
    ensure!(
        text.lines().any(|l| l.contains("two_threads_pa") && l.contains("running")),
        "the test's own thread is not shown running\n{}",
        context()
    );
    // The backtraces: each thread's header, then frames from `park` up to its entry.
    let receiver_bt = section(&text, "thread ", "\"gdb-receiver\" (waiting):");
    ensure!(
        receiver_bt.contains("#0 ") && receiver_bt.contains("kernel::sched::park::park"),
        "receiver bt:\n{}",
        context()
    );
    ensure!(receiver_bt.contains("Chan<u64>::recv"), "receiver bt has no recv:\n{}", context());
    let locker_bt = section(&text, "thread ", "\"gdb-locker\" (waiting):");
    ensure!(locker_bt.contains("Mutex<u64>::lock"), "locker bt has no Mutex::lock:\n{}", context());
    ensure!(
        locker_bt.contains("two_threads_parked_for_gdb::{closure"),
        "locker bt has no test closure:\n{}",
        context()
    );
    ensure!(locker_bt.contains("thread_entry"), "locker bt does not reach thread_entry:\n{}", context());
    // What only full debug information gives.
    ensure!(has("stackguard0: core::sync::atomic::Atomic<usize>"), "ptype G shows no fields\n{}", context());
    ensure!(has("locker = kernel::sched::thread::join::JoinHandle<u64>"), "info locals shows no locker\n{}", context());
    ensure!(has(" = kernel::records::g::G {stackguard0: "), "print *locker.g shows no G\n{}", context());
    ensure!(has("file kernel/src/sched/preempt.rs"), "break kernel::sched::preempt::preempt_m failed\n{}", context());
    ensure!(started.elapsed() < TIMEOUT, "the run took {:?}", started.elapsed());
    Ok(())
}

/// The lines of `text` from the line that starts with `start` and ends with `end`, up to the next
/// line that is neither a frame nor an inlined note.
fn section(text: &str, start: &str, end: &str) -> String {
    let mut lines = text.lines().skip_while(|l| !(l.starts_with(start) && l.ends_with(end)));
    let mut out: Vec<&str> = lines.next().into_iter().collect();
    out.extend(lines.take_while(|l| l.starts_with('#') || l.starts_with("        inlined into")));
    out.join("\n")
}

//! `docs/benchmarks.md`, written whole by `cargo run -- bench ... --markdown docs/benchmarks.md`:
//! every figure on it comes from the run that wrote it, and it names the commit it was made on.
//! The words around the tables say how the figures are made and what they mean, and each
//! benchmark's timed region is described by the kernel itself (`bench=list`) or, for the
//! comparison programs, by their sources.

use std::fmt::Write as _;
use std::process::Command;

use anyhow::{Context, Result};

use crate::bench::Results;
use crate::bench::table::anchor_label;
use crate::kernel::workspace_root;

/// The first line `program args` prints, or why it cannot say.
fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .current_dir(workspace_root())
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_string))
        .unwrap_or_else(|| format!("(`{program}` did not answer)"))
}

/// The commit the figures were made on, and whether the working tree differed from it.
fn commit() -> Result<String> {
    let hash = first_line("git", &["rev-parse", "--short=12", "HEAD"]);
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(workspace_root())
        .output()
        .context("running git status")?;
    let date = first_line("git", &["show", "-s", "--format=%cs", "HEAD"]);
    Ok(if dirty.stdout.is_empty() {
        format!("commit `{hash}` ({date})")
    } else {
        format!("commit `{hash}` ({date}) with uncommitted changes in the working tree")
    })
}

/// The command that makes this page with these options.
fn command(results: &Results) -> String {
    let mut command = String::from("cargo run -- bench");
    if results.which != "all" {
        let _ = write!(command, " {}", results.which);
    }
    if results.columns.len() == 1 {
        command.push_str(" --no-compare");
    }
    if !results.anchors.is_empty() {
        let names: Vec<&str> = results.anchors.iter().map(|(a, _)| a.name()).collect();
        let _ = write!(command, " --against {}", names.join(","));
    }
    command.push_str(" --markdown docs/benchmarks.md");
    command
}

/// A paragraph on the three parts of `spawn_join` (instrumented build), when they were measured.
fn spawn_join_parts(results: &Results) -> Option<String> {
    let (_, instrumented) = results.columns.first()?;
    let whole = instrumented.get("spawn_join")?.per_op;
    let parts: Vec<f64> = ["spawn_join_1_spawn", "spawn_join_2_start", "spawn_join_3_finish"]
        .iter()
        .map(|name| instrumented.get(*name).map(|f| f.per_op))
        .collect::<Option<_>>()?;
    let sum: f64 = parts.iter().sum();
    Some(format!(
        "**Where a spawn + join goes** (instrumented build): of the {whole:.1} instructions, `spawn` takes \
         {:.1}; from `join` to the new thread's first instruction, {:.1}; from its last instruction until \
         `join` returns, {:.1}. The three parts are measured by separate runs with TSC reads in between \
         (`spawn_join_1_spawn` to `_3_finish`), so they add up to {sum:.1}, a little more than the whole.",
        parts[0], parts[1], parts[2]
    ))
}

/// The whole document, around `tables` (from `table::markdown`).
pub fn document(results: &Results, tables: &str) -> Result<String> {
    let mut out = String::new();
    let qemu = first_line("qemu-system-x86_64", &["--version"]);
    let _ = writeln!(
        out,
        "# Benchmarks

<!-- Written by `{command}`: do not edit by hand, run it again. -->

Every figure on this page was measured by one command, on {commit}, with {qemu}:

```sh
{command}
```

Each figure is a count: of instructions executed (under QEMU's `-icount shift=0,sleep=off`, the
guest's time-stamp counter counts executed instructions, so a benchmark reads it before and after
its timed region), of bytes, or of threads. Counts are exact, and the command checks that they
repeat: it runs every build, and each comparison program, twice, and fails without writing anything
if the raw count of any benchmark differs between the two runs. They count work, not time: a locked
instruction or a cache miss costs more on real hardware than an add, but each counts as one here.
Each timed region is described at the end of this page.

## Prologue's builds

Release builds, on one CPU with timer preemption off (`preempt=off`), in a 1 GiB guest:
`instrumented` is the kernel as it runs (every function calls the prologue hook, which forces frame
pointers); `plain + fp` has no hook but keeps the frame pointers; `plain` has neither;
`always-preempt` makes every prologue of a thread a preemption point. The **hook** column is what
the prologue check costs per operation (instrumented minus plain + fp), **frame pointers** what they
cost (plain + fp minus plain).
",
        command = command(results),
        commit = commit()?,
    );
    let (builds, rest) = tables.split_once("\n\n").unwrap_or((tables, ""));
    let _ = writeln!(out, "{builds}\n");
    if let Some(parts) = spawn_join_parts(results) {
        let _ = writeln!(out, "{parts}\n");
    }
    let mut rest = rest;
    if !results.anchors.is_empty() {
        let (anchors, after) = rest.split_once("\n\n").unwrap_or((rest, ""));
        rest = after;
        let _ = writeln!(
            out,
            "## Against Go and Linux

The same operations, measured the same way in the same run: each comparison program is built on the
host, packed as `/init` into an initramfs, and booted with Debian's Linux kernel in the same QEMU,
with the same `-icount` and one CPU (`bench/go/main.go`, Go with `GOMAXPROCS=1`; and
`bench/linux/pthreads.c`, C with POSIX threads; `boot/src/against/` runs them). Their figures
include everything the machine executed in the timed region: the runtime, the Linux kernel under
it, its timer interrupts. A ratio above 1 means the operation costs more there than in Prologue.
"
        );
        for (anchor, _) in &results.anchors {
            let _ = writeln!(
                out,
                "- {}: {}",
                anchor_label(anchor.name()),
                crate::against::environment(*anchor).unwrap_or_else(|e| format!("(unknown: {e:#})"))
            );
        }
        let _ = writeln!(
            out,
            "
{anchors}

The programs do what the kernel's benchmarks do, with the primitives each has: Go has no join, so
its `spawn_join` waits with a `sync.WaitGroup`, and C has no channels, so its round trip is a
ping-pong over two semaphores. The exact counts of the comparison programs move with unrelated
changes (another kernel command line, a newer Linux image), by less than 0.2% for most figures and
a few percent for some (see `boot/src/against/mod.rs`).
"
        );
    }
    if !results.stack16.is_empty() {
        let _ = writeln!(
            out,
            "## The initial stack size

The instrumented build again with fully mapped 16 KiB stacks (`stack_init_kib=16`) instead of the
default 4 KiB ones that grow on demand:

{}
",
            rest.trim_end()
        );
    }
    let _ = writeln!(out, "## What each benchmark times\n");
    for (name, about) in &results.about {
        let _ = writeln!(out, "- `{name}`: {about}");
    }
    Ok(out)
}

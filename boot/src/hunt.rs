//! `cargo run -- hunt`: how fast each preemption mode catches each planted kernel bug.
//!
//! For every planted kernel bug (`kernel/src/planted.rs`, listed by the kernel itself with
//! `inject=list`) and every mode -- the normal build (timer preemption only), and the
//! forced-preemption build (`always-preempt`) with `every`, `random:N`, `async:N` and `pct:D` --
//! at one and at two CPUs (PCT only at one: it schedules one CPU), it runs a stress farm
//! (`boot::farm`) of seeds 1..=M of S seconds each, and records which seeds caught the bug (any
//! run that did not succeed: the kernel's failure line, or the runner's timeout or triple fault,
//! all kept with the reason). Both builds carry `planted-bugs`. The first row runs no bug at
//! all: it counts how often a mode fails on its own, which a catch in the other rows must be
//! read against. `--modes` keeps some columns only (`every@2`, `normal@1`, ...).
//!
//! Figures: *caught* is the number of seeds out of M that failed. *Runs to first catch* is the
//! number of runs a farm that starts at seed s and goes on in order (wrapping round) needs to
//! hit its first failing seed; the table gives its median over the M starting seeds (so it
//! comes from the same M runs, not from more). The shortest replay line per bug is the shortest
//! of all its failing runs' replay commands.
//!
//! Output: the farms' own progress and reports on stderr/stdout as they go, then the table as
//! Markdown (stdout, and `--markdown F`) and JSON (`--json F`).
//!
//! Invariants: every figure is counted from runs made by this command; a run with no verdict
//! (Ctrl-C) stops the hunt, and nothing is written for it.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::cli::{Opts, StressArgs};

/// What `hunt` was asked for.
#[derive(Clone, Debug)]
pub struct HuntArgs {
    pub seeds: u64,
    pub seconds: u64,
    /// Bug names; empty: every planted kernel bug.
    pub bugs: Vec<String>,
    pub random: u64,
    pub pct: u32,
    pub async_mean: u64,
    /// Mode keys (`STRATEGY@SMP`, `normal@SMP`); empty: every mode.
    pub modes: Vec<String>,
    pub jobs: Option<u64>,
    pub markdown: Option<PathBuf>,
    pub json: Option<PathBuf>,
}

/// One column of the table: a build, a strategy and a CPU count.
#[derive(Clone, Debug, Serialize)]
pub struct Mode {
    pub name: String,
    /// What `--modes` calls it: `STRATEGY@SMP` (the strategy's name without its number), or
    /// `normal@SMP`.
    pub key: String,
    pub features: Vec<String>,
    pub strategy: Option<String>,
    pub smp: u32,
}

/// One cell: a bug under a mode.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub bug: String,
    pub mode: String,
    pub seeds: u64,
    pub caught: u64,
    pub failing_seeds: Vec<u64>,
    pub median_runs_to_first_catch: Option<f64>,
    /// The first failing seed's reason (what the invariant said).
    pub first_reason: Option<String>,
}

/// A planted kernel bug, as the kernel lists it.
#[derive(Clone, Debug, Serialize)]
pub struct BugRow {
    pub name: String,
    pub subsystem: String,
    pub shortest_replay: Option<String>,
}

/// The whole result.
#[derive(Clone, Debug, Serialize)]
pub struct Table {
    pub seeds: u64,
    pub seconds: u64,
    pub commit: String,
    pub command: String,
    pub modes: Vec<Mode>,
    pub bugs: Vec<BugRow>,
    pub cells: Vec<Cell>,
}

/// The modes, in table order.
pub fn modes(random: u64, pct: u32, async_mean: u64) -> Vec<Mode> {
    let normal = vec!["planted-bugs".to_string()];
    let forced = vec!["planted-bugs".to_string(), "always-preempt".to_string()];
    let mut modes = Vec::new();
    for smp in [1, 2] {
        let (name, key) = (format!("normal, smp {smp}"), format!("normal@{smp}"));
        modes.push(Mode { name, key, features: normal.clone(), strategy: None, smp });
    }
    let forced_mode = |strategy: String, smp: u32| Mode {
        name: format!("{strategy}, smp {smp}"),
        key: format!("{}@{smp}", strategy.split(':').next().unwrap_or_default()),
        features: forced.clone(),
        strategy: Some(strategy),
        smp,
    };
    for strategy in ["every".to_string(), format!("random:{random}"), format!("async:{async_mean}")] {
        for smp in [1, 2] {
            modes.push(forced_mode(strategy.clone(), smp));
        }
    }
    modes.push(forced_mode(format!("pct:{pct}"), 1));
    modes
}

/// The modes `keys` names (every mode if empty); an unknown key is an error naming the known.
pub fn chosen_modes(all: Vec<Mode>, keys: &[String]) -> Result<Vec<Mode>> {
    if keys.is_empty() {
        return Ok(all);
    }
    for key in keys {
        if !all.iter().any(|m| &m.key == key) {
            let known: Vec<&str> = all.iter().map(|m| m.key.as_str()).collect();
            bail!("no hunt mode '{key}' (known: {})", known.join(", "));
        }
    }
    Ok(all.into_iter().filter(|m| keys.contains(&m.key)).collect())
}

/// The name of the table's first row, which runs no planted bug.
pub const NO_BUG: &str = "(no bug)";

/// The median, over the M starting seeds, of the runs to the first failing seed (wrapping
/// round); `None` if no seed failed. `failed[i]`: seed i+1 failed.
pub fn median_runs_to_first_catch(failed: &[bool]) -> Option<f64> {
    let m = failed.len();
    if !failed.iter().any(|&f| f) {
        return None;
    }
    let mut runs: Vec<usize> = (0..m).map(|start| (0..m).find(|k| failed[(start + k) % m]).unwrap() + 1).collect();
    runs.sort_unstable();
    Some(if m % 2 == 1 { runs[m / 2] as f64 } else { (runs[m / 2 - 1] + runs[m / 2]) as f64 / 2.0 })
}

/// The planted kernel bugs, as the kernel of `opts` (a planted-bugs build) lists them.
fn kernel_bug_list(opts: &Opts) -> Result<Vec<BugRow>> {
    let elf = crate::kernel::build(&opts.variant(), false)?;
    let image = crate::image::make(&elf, opts.firmware())?;
    let words = vec!["stress=1".to_string(), "inject=list".to_string()];
    let cfg = crate::qemu::RunConfig { echo: false, ..opts.run_config(words, Some(120)) };
    let result = crate::qemu::run(&image, &elf, &cfg)?;
    let mut rows = Vec::new();
    let mut in_kernel_list = false;
    for line in result.transcript.lines() {
        if line.starts_with("stress: planted kernel bugs") {
            in_kernel_list = true;
            continue;
        }
        if let Some(row) = line.strip_prefix("stress:   ").filter(|_| in_kernel_list) {
            let mut words = row.split_whitespace();
            if let (Some(name), Some(subsystem)) = (words.next(), words.next()) {
                rows.push(BugRow { name: name.to_string(), subsystem: subsystem.to_string(), shortest_replay: None });
            }
        }
    }
    if rows.is_empty() {
        bail!("the kernel listed no planted kernel bugs (inject=list):\n{}", result.transcript);
    }
    Ok(rows)
}

/// Runs the hunt: every bug under every mode; returns the table.
pub fn run(opts: &Opts, args: &HuntArgs, command: &str) -> Result<Table> {
    let modes = chosen_modes(modes(args.random, args.pct, args.async_mean), &args.modes)?;
    // The commit the kernels and this runner are built from: read now, not when the table is
    // written (the tree may move on during a long hunt).
    let commit = commit();
    let mut list_opts = opts.clone();
    list_opts.features = modes[0].features.clone();
    let mut bugs = kernel_bug_list(&list_opts)?;
    if !args.bugs.is_empty() {
        for name in &args.bugs {
            if !bugs.iter().any(|b| &b.name == name) {
                bail!("no planted kernel bug '{name}' (known: {})", names(&bugs));
            }
        }
        bugs.retain(|b| args.bugs.contains(&b.name));
    }
    bugs.insert(0, BugRow { name: NO_BUG.to_string(), subsystem: "-".to_string(), shortest_replay: None });
    let stop = crate::farm::stop_on_interrupt()?;
    let mut cells = Vec::new();
    for mode in &modes {
        let mut mode_opts = opts.clone();
        mode_opts.features = mode.features.clone();
        mode_opts.smp = mode.smp;
        // A hung run ends well before the farm's default watchdog (4 x S + 120 s).
        mode_opts.timeout.get_or_insert(args.seconds * 2 + 25);
        for index in 0..bugs.len() {
            let bug = &mut bugs[index];
            let stress = StressArgs {
                seconds: args.seconds,
                seed: 1,
                inject: (bug.name != NO_BUG).then(|| bug.name.clone()),
                strategy: mode.strategy.clone(),
                runs: Some(args.seeds),
                jobs: args.jobs,
            };
            eprintln!("hunt: {} under {}", bug.name, mode.name);
            let mut plan = crate::farm::Plan::new(&mode_opts, &stress)?;
            let kernel = plan.build()?;
            let (totals, failures) = crate::farm::run_keeping_failures(&plan, &kernel, &stop);
            if stop.load(Ordering::Relaxed) || totals.interrupted {
                bail!("hunt: interrupted; no table written");
            }
            let failed: Vec<bool> = (1..=args.seeds).map(|s| totals.failed.contains(&s)).collect();
            let mut sorted = failures.clone();
            sorted.sort_by_key(|f| f.seed);
            for f in &failures {
                if bug.shortest_replay.as_ref().is_none_or(|r| f.replay.len() < r.len()) {
                    bug.shortest_replay = Some(f.replay.clone());
                }
            }
            cells.push(Cell {
                bug: bug.name.clone(),
                mode: mode.name.clone(),
                seeds: args.seeds,
                caught: totals.failed.len() as u64,
                failing_seeds: totals.failed.clone(),
                median_runs_to_first_catch: median_runs_to_first_catch(&failed),
                first_reason: sorted.first().map(|f| f.reason.clone()),
            });
            // The table so far, so that a long hunt shows (and keeps) what it has measured.
            let partial = Table {
                modes: modes.clone(),
                bugs: bugs.clone(),
                cells: cells.clone(),
                ..table(args, command, &commit)
            };
            write(args, &partial, false)?;
        }
    }
    let table = Table { modes, bugs, cells, ..table(args, command, &commit) };
    write(args, &table, true)?;
    Ok(table)
}

/// An empty table of this hunt's parameters.
fn table(args: &HuntArgs, command: &str, commit: &str) -> Table {
    Table {
        seeds: args.seeds,
        seconds: args.seconds,
        commit: commit.to_string(),
        command: command.to_string(),
        modes: Vec::new(),
        bugs: Vec::new(),
        cells: Vec::new(),
    }
}

/// Writes the Markdown and JSON files asked for; prints the Markdown too if `last`.
fn write(args: &HuntArgs, table: &Table, last: bool) -> Result<()> {
    let markdown = markdown(table);
    if last {
        print!("{markdown}");
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, &markdown).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&table)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn names(bugs: &[BugRow]) -> String {
    bugs.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// The commit the hunt ran on (`git describe`, `-dirty` if the tree has changes).
fn commit() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=7"])
        .current_dir(crate::kernel::workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".to_string(), |o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The table as Markdown: a row per bug, a column per mode, `caught/M (median runs)` in each
/// cell; then the shortest replay line per caught bug.
pub fn markdown(table: &Table) -> String {
    let mut text = format!(
        "Measured on commit `{}` with `{}`: {} seeds of {} s per cell; each cell is seeds caught out of {} \
         and, in brackets, the median runs to the first catch.\n\n",
        table.commit, table.command, table.seeds, table.seconds, table.seeds
    );
    text.push_str("| bug | subsystem |");
    for mode in &table.modes {
        text.push_str(&format!(" {} |", mode.name));
    }
    text.push_str("\n|---|---|");
    text.push_str(&"---|".repeat(table.modes.len()));
    text.push('\n');
    for bug in &table.bugs {
        let name = if bug.name == NO_BUG { bug.name.clone() } else { format!("`{}`", bug.name) };
        text.push_str(&format!("| {name} | {} |", bug.subsystem));
        for mode in &table.modes {
            let cell = table.cells.iter().find(|c| c.bug == bug.name && c.mode == mode.name);
            match cell {
                Some(c) => match c.median_runs_to_first_catch {
                    Some(median) => text.push_str(&format!(" {}/{} ({median}) |", c.caught, c.seeds)),
                    None => text.push_str(&format!(" 0/{} |", c.seeds)),
                },
                None => text.push_str(" |"),
            }
        }
        text.push('\n');
    }
    text.push_str("\nShortest replay line per caught bug:\n\n");
    for bug in &table.bugs {
        match (&bug.shortest_replay, bug.name == NO_BUG) {
            (Some(replay), true) => text.push_str(&format!("- {NO_BUG}, a run that failed on its own: `{replay}`\n")),
            (None, true) => text.push_str(&format!("- {NO_BUG}: every run succeeded\n")),
            (Some(replay), false) => text.push_str(&format!("- `{}`: `{replay}`\n", bug.name)),
            (None, false) => text.push_str(&format!("- `{}`: not caught\n", bug.name)),
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_runs_wrap_round_the_seeds() {
        assert_eq!(median_runs_to_first_catch(&[false, false, false]), None);
        assert_eq!(median_runs_to_first_catch(&[true, true, true]), Some(1.0));
        // Starts 1..4 need 1, 3, 2, 1 runs: median of 1,1,2,3 = 1.5.
        assert_eq!(median_runs_to_first_catch(&[true, false, false, true]), Some(1.5));
        // Only seed 3 of 5: 3, 2, 1, 5, 4 -> 3.
        assert_eq!(median_runs_to_first_catch(&[false, false, true, false, false]), Some(3.0));
    }

    #[test]
    fn modes_cover_both_cpu_counts_and_pct_at_one() {
        let names: Vec<String> = modes(8, 3, 20_000).into_iter().map(|m| m.name).collect();
        assert_eq!(
            names,
            [
                "normal, smp 1",
                "normal, smp 2",
                "every, smp 1",
                "every, smp 2",
                "random:8, smp 1",
                "random:8, smp 2",
                "async:20000, smp 1",
                "async:20000, smp 2",
                "pct:3, smp 1"
            ]
        );
    }

    #[test]
    fn modes_are_chosen_by_key() {
        let chosen = chosen_modes(modes(8, 3, 20_000), &["every@2".into(), "normal@1".into()]).unwrap();
        let names: Vec<&str> = chosen.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["normal, smp 1", "every, smp 2"]);
        let e = chosen_modes(modes(8, 3, 20_000), &["every@3".into()]).unwrap_err().to_string();
        assert!(e.contains("no hunt mode 'every@3'") && e.contains("pct@1"), "{e}");
    }
}

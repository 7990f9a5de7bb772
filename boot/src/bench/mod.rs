//! The benchmark driver (`cargo run -- bench`): runs the kernel's benchmarks on several kernel
//! builds under instruction counting, checks that every figure repeats exactly, and reports
//! tables, JSON and (with `--markdown`) the whole of `docs/benchmarks.md`.
//!
//! Every figure comes from a result line `bench NAME: TOTAL UNIT / N THINGS = X.Y UNIT/THING`
//! (`crate::figures`). Under `-icount shift=0,sleep=off` the guest's time-stamp counter counts
//! executed instructions, so a figure is an exact count: each build is run twice and the raw
//! TOTAL and N of every benchmark must be identical, or the command fails before it writes any
//! file. A run that reports no figure at all is an error too.
//!
//! Builds compared, on the same workloads (release builds, one CPU, `preempt=off`, 1 GiB):
//! - `instrumented`: with the prologue hook (the kernel as it runs);
//! - `plain + fp`: without the hook, with the frame pointers the hook forces;
//! - `plain`: without the hook or frame pointers (so: hook = instrumented - plain + fp, frame
//!   pointers = plain + fp - plain);
//! - `always-preempt`: every prologue a preemption point.
//!
//! With `--against go,linux` the same operations are measured in Go 1.19 and with Linux pthreads
//! (`crate::against`), also twice, and shown beside Prologue's with the ratio.

mod doc;
mod table;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::against::{self, Anchor};
use crate::figures::{self, RawFigure};
use crate::image::{self, Firmware};
use crate::kernel::{self, Variant};
use crate::qemu::{RunConfig, run};

/// Figures of one run: benchmark name -> figure.
pub type Figures = BTreeMap<String, RawFigure>;

/// One build of the comparison.
pub struct Column {
    pub label: &'static str,
    pub variant: Variant,
}

/// Options of `boot bench`.
pub struct Options {
    pub which: String,
    /// Also run the plain builds, the always-preempt build and the 16 KiB-stack run.
    pub compare: bool,
    /// Comparison programs to measure too.
    pub against: Vec<Anchor>,
    pub json: Option<PathBuf>,
    pub markdown: Option<PathBuf>,
}

/// Everything one `bench` command measured.
pub struct Results {
    pub which: String,
    pub columns: Vec<(&'static str, Figures)>,
    /// The instrumented build with fully mapped 16 KiB stacks (`stack_init_kib=16`).
    pub stack16: Figures,
    pub anchors: Vec<(Anchor, Figures)>,
    /// What each benchmark times, by name (the kernel's `bench=list`).
    pub about: BTreeMap<String, String>,
}

/// The benchmarks repeated with fully mapped 16 KiB stacks.
const STACK16_BENCHES: &str = "spawn_join,stack_alloc_free_fresh,idle_thread_memory";

fn release(features: &[&str], plain: bool, frame_pointers: bool) -> Variant {
    Variant {
        release: true,
        features: features.iter().map(|f| f.to_string()).collect(),
        plain,
        frame_pointers,
        full_debug: false,
    }
}

/// The builds to run.
fn columns(compare: bool) -> Vec<Column> {
    let mut columns = vec![Column { label: "instrumented", variant: release(&[], false, false) }];
    if compare {
        columns.push(Column { label: "plain + fp", variant: release(&[], true, true) });
        columns.push(Column { label: "plain", variant: release(&[], true, false) });
        columns.push(Column { label: "always-preempt", variant: release(&["always-preempt"], false, false) });
    }
    columns
}

/// Boots `variant` with `cmdline` (plus `preempt=off`) under icount and returns its transcript.
fn boot_bench(variant: &Variant, cmdline: &str, echo: bool) -> Result<String> {
    let elf = kernel::build(variant, true)?;
    let image = image::make(&elf, Firmware::Bios)?;
    let cfg = RunConfig {
        cmdline: format!("{cmdline} preempt=off"),
        icount: true,
        memory_mib: 1024,
        timeout: Some(Duration::from_secs(3600)),
        echo,
        ..RunConfig::default()
    };
    let result = run(&image, &elf, &cfg)?;
    if !result.outcome.is_success() {
        bail!("benchmarks on the {} build: {}", variant.name(), result.outcome);
    }
    Ok(result.transcript)
}

/// Runs `bench=which` (plus `extra` words) on `variant` and returns its figures; fails if none.
fn run_variant(variant: &Variant, which: &str, extra: &str, echo: bool) -> Result<Figures> {
    let transcript = boot_bench(variant, &format!("bench={which} {extra}"), echo)?;
    let report = figures::parse(&transcript).with_context(|| format!("the {} build's figures", variant.name()))?;
    ensure!(!report.figures.is_empty(), "the {} build reported no figure at all", variant.name());
    ensure!(report.failures.is_empty(), "the {} build: {}", variant.name(), report.failures.join("; "));
    Ok(report.figures)
}

/// The benchmarks that differ between two runs (raw TOTAL or N), or that only one reports.
fn differences(a: &Figures, b: &Figures) -> Vec<String> {
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|name| match (a.get(*name), b.get(*name)) {
            (Some(x), Some(y)) => (x.total, x.ops) != (y.total, y.ops),
            _ => true,
        })
        .cloned()
        .collect()
}

/// Runs `measure` twice; fails naming what differs.
fn twice(what: &str, mut measure: impl FnMut(bool) -> Result<Figures>) -> Result<Figures> {
    let first = measure(true)?;
    eprintln!("boot: {what} once more: every raw count must repeat");
    let second = measure(false)?;
    let differing = differences(&first, &second);
    if !differing.is_empty() {
        bail!("{what}: the raw counts of two identical runs differ in {differing:?}");
    }
    Ok(first)
}

/// The comparison figures whose unit differs from Prologue's figure of the same name (a ratio of
/// instructions per switch to instructions per yield call would compare nothing).
fn unit_mismatches(results: &Results) -> Vec<String> {
    let Some((_, ours)) = results.columns.first() else { return Vec::new() };
    let mut mismatched = Vec::new();
    for (anchor, figures) in &results.anchors {
        for (name, theirs) in figures {
            if let Some(mine) = ours.get(name)
                && mine.unit_per() != theirs.unit_per()
            {
                mismatched.push(format!(
                    "{name}: {} in {}, {} in Prologue",
                    theirs.unit_per(),
                    anchor.name(),
                    mine.unit_per()
                ));
            }
        }
    }
    mismatched
}

/// What each benchmark times, from the kernel's `bench=list` (`benchmark NAME: DESCRIPTION`).
fn descriptions(variant: &Variant) -> Result<BTreeMap<String, String>> {
    let transcript = boot_bench(variant, "bench=list", false)?;
    let about: BTreeMap<String, String> = transcript
        .lines()
        .filter_map(|l| l.strip_prefix("benchmark ")?.split_once(": "))
        .map(|(name, text)| (name.to_string(), text.to_string()))
        .collect();
    ensure!(!about.is_empty(), "the kernel's bench=list described no benchmark");
    Ok(about)
}

/// Runs the benchmarks and reports; fails (writing nothing) if any figure does not repeat.
pub fn bench(opts: &Options) -> Result<()> {
    let columns = columns(opts.compare);
    let mut results = Results {
        which: opts.which.clone(),
        columns: Vec::new(),
        stack16: Figures::new(),
        anchors: Vec::new(),
        about: descriptions(&columns[0].variant)?,
    };
    for column in &columns {
        eprintln!("boot: benchmarks on the {} build ({})", column.label, column.variant.name());
        let figures =
            twice(&format!("the {} build", column.label), |echo| run_variant(&column.variant, &opts.which, "", echo))?;
        results.columns.push((column.label, figures));
    }
    if opts.compare && opts.which == "all" {
        eprintln!("boot: the instrumented build with fully mapped 16 KiB stacks (stack_init_kib=16)");
        results.stack16 = twice("the 16 KiB-stack run", |_| {
            run_variant(&columns[0].variant, STACK16_BENCHES, "stack_init_kib=16", false)
        })?;
    }
    for &anchor in &opts.against {
        eprintln!("boot: the same operations in {} (twice)", anchor.name());
        let figures = twice(&format!("the {} benchmarks", anchor.name()), |_| against::measure(anchor))?;
        results.anchors.push((anchor, figures));
    }
    let mismatched = unit_mismatches(&results);
    ensure!(
        mismatched.is_empty(),
        "the comparison programs count other things than Prologue: {}",
        mismatched.join("; ")
    );

    let tables = table::markdown(&results);
    println!("\n{tables}");
    println!("Every build ran twice: the raw counts of every benchmark were identical.");
    let json_path = opts.json.clone().unwrap_or_else(|| kernel::workspace_root().join("target").join("bench.json"));
    std::fs::write(&json_path, table::json(&results)).with_context(|| format!("writing {}", json_path.display()))?;
    println!("JSON written to {}", json_path.display());
    if let Some(path) = &opts.markdown {
        std::fs::write(path, doc::document(&results, &tables)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("The benchmarks document written to {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(total: u64, ops: u64) -> RawFigure {
        per(total, ops, "op")
    }

    fn per(total: u64, ops: u64, thing: &str) -> RawFigure {
        RawFigure { total, ops, per_op: total as f64 / ops as f64, unit: "instructions".into(), per: thing.into() }
    }

    #[test]
    fn a_comparison_must_count_the_same_things() {
        let ours: Figures = [("yield".to_string(), per(100, 10, "switch"))].into();
        let same: Figures = [("yield".to_string(), per(500, 10, "switch"))].into();
        let other: Figures = [("yield".to_string(), per(500, 10, "op")), ("extra".to_string(), figure(1, 1))].into();
        let mut results = Results {
            which: "all".into(),
            columns: vec![("instrumented", ours)],
            stack16: Figures::new(),
            anchors: vec![(Anchor::Go, same)],
            about: BTreeMap::new(),
        };
        assert!(unit_mismatches(&results).is_empty());
        results.anchors.push((Anchor::LinuxPthreads, other));
        assert_eq!(unit_mismatches(&results), ["yield: instructions/op in linux, instructions/switch in Prologue"]);
    }

    #[test]
    fn differences_name_what_does_not_repeat() {
        let a: Figures = [("x".to_string(), figure(100, 10)), ("y".to_string(), figure(50, 5))].into();
        let mut b = a.clone();
        assert!(differences(&a, &b).is_empty());
        b.insert("y".into(), figure(51, 5));
        b.insert("z".into(), figure(1, 1));
        assert_eq!(differences(&a, &b), ["y", "z"]);
    }
}

//! The benchmark driver: runs the kernel's benchmarks on several kernel builds under
//! instruction counting, checks that runs agree, and reports a table, ratios and JSON.
//!
//! Every figure comes from a kernel line `bench NAME: VALUE UNIT`. Under `-icount shift=0` the
//! guest's time-stamp counter counts executed instructions, so figures are deterministic: the
//! instrumented build is run twice and the two runs must agree exactly.
//!
//! Builds compared, on the same workloads: `instrumented` (release, with the prologue hook),
//! `plain` (release, without it) and `always-preempt` (release, every prologue a preemption
//! point). One more run of the instrumented build maps each thread stack fully (16 KiB) at
//! spawn, to compare the default small initial stack (4 KiB, grown on demand) with a fully
//! mapped one: spawn+join, allocating a fresh stack, and the memory of an idle thread.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::image::{self, Firmware};
use crate::kernel::{self, Variant};
use crate::qemu::{RunConfig, run};

/// Figures of one run: benchmark name -> (value, unit).
pub type Figures = BTreeMap<String, (f64, String)>;

/// Parses the `bench NAME: VALUE UNIT` lines of a transcript.
pub fn parse(transcript: &str) -> Figures {
    transcript
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("bench ")?;
            let (name, figure) = rest.split_once(": ")?;
            let (value, unit) = figure.split_once(' ')?;
            Some((name.to_string(), (value.parse().ok()?, unit.to_string())))
        })
        .collect()
}

/// One column of the comparison.
struct Column {
    label: &'static str,
    variant: Variant,
    extra: &'static str,
}

/// Boots `variant` running `bench=which` (plus `extra` words) and returns its figures.
fn run_variant(variant: &Variant, which: &str, extra: &str, echo: bool) -> Result<Figures> {
    let elf = kernel::build(variant, true)?;
    let image = image::make(&elf, Firmware::Bios)?;
    let cfg = RunConfig {
        cmdline: format!("bench={which} preempt=off {extra}"),
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
    Ok(parse(&result.transcript))
}

/// Options of `boot bench`.
pub struct Options {
    pub which: String,
    /// Also run the plain and always-preempt builds and the 16 KiB-stack run.
    pub compare: bool,
    pub json: Option<std::path::PathBuf>,
    pub markdown: Option<std::path::PathBuf>,
}

/// Runs the benchmarks and prints the report; fails if two runs disagree.
pub fn bench(opts: &Options) -> Result<()> {
    let release = |features: &[&str], plain: bool| Variant {
        release: true,
        features: features.iter().map(|f| f.to_string()).collect(),
        plain,
    };
    let mut columns = vec![Column { label: "instrumented", variant: release(&[], false), extra: "" }];
    if opts.compare {
        columns.push(Column { label: "plain", variant: release(&[], true), extra: "" });
        columns.push(Column { label: "always-preempt", variant: release(&["always-preempt"], false), extra: "" });
    }
    let mut results: Vec<(&str, Figures)> = Vec::new();
    for column in &columns {
        eprintln!("boot: benchmarks on the {} build ({})", column.label, column.variant.name());
        results.push((column.label, run_variant(&column.variant, &opts.which, column.extra, true)?));
    }

    // Determinism: the instrumented build once more, silently; every figure must be equal.
    eprintln!("boot: running the instrumented build again to check that the figures repeat");
    let again = run_variant(&columns[0].variant, &opts.which, "", false)?;
    let differing: Vec<&String> =
        results[0].1.iter().filter(|(name, fig)| again.get(*name) != Some(fig)).map(|(name, _)| name).collect();
    let runs_agree = differing.is_empty();

    let mut stack16 = Figures::new();
    if opts.compare && opts.which == "all" {
        eprintln!("boot: the instrumented build again, with fully mapped 16 KiB stacks (stack_init_kib=16)");
        stack16 = run_variant(&columns[0].variant, STACK16_BENCHES, "stack_init_kib=16", false)?;
    }

    let table = table(&results, &stack16);
    println!("\n{table}");
    if runs_agree {
        println!("Two runs of the instrumented build gave identical figures.");
    } else {
        println!("Runs of the instrumented build differ in: {differing:?}");
    }
    let json = json(&opts.which, &results, &stack16, runs_agree);
    let json_path = opts.json.clone().unwrap_or_else(|| kernel::workspace_root().join("target").join("bench.json"));
    std::fs::write(&json_path, json).with_context(|| format!("writing {}", json_path.display()))?;
    println!("JSON written to {}", json_path.display());
    if let Some(path) = &opts.markdown {
        std::fs::write(path, &table).with_context(|| format!("writing {}", path.display()))?;
        println!("Table written to {}", path.display());
    }
    if !runs_agree {
        bail!("instruction counts differ between two identical runs: {differing:?}");
    }
    Ok(())
}

/// The benchmarks repeated with fully mapped 16 KiB stacks.
const STACK16_BENCHES: &str = "spawn_join,stack_alloc_free_fresh,idle_thread_memory";

/// A Markdown table: one row per benchmark, one column per build, then the ratios; then the
/// 16 KiB-stack comparison.
fn table(results: &[(&str, Figures)], stack16: &Figures) -> String {
    let mut out = String::new();
    let labels: Vec<&str> = results.iter().map(|(l, _)| *l).collect();
    let has = |label: &str| labels.contains(&label);
    let _ = write!(out, "| benchmark | unit |");
    for l in &labels {
        let _ = write!(out, " {l} |");
    }
    if has("plain") {
        let _ = write!(out, " instrumented / plain |");
    }
    if has("always-preempt") {
        let _ = write!(out, " always-preempt / instrumented |");
    }
    out.push('\n');
    out.push_str(&"|---".repeat(2 + labels.len() + usize::from(has("plain")) + usize::from(has("always-preempt"))));
    out.push_str("|\n");
    let value =
        |label: &str, name: &str| results.iter().find(|(l, _)| *l == label).and_then(|(_, f)| f.get(name)).map(|f| f.0);
    for (name, (_, unit)) in &results[0].1 {
        let _ = write!(out, "| {name} | {unit} |");
        for l in &labels {
            match value(l, name) {
                Some(v) => {
                    let _ = write!(out, " {v:.1} |");
                }
                None => out.push_str(" - |"),
            }
        }
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 && unit.starts_with("instructions") => format!(" {:.2} |", a / b),
            _ => " - |".to_string(),
        };
        if has("plain") {
            out.push_str(&ratio(value("instrumented", name), value("plain", name)));
        }
        if has("always-preempt") {
            out.push_str(&ratio(value("always-preempt", name), value("instrumented", name)));
        }
        out.push('\n');
    }
    if !stack16.is_empty() {
        let _ = writeln!(out, "\n| instrumented build | unit | 4 KiB initial stack (default) | 16 KiB, fully mapped |");
        out.push_str("|---|---|---|---|\n");
        for (name, (v16, unit)) in stack16 {
            let v4 = value("instrumented", name).map_or("-".to_string(), |v| format!("{v:.1}"));
            let _ = writeln!(out, "| {name} | {unit} | {v4} | {v16:.1} |");
        }
    }
    out
}

fn json(which: &str, results: &[(&str, Figures)], stack16: &Figures, runs_agree: bool) -> String {
    let mut out = String::new();
    let _ = write!(out, "{{\n  \"benchmarks\": \"{which}\",\n  \"runs_agree\": {runs_agree},\n  \"builds\": {{");
    let stack16_column = ("instrumented, stack_init_kib=16", stack16.clone());
    let columns = results.iter().chain((!stack16.is_empty()).then_some(&stack16_column));
    for (i, (label, figures)) in columns.enumerate() {
        let _ = write!(out, "{}\n    \"{label}\": {{", if i > 0 { "," } else { "" });
        for (j, (name, (value, unit))) in figures.iter().enumerate() {
            let _ = write!(
                out,
                "{}\n      \"{name}\": {{ \"value\": {value}, \"unit\": \"{unit}\" }}",
                if j > 0 { "," } else { "" }
            );
        }
        out.push_str("\n    }");
    }
    out.push_str("\n  }\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bench_lines() {
        let f = parse(
            "bench: 2 benchmarks\nbench yield: 97.5 instructions/op\nbench threads_max: 180000.0 threads\nnoise\n",
        );
        assert_eq!(f.len(), 2);
        assert_eq!(f["yield"], (97.5, "instructions/op".to_string()));
        assert_eq!(f["threads_max"].1, "threads");
    }
}

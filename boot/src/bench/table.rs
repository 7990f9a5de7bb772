//! The benchmark report as Markdown tables and as JSON.
//!
//! Table 1: one row per benchmark, one column per build, then what the hook costs (instrumented
//! minus plain with frame pointers), what frame pointers cost (plain with minus plain without),
//! and always-preempt over instrumented. Table 2 (with `--against`): Prologue beside Go and Linux,
//! with the ratios. Table 3: the default 4 KiB initial stack against a fully mapped 16 KiB one.

use std::fmt::Write as _;

use crate::bench::{Figures, Results};
use crate::figures::RawFigure;

fn cell(f: Option<&RawFigure>) -> String {
    f.map_or("-".to_string(), |f| format!("{:.1}", f.per_op))
}

fn difference(a: Option<&RawFigure>, b: Option<&RawFigure>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a.is_instructions() => format!("{:+.1}", a.per_op - b.per_op),
        _ => "-".to_string(),
    }
}

fn ratio(a: Option<&RawFigure>, b: Option<&RawFigure>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a.is_instructions() && b.per_op > 0.0 => format!("{:.2}", a.per_op / b.per_op),
        _ => "-".to_string(),
    }
}

fn column<'a>(results: &'a Results, label: &str) -> Option<&'a Figures> {
    results.columns.iter().find(|(l, _)| *l == label).map(|(_, f)| f)
}

/// All the tables.
pub fn markdown(results: &Results) -> String {
    let mut out = String::new();
    builds(&mut out, results);
    if !results.anchors.is_empty() {
        out.push('\n');
        anchors(&mut out, results);
    }
    if !results.stack16.is_empty() {
        out.push('\n');
        stack16(&mut out, results);
    }
    out
}

fn builds(out: &mut String, results: &Results) {
    let labels: Vec<&str> = results.columns.iter().map(|(l, _)| *l).collect();
    let compared = labels.len() > 1;
    let _ = write!(out, "| benchmark | unit |");
    for l in &labels {
        let _ = write!(out, " {l} |");
    }
    if compared {
        out.push_str(" hook | frame pointers | always-preempt / instrumented |");
    }
    out.push('\n');
    out.push_str(&"|---".repeat(2 + labels.len() + if compared { 3 } else { 0 }));
    out.push_str("|\n");
    let base = &results.columns[0].1;
    let get = |label: &str, name: &str| column(results, label).and_then(|f| f.get(name));
    for (name, first) in base {
        let _ = write!(out, "| {name} | {} |", first.unit_per());
        for l in &labels {
            let _ = write!(out, " {} |", cell(get(l, name)));
        }
        if compared {
            let _ = write!(
                out,
                " {} | {} | {} |",
                difference(get("instrumented", name), get("plain + fp", name)),
                difference(get("plain + fp", name), get("plain", name)),
                ratio(get("always-preempt", name), get("instrumented", name))
            );
        }
        out.push('\n');
    }
}

fn anchors(out: &mut String, results: &Results) {
    let _ = write!(out, "| operation | unit | Prologue |");
    for (anchor, _) in &results.anchors {
        let _ = write!(out, " {} | {} / Prologue |", anchor_label(anchor.name()), anchor_label(anchor.name()));
    }
    out.push('\n');
    out.push_str(&"|---".repeat(3 + 2 * results.anchors.len()));
    out.push_str("|\n");
    let prologue = &results.columns[0].1;
    for (name, ours) in prologue {
        if !results.anchors.iter().any(|(_, f)| f.contains_key(name)) {
            continue;
        }
        let _ = write!(out, "| {name} | {} | {:.1} |", ours.unit_per(), ours.per_op);
        for (_, figures) in &results.anchors {
            let theirs = figures.get(name);
            let _ = write!(out, " {} | {} |", cell(theirs), ratio(theirs, Some(ours)));
        }
        out.push('\n');
    }
}

/// How an anchor is named in tables.
pub fn anchor_label(name: &str) -> &'static str {
    match name {
        "go" => "Go 1.19",
        _ => "Linux pthreads",
    }
}

fn stack16(out: &mut String, results: &Results) {
    out.push_str("| instrumented build | unit | 4 KiB initial stack (default) | 16 KiB, fully mapped |\n");
    out.push_str("|---|---|---|---|\n");
    let base = &results.columns[0].1;
    for (name, v16) in &results.stack16 {
        let _ = writeln!(out, "| {name} | {} | {} | {:.1} |", v16.unit_per(), cell(base.get(name)), v16.per_op);
    }
}

fn json_figures(out: &mut String, figures: &Figures, indent: &str) {
    for (j, (name, f)) in figures.iter().enumerate() {
        let _ = write!(
            out,
            "{}\n{indent}\"{name}\": {{ \"total\": {}, \"per\": {}, \"value\": {}, \"unit\": \"{}\" }}",
            if j > 0 { "," } else { "" },
            f.total,
            f.ops,
            f.per_op,
            f.unit_per()
        );
    }
}

/// Everything as JSON: raw totals and divisors as well as the quotients.
pub fn json(results: &Results) -> String {
    let mut out = String::new();
    let _ =
        write!(out, "{{\n  \"benchmarks\": \"{}\",\n  \"repeated_exactly\": true,\n  \"builds\": {{", results.which);
    let stack16 = ("instrumented, stack_init_kib=16", &results.stack16);
    let columns = results.columns.iter().map(|(l, f)| (*l, f)).chain((!results.stack16.is_empty()).then_some(stack16));
    for (i, (label, figures)) in columns.enumerate() {
        let _ = write!(out, "{}\n    \"{label}\": {{", if i > 0 { "," } else { "" });
        json_figures(&mut out, figures, "      ");
        out.push_str("\n    }");
    }
    out.push_str("\n  },\n  \"against\": {");
    for (i, (anchor, figures)) in results.anchors.iter().enumerate() {
        let _ = write!(out, "{}\n    \"{}\": {{", if i > 0 { "," } else { "" }, anchor.name());
        json_figures(&mut out, figures, "      ");
        out.push_str("\n    }");
    }
    out.push_str("\n  }\n}\n");
    out
}

//! The grade table, and the same results as JSON for a course's systems.
//!
//! The table has one line per item: points earned of points possible, the verdict, the set-up
//! and the check; each item that lost its points is followed by its reason (cut at
//! `REASON_WIDTH` characters: the JSON has it whole). Then each lab's total and, for several
//! labs, the sum.

use std::fmt::Write;

use super::grade::LabGrade;

/// Characters of a reason shown in the table.
const REASON_WIDTH: usize = 160;

/// The grade table of `grades`.
pub fn table(grades: &[LabGrade]) -> String {
    let mut out = String::new();
    for lab in grades {
        let _ = writeln!(out, "lab {}: {}", lab.number, lab.title);
        let width = lab.items.iter().map(|i| i.setup.len()).max().unwrap_or(0).max("set-up".len());
        let _ = writeln!(out, "  {:>6}  {:<7}  {:<width$}  test", "points", "verdict", "set-up");
        for item in &lab.items {
            let points = format!("{}/{}", item.points, item.max);
            let _ = writeln!(out, "  {points:>6}  {:<7}  {:<width$}  {}", item.judged.word(), item.setup, item.check);
            if let Some(reason) = item.judged.reason() {
                let _ = writeln!(out, "  {:>6}  {:<7}  {:<width$}  why: {}", "", "", "", cut(reason));
            }
        }
        let full = if lab.points() == lab.max() { "full marks" } else { "below full marks" };
        let _ =
            writeln!(out, "  {:>6}  total for lab {} ({full})", format!("{}/{}", lab.points(), lab.max()), lab.number);
        out.push('\n');
    }
    if grades.len() > 1 {
        let (points, max) = totals(grades);
        let _ = writeln!(out, "total: {points}/{max}");
    }
    out
}

/// Points earned and possible over `grades`.
pub fn totals(grades: &[LabGrade]) -> (u32, u32) {
    grades.iter().fold((0, 0), |(p, m), lab| (p + lab.points(), m + lab.max()))
}

/// `reason` on one line, at most `REASON_WIDTH` characters.
fn cut(reason: &str) -> String {
    let one_line = reason.lines().next().unwrap_or("").trim();
    if one_line.chars().count() <= REASON_WIDTH {
        return one_line.to_string();
    }
    let head: String = one_line.chars().take(REASON_WIDTH - 3).collect();
    format!("{head}...")
}

/// A JSON string literal.
fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The results as JSON: per lab its points, maximum and items (set-up, check, points, maximum,
/// verdict, reason or null), then the totals; `seconds` is how long the grading took.
pub fn json(grades: &[LabGrade], tree: &str, seconds: f64) -> String {
    let mut out = String::from("{\n");
    let _ = writeln!(out, "  \"tree\": {},", string(tree));
    out.push_str("  \"labs\": [");
    for (i, lab) in grades.iter().enumerate() {
        let _ = write!(
            out,
            "{}\n    {{ \"lab\": {}, \"title\": {}, \"points\": {}, \"max\": {}, \"items\": [",
            if i > 0 { "," } else { "" },
            lab.number,
            string(lab.title),
            lab.points(),
            lab.max()
        );
        for (j, item) in lab.items.iter().enumerate() {
            let reason = item.judged.reason().map_or("null".to_string(), string);
            let _ = write!(
                out,
                "{}\n      {{ \"setup\": {}, \"check\": {}, \"points\": {}, \"max\": {}, \"verdict\": {}, \"reason\": {reason} }}",
                if j > 0 { "," } else { "" },
                string(item.setup),
                string(&item.check),
                item.points,
                item.max,
                string(item.judged.word()),
            );
        }
        out.push_str("\n    ] }");
    }
    let (points, max) = totals(grades);
    let _ = write!(out, "\n  ],\n  \"points\": {points},\n  \"max\": {max},\n  \"seconds\": {seconds:.1}\n}}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labs::grade::{ItemGrade, Judged};

    fn sample() -> Vec<LabGrade> {
        let item = |check: &str, max, judged: Judged| ItemGrade {
            setup: "smp2",
            check: check.into(),
            max,
            points: if judged == Judged::Pass { max } else { 0 },
            judged,
        };
        vec![LabGrade {
            number: 2,
            title: "the hook",
            items: vec![
                item("a::b", 3, Judged::Pass),
                item("a::c", 2, Judged::Hang("watchdog: test a::c did not finish within 40 s (hung)".into())),
                item("a::\"d\"", 1, Judged::Fail("line one\nline two".into())),
            ],
        }]
    }

    #[test]
    fn the_table_names_each_loss_and_the_total() {
        let t = table(&sample());
        assert!(t.contains("   3/3  pass     smp2    a::b"), "{t}");
        assert!(t.contains("   0/2  HANG     smp2    a::c"), "{t}");
        assert!(t.contains("why: watchdog: test a::c did not finish within 40 s (hung)"), "{t}");
        assert!(t.contains("why: line one\n"), "only the first line of a reason: {t}");
        assert!(t.contains("   3/6  total for lab 2 (below full marks)"), "{t}");
    }

    #[test]
    fn json_escapes_and_sums() {
        let j = json(&sample(), "/tmp/x", 1.5);
        assert!(j.contains("\"check\": \"a::\\\"d\\\"\""), "{j}");
        assert!(j.contains("\"reason\": \"line one\\nline two\""), "{j}");
        assert!(j.contains("\"reason\": null"), "{j}");
        assert!(j.contains("\"points\": 3,\n  \"max\": 6,\n  \"seconds\": 1.5"), "{j}");
        // Balanced braces and brackets (a cheap structural check).
        let count = |c| j.chars().filter(|&x| x == c).count();
        assert_eq!((count('{'), count('[')), (count('}'), count(']')));
    }
}

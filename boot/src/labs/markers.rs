//! Lab markers: the regions of the source that a lab's students write themselves.
//!
//! In Rust files a region is
//!
//! ```text
//!     // LAB 3 BEGIN: what the student writes here (one line)
//!     // LAB 3 STUB: code that replaces the region in the lab 3 copy (any number of lines)
//!     ...the reference solution...
//!     // LAB 3 END
//! ```
//!
//! In Markdown files the same lines are HTML comments (`<!-- LAB 3 BEGIN: ... -->`), so a page can
//! hide a passage that shows the answer. The `STUB` lines must follow their `BEGIN` directly; with
//! none, the stub is `todo!("lab N: what")` (Rust) or a sentence saying the passage was left out
//! (Markdown). A stub must compile and must make the behaviour absent without hanging: `todo!`
//! where a thread may die alone, a "nothing happens" stub where the code runs on the scheduler's
//! own stack or in a trap handler.
//!
//! Invariants, checked for every file before anything is written: every `BEGIN` has an `END` of
//! the same lab, regions do not nest, `STUB` lines appear only at the head of their region, and a
//! line that looks like a marker but is not a valid one (`// lab 2 begin`, `// LAB 2 BEGN`) is an
//! error, so that a typo can never leave an answer in a student's copy.

use std::fmt;
use std::ops::Range;

use anyhow::{Result, bail};

/// Which comment syntax a file's markers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// `// LAB N BEGIN: ...` lines (Rust).
    Rust,
    /// `<!-- LAB N BEGIN: ... -->` lines (Markdown).
    Markdown,
}

/// One marked region of a file (line numbers count from 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub lab: u32,
    /// What the student writes (the text after `BEGIN:`).
    pub what: String,
    /// The `BEGIN` line.
    pub begin: usize,
    /// The `END` line.
    pub end: usize,
    /// The stub's lines, without their marker prefix.
    pub stub: Vec<String>,
    /// The indentation of the `BEGIN` line, for the stub.
    pub indent: String,
}

impl Region {
    /// The lines strictly between `BEGIN` and `END` (the stub lines and the solution).
    pub fn inside(&self) -> Range<usize> {
        self.begin + 1..self.end
    }
}

/// A marker line, parsed.
#[derive(Debug, PartialEq, Eq)]
enum Marker {
    Begin { lab: u32, what: String },
    Stub { lab: u32, code: String },
    End { lab: u32 },
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Marker::Begin { lab, .. } => write!(f, "LAB {lab} BEGIN"),
            Marker::Stub { lab, .. } => write!(f, "LAB {lab} STUB"),
            Marker::End { lab } => write!(f, "LAB {lab} END"),
        }
    }
}

/// The comment text of `line` if it is a comment that starts with the word `LAB` (any case)
/// followed by a number: a marker, or a malformed one. `None` for any other line.
fn marker_text(line: &str, syntax: Syntax) -> Option<&str> {
    let trimmed = line.trim();
    let inner = match syntax {
        Syntax::Rust => {
            let rest = trimmed.strip_prefix("//")?;
            if rest.starts_with('/') || rest.starts_with('!') {
                return None; // doc comments are prose
            }
            rest.trim()
        }
        Syntax::Markdown => {
            let rest = trimmed.strip_prefix("<!--")?;
            match rest.strip_suffix("-->") {
                Some(inner) => inner.trim(),
                // An unclosed comment: a marker in it is malformed (the empty text never parses).
                None => return looks_like_lab(rest.trim()).then_some(""),
            }
        }
    };
    looks_like_lab(inner).then_some(inner)
}

/// Does `text` look like a marker: the word `LAB` (any case), a number, and then a word in capitals
/// (`BEGN`) or one of the three keywords in any case (`begin`)? Prose such as `lab 3: the steal`
/// or `LAB 2 asks for` does not.
fn looks_like_lab(text: &str) -> bool {
    let mut words = text.split_whitespace();
    let (Some(lab), Some(number), Some(keyword)) = (words.next(), words.next(), words.next()) else {
        return false;
    };
    let keyword = keyword.trim_end_matches(':');
    lab.eq_ignore_ascii_case("lab")
        && number.starts_with(|c: char| c.is_ascii_digit())
        && !keyword.is_empty()
        && (keyword.chars().all(|c| c.is_ascii_uppercase())
            || ["begin", "end", "stub"].iter().any(|k| keyword.eq_ignore_ascii_case(k)))
}

/// Parses a marker's comment text (`LAB 3 BEGIN: what`, `LAB 3 STUB: code`, `LAB 3 END`).
fn parse_marker(text: &str) -> Option<Marker> {
    let rest = text.strip_prefix("LAB ")?;
    let (number, rest) = rest.split_once(' ')?;
    let lab: u32 = number.parse().ok().filter(|n| (1..=99).contains(n))?;
    if rest == "END" {
        return Some(Marker::End { lab });
    }
    if rest == "BEGIN" {
        return Some(Marker::Begin { lab, what: String::new() });
    }
    if let Some(what) = rest.strip_prefix("BEGIN: ") {
        return Some(Marker::Begin { lab, what: what.trim().to_string() });
    }
    if let Some(code) = rest.strip_prefix("STUB:") {
        return Some(Marker::Stub { lab, code: code.strip_prefix(' ').unwrap_or(code).to_string() });
    }
    None
}

/// The regions of `text` (the contents of `file`, named in errors), in order.
pub fn parse(file: &str, text: &str, syntax: Syntax) -> Result<Vec<Region>> {
    let mut regions = Vec::new();
    // The open region, and whether its head (where STUB lines go) is over.
    let mut open: Option<(Region, bool)> = None;
    for (n, line) in text.lines().enumerate() {
        let at = || format!("{file}:{}", n + 1);
        let Some(comment) = marker_text(line, syntax) else {
            if let Some((_, head_over)) = &mut open {
                *head_over = true;
            }
            continue;
        };
        let Some(marker) = parse_marker(comment) else {
            bail!(
                "{}: malformed lab marker `{}` (expected `LAB N BEGIN: what`, `LAB N STUB: code` or `LAB N END`, N from 1 to 99)",
                at(),
                line.trim()
            );
        };
        match (marker, open.take()) {
            (Marker::Begin { lab, what }, None) => {
                let indent = line[..line.len() - line.trim_start().len()].to_string();
                open = Some((Region { lab, what, begin: n, end: n, stub: Vec::new(), indent }, false));
            }
            (marker, None) => bail!("{}: {marker} outside any region (no BEGIN before it)", at()),
            (Marker::Begin { lab, .. }, Some((outer, _))) => bail!(
                "{}: LAB {lab} BEGIN inside the LAB {} region opened at line {}: regions do not nest",
                at(),
                outer.lab,
                outer.begin + 1
            ),
            (Marker::Stub { lab, code }, Some((mut region, false))) if lab == region.lab => {
                region.stub.push(code);
                open = Some((region, false));
            }
            (marker @ Marker::Stub { .. }, Some((region, _))) => bail!(
                "{}: {marker} in the LAB {} region opened at line {}: STUB lines belong directly after their own BEGIN",
                at(),
                region.lab,
                region.begin + 1
            ),
            (Marker::End { lab }, Some((mut region, _))) if lab == region.lab => {
                region.end = n;
                regions.push(region);
            }
            (Marker::End { lab }, Some((region, _))) => bail!(
                "{}: LAB {lab} END closes the LAB {} region opened at line {}",
                at(),
                region.lab,
                region.begin + 1
            ),
        }
    }
    if let Some((region, _)) = open {
        bail!("{file}:{}: LAB {} BEGIN has no END", region.begin + 1, region.lab);
    }
    Ok(regions)
}

/// The lines that replace region `region`'s inside in a student's copy.
pub fn stub_lines(region: &Region, syntax: Syntax) -> Vec<String> {
    if !region.stub.is_empty() {
        return region.stub.iter().map(|code| format!("{}{code}", region.indent)).collect();
    }
    let what = if region.what.is_empty() { "write this part".to_string() } else { region.what.clone() };
    match syntax {
        Syntax::Rust => vec![format!("{}todo!({:?})", region.indent, format!("lab {}: {what}", region.lab))],
        Syntax::Markdown => vec![format!(
            "{}*(Left out of the lab {} copy: this passage shows what lab {} asks you to write.)*",
            region.indent, region.lab, region.lab
        )],
    }
}

/// `text` with the inside of every region of `lab` replaced: by its stub (`Fill::Stub`), by
/// nothing (`Fill::Nothing`, to compare two trees outside a lab's regions), or by the text a
/// closure gives for each region in turn (`Fill::With`, for tests of known-wrong solutions).
pub fn rewrite(text: &str, regions: &[Region], lab: u32, syntax: Syntax, fill: &mut Fill<'_>) -> String {
    replace_regions(text, regions, lab, true, |region, inside| match fill {
        Fill::Stub => stub_lines(region, syntax),
        Fill::Nothing => Vec::new(),
        Fill::With(f) => f(region, inside),
    })
}

/// `text` with every region of `lab` replaced, marker lines included, by its stub
/// (`Unmark::ToStub`) or by its solution (`Unmark::ToSolution`): what a find-and-fix lab's
/// regions become in a copy, where nothing may show that the code there is special.
pub fn unmark(text: &str, regions: &[Region], lab: u32, syntax: Syntax, to: Unmark) -> String {
    replace_regions(text, regions, lab, false, |region, inside| match to {
        Unmark::ToStub => stub_lines(region, syntax),
        // The inside starts with the STUB lines; the solution follows them.
        Unmark::ToSolution => inside[region.stub.len()..].iter().map(|l| l.to_string()).collect(),
    })
}

/// `text` with the inside of every region of `lab` replaced by what `with` makes of it (the
/// region and its inside lines); the `BEGIN` and `END` lines stay if `keep_markers`. A final
/// newline stays as it was.
fn replace_regions(
    text: &str,
    regions: &[Region],
    lab: u32,
    keep_markers: bool,
    mut with: impl FnMut(&Region, &[&str]) -> Vec<String>,
) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut next = 0;
    for region in regions.iter().filter(|r| r.lab == lab) {
        let (before, after) =
            if keep_markers { (region.begin + 1, region.end) } else { (region.begin, region.end + 1) };
        out.extend(lines[next..before].iter().map(|l| l.to_string()));
        out.extend(with(region, &lines[region.inside()]));
        next = after;
    }
    out.extend(lines[next..].iter().map(|l| l.to_string()));
    let mut joined = out.join("\n");
    if text.ends_with('\n') {
        joined.push('\n');
    }
    joined
}

/// What `unmark` leaves in place of a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmark {
    ToStub,
    ToSolution,
}

/// What `rewrite` puts inside a lab's regions.
pub enum Fill<'f> {
    Stub,
    Nothing,
    With(&'f mut dyn FnMut(&Region, &[&str]) -> Vec<String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(lines: &[&str]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    const BEGIN: &str = "    // LAB 2 BEGIN: poison the guard";
    const END: &str = "    // LAB 2 END";

    #[test]
    fn finds_regions_and_their_stubs() {
        let text = src(&["fn f() {", BEGIN, "    // LAB 2 STUB: let _ = 1;", "    real();", END, "}"]);
        let regions = parse("f.rs", &text, Syntax::Rust).unwrap();
        assert_eq!(regions.len(), 1);
        let r = &regions[0];
        assert_eq!((r.lab, r.what.as_str(), r.begin, r.end, r.indent.as_str()), (2, "poison the guard", 1, 4, "    "));
        assert_eq!(r.stub, ["let _ = 1;"]);
        let copy = rewrite(&text, &regions, 2, Syntax::Rust, &mut Fill::Stub);
        assert_eq!(copy, src(&["fn f() {", BEGIN, "    let _ = 1;", END, "}"]));
        // Another lab's regions are kept whole.
        assert_eq!(rewrite(&text, &regions, 1, Syntax::Rust, &mut Fill::Stub), text);
        assert_eq!(rewrite(&text, &regions, 2, Syntax::Rust, &mut Fill::Nothing), src(&["fn f() {", BEGIN, END, "}"]));
    }

    #[test]
    fn unmarking_leaves_no_marker() {
        let text = src(&["fn f() {", BEGIN, "    // LAB 2 STUB: bug();", "    real();", END, "}"]);
        let regions = parse("f.rs", &text, Syntax::Rust).unwrap();
        assert_eq!(unmark(&text, &regions, 2, Syntax::Rust, Unmark::ToStub), src(&["fn f() {", "    bug();", "}"]));
        assert_eq!(
            unmark(&text, &regions, 2, Syntax::Rust, Unmark::ToSolution),
            src(&["fn f() {", "    real();", "}"])
        );
        assert_eq!(unmark(&text, &regions, 3, Syntax::Rust, Unmark::ToStub), text, "another lab's regions stay");
    }

    #[test]
    fn the_default_stub_is_a_todo() {
        let text = src(&[BEGIN, "    real();", END]);
        let regions = parse("f.rs", &text, Syntax::Rust).unwrap();
        let copy = rewrite(&text, &regions, 2, Syntax::Rust, &mut Fill::Stub);
        assert_eq!(copy, src(&[BEGIN, "    todo!(\"lab 2: poison the guard\")", END]));
    }

    #[test]
    fn markdown_regions_are_html_comments() {
        let text = src(&["intro", "<!-- LAB 4 BEGIN: the answer -->", "the answer", "<!-- LAB 4 END -->", "outro"]);
        let regions = parse("p.md", &text, Syntax::Markdown).unwrap();
        assert_eq!(regions.len(), 1);
        let copy = rewrite(&text, &regions, 4, Syntax::Markdown, &mut Fill::Stub);
        assert!(copy.contains("Left out of the lab 4 copy") && !copy.contains("the answer\n"), "{copy}");
        // Rust-style lines in Markdown are prose (a lab page may quote a marker).
        assert!(parse("p.md", &src(&["    // LAB 9 BEGN"]), Syntax::Markdown).unwrap().is_empty());
    }

    fn error(lines: &[&str]) -> String {
        format!("{:#}", parse("f.rs", &src(lines), Syntax::Rust).unwrap_err())
    }

    #[test]
    fn unbalanced_or_nested_markers_are_errors() {
        assert!(error(&[BEGIN, "x"]).contains("f.rs:1: LAB 2 BEGIN has no END"));
        assert!(error(&["x", END]).contains("f.rs:2: LAB 2 END outside any region"));
        assert!(error(&[BEGIN, "    // LAB 3 BEGIN", END]).contains("f.rs:2: LAB 3 BEGIN inside the LAB 2 region"));
        assert!(error(&[BEGIN, "    // LAB 3 END"]).contains("f.rs:2: LAB 3 END closes the LAB 2 region"));
        assert!(error(&[BEGIN, "x", "    // LAB 2 STUB: y", END]).contains("STUB lines belong directly after"));
        assert!(error(&["    // LAB 2 STUB: y"]).contains("LAB 2 STUB outside any region"));
    }

    #[test]
    fn lookalikes_are_errors_and_prose_is_not() {
        assert!(error(&["// LAB 2 BEGN"]).contains("malformed lab marker `// LAB 2 BEGN`"));
        assert!(error(&["// lab 2 begin"]).contains("malformed lab marker"));
        assert!(error(&["// LAB 0 BEGIN"]).contains("malformed"));
        assert!(error(&["// LAB 2 END extra"]).contains("malformed"));
        let prose = src(&[
            "/// LAB 2 BEGIN in a doc comment",
            "//! LAB 2",
            "// Labs are fun",
            "// label 2",
            "let lab = 2;",
            "// lab 3: the stub of a copy",
            "// LAB 2 asks for the hook",
        ]);
        assert!(parse("f.rs", &prose, Syntax::Rust).unwrap().is_empty());
    }
}

//! Graded labs: student copies (`cargo run -- lab-copy LAB DIR`) and the grader
//! (`cargo run -- grade LAB|all [--json FILE] [--tree DIR]`).
//!
//! The kernel marks each lab's solution with `// LAB N BEGIN` ... `// LAB N END` (`markers`). A
//! student copy is the tree with one lab's regions replaced by stubs that compile (`copy`); the
//! student writes the regions back. In a find-and-fix lab the stub is a bug, and no copy shows
//! where it is. The grader (`grade`) runs the lab's checks (`catalog`) in
//! their set-ups and prints a table of points (`report`); it exits with failure below full
//! marks. `docs/labs/README.md` is the instructor's page.
//!
//! Modules: `markers` (finding regions, stubbing them), `copy` (writing a copy, and checking a
//! collected one), `catalog` (what each lab runs and is worth), `grade` (running and judging),
//! `report` (the table and the JSON).

pub mod catalog;
pub mod copy;
pub mod grade;
pub mod markers;
pub mod report;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use catalog::{LABS, Lab};

/// Parses a lab argument: a lab number, or `all` (for the grader).
pub fn parse_labs(text: &str, all_allowed: bool) -> Result<Vec<&'static Lab>> {
    let numbers = || LABS.iter().map(|l| l.number.to_string()).collect::<Vec<_>>().join(", ");
    if text == "all" {
        if !all_allowed {
            bail!("lab-copy makes a copy for one lab: give its number ({})", numbers());
        }
        return Ok(LABS.iter().collect());
    }
    let number: u32 = text.parse().map_err(|_| {
        anyhow::anyhow!(
            "'{text}' is not a lab: expected a lab number ({}){}",
            numbers(),
            if all_allowed { " or all" } else { "" }
        )
    })?;
    match catalog::lab(number) {
        Some(lab) => Ok(vec![lab]),
        None => bail!("there is no lab {number}: the labs are {}", numbers()),
    }
}

/// `lab-copy LAB DIR`: writes the student copy of lab `lab` into `dir`.
pub fn lab_copy(lab: &str, dir: &Path) -> Result<()> {
    let lab = parse_labs(lab, false)?[0];
    let root = crate::kernel::workspace_root();
    let tree = copy::Tree::read(&root)?;
    let files = copy::write_copy(&tree, lab.number, dir, &mut markers::Fill::Stub)?;
    let (regions, in_files) = tree.count(lab.number);
    let done = match lab.kind {
        catalog::Kind::WriteBack => "replaced by stubs".to_string(),
        catalog::Kind::FindAndFix => {
            let notes = tree.count_in(lab.number, markers::Syntax::Markdown);
            format!("replaced, unmarked: {} by the bug, {notes} passage(s) of notes left out", regions - notes)
        }
    };
    println!(
        "lab-copy: lab {} ({}) written to {}: {files} files, {regions} regions in {in_files} files {done}",
        lab.number,
        lab.title,
        dir.display()
    );
    println!("lab-copy: the student reads {} and grades the work with `cargo run -- grade {}`", lab.page, lab.number);
    Ok(())
}

/// What `grade` was asked for.
pub struct GradeOptions {
    /// `LAB` or `all`.
    pub which: String,
    /// Also write the results as JSON here.
    pub json: Option<PathBuf>,
    /// Grade this tree (a collected student copy) instead of this one.
    pub tree: Option<PathBuf>,
    /// With `tree`: grade it even if it changed files outside the graded labs' regions.
    pub allow_changes: bool,
}

/// `grade LAB|all`: grades, prints the table, writes the JSON; true for full marks.
pub fn grade_command(options: &GradeOptions) -> Result<bool> {
    let labs = parse_labs(&options.which, true)?;
    let source = match &options.tree {
        None => grade::Source::this_tree(),
        Some(dir) => {
            let dir = dir.canonicalize().with_context(|| format!("the tree to grade, {}", dir.display()))?;
            check_collected(&dir, &labs, options.allow_changes)?;
            grade::Source::tree(dir)
        }
    };
    let started = Instant::now();
    let grades = grade::grade(&source, &labs, &mut |line| eprintln!("grade: {line}"))?;
    let seconds = started.elapsed().as_secs_f64();
    print!("{}", report::table(&grades));
    println!("graded in {seconds:.0} s");
    if let Some(path) = &options.json {
        std::fs::write(path, report::json(&grades, &source.root.display().to_string(), seconds))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("JSON written to {}", path.display());
    }
    let (points, max) = report::totals(&grades);
    Ok(points == max)
}

/// Refuses to grade a collected tree that changed what the kernel build reads outside the
/// regions of the graded labs (its tests, say), unless `allow` says so; lists the kernel changes
/// a find-and-fix lab allows.
fn check_collected(dir: &Path, labs: &[&Lab], allow: bool) -> Result<()> {
    let ours = copy::Tree::read(&crate::kernel::workspace_root())?;
    let theirs = copy::Tree::read(dir).with_context(|| format!("reading the markers of {}", dir.display()))?;
    let numbers: Vec<u32> = labs.iter().map(|l| l.number).collect();
    let changes = copy::changes(&ours, &theirs, &numbers)?;
    let shown = |list: &[String]| {
        let mut lines: Vec<String> = list.iter().take(10).map(|c| format!("  {c}")).collect();
        if list.len() > 10 {
            lines.push(format!("  ... and {} more", list.len() - 10));
        }
        lines.join("\n")
    };
    if !changes.allowed.is_empty() {
        eprintln!(
            "grade: {} changed this kernel code (allowed in this lab: read it):\n{}",
            dir.display(),
            shown(&changes.allowed)
        );
    }
    if changes.refused.is_empty() {
        return Ok(());
    }
    if allow {
        eprintln!("grade: warning: {} differs outside the graded regions:\n{}", dir.display(), shown(&changes.refused));
        return Ok(());
    }
    bail!(
        "{} differs from this tree outside the regions of the graded labs (so its tests or build may differ):\n{}\n\
         grade it from the commit it was copied from, or pass --allow-changes",
        dir.display(),
        shown(&changes.refused)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_arguments() {
        assert_eq!(parse_labs("2", true).unwrap()[0].number, 2);
        assert_eq!(parse_labs("all", true).unwrap().len(), LABS.len());
        let e = parse_labs("9", true).unwrap_err().to_string();
        assert!(e.contains("there is no lab 9: the labs are 1, 2, 3, 4, 5"), "{e}");
        let e = parse_labs("two", true).unwrap_err().to_string();
        assert!(e.contains("'two' is not a lab") && e.contains("or all"), "{e}");
        let e = parse_labs("all", false).unwrap_err().to_string();
        assert!(e.contains("one lab"), "{e}");
    }

    #[test]
    fn every_lab_page_names_its_checks() {
        let root = crate::kernel::workspace_root();
        let index = std::fs::read_to_string(root.join("docs/labs/README.md")).unwrap();
        for lab in &LABS {
            let page = std::fs::read_to_string(root.join(lab.page)).unwrap_or_else(|e| panic!("{}: {e}", lab.page));
            for item in lab.items {
                let name = item.check.name();
                let name = if let catalog::Check::Test(test) = item.check { test.to_string() } else { name };
                assert!(page.contains(&name), "{} does not name the graded check {name}", lab.page);
            }
            assert!(
                page.contains(&format!("{} points", lab.max_points())),
                "{} does not give the lab's points",
                lab.page
            );
            let file = lab.page.rsplit('/').next().unwrap();
            assert!(index.contains(file), "docs/labs/README.md does not link {file}");
        }
    }

    #[test]
    fn this_tree_has_regions_for_every_lab() {
        let tree = copy::Tree::read(&crate::kernel::workspace_root()).unwrap();
        assert_eq!(tree.labs(), LABS.iter().map(|l| l.number).collect::<Vec<_>>());
    }
}

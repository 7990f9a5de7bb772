//! Proof that the lab grades mean something (`boot::labs`): the reference tree scores full marks on
//! every lab; each lab 1-4 student copy builds, boots, scores below full marks on its own lab and
//! full marks on the other three; the lab 5 copy (find and fix: a kernel with a bug) scores below
//! full marks on lab 5 and shows no lab 5 marker; and known-wrong solutions lose exactly the
//! points they should.
//!
//! Copies are written under `target/lab-copies/` and share one build directory,
//! `target/lab-copies/kernel/VARIANT`, seeded from the reference tree's (`cp -a`, keeping the
//! times): the standard library and the dependencies are then not rebuilt, only the kernel crate.
//! Cargo decides that from file times (a path package is identified relative to its workspace, so
//! two copies look like the same package), so every copy is written just before it is built, and
//! each build is checked to be newer than the copy's files. Trials run one at a time (one lock):
//! they share that directory, and one QEMU at a time is what a small machine can take.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use boot::labs::catalog::{Kind, LABS, Lab};
use boot::labs::copy::{Tree, write_copy};
use boot::labs::grade::{LabGrade, Source, grade};
use boot::labs::markers::{Fill, Region};
use boot::{Variant, kernel};
use libtest_mimic::{Arguments, Failed, Trial};

/// One trial at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn main() {
    let args = Arguments::from_args();
    let mut trials = vec![trial("reference_scores_full_marks_on_every_lab", reference)];
    for lab in &LABS {
        trials
            .push(trial(&format!("lab{}_copy_loses_only_its_own_lab", lab.number), move |log| student_copy(log, lab)));
    }
    trials.push(trial("known_wrong_hook_overwriting_a_poison_loses_the_count", hook_overwrites_poison));
    trials.push(trial("known_wrong_steal_taking_all_loses_the_halving", steal_takes_all));
    trials.push(trial("known_wrong_growth_dropping_a_poison_loses_the_poison_test", growth_drops_poison));
    libtest_mimic::run(&args, trials).exit();
}

/// A trial that holds `SERIAL` while it runs. What it prints goes to its log
/// (`target/lab-copies/NAME.log`), not to the terminal, where it would land between other
/// trials' lines; a failure names the log.
fn trial(name: &str, f: impl FnOnce(&mut Log) -> Result<()> + Send + 'static) -> Trial {
    let name = name.to_string();
    Trial::test(name.clone(), move || {
        let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let started = Instant::now();
        let mut log = Log(String::new());
        let result = f(&mut log);
        log.say(&format!("took {:.0} s", started.elapsed().as_secs_f64()));
        let path = copies().join(format!("{name}.log"));
        let saved = std::fs::create_dir_all(copies()).and_then(|()| std::fs::write(&path, &log.0));
        result.map_err(|e| {
            let log = match saved {
                Ok(()) => format!("the grader's output: {}", path.display()),
                Err(err) => format!("the grader's output could not be saved to {}: {err}", path.display()),
            };
            Failed::from(format!("{e:#}\n{log}"))
        })
    })
}

/// What a trial would print.
struct Log(String);

impl Log {
    fn say(&mut self, line: &str) {
        self.0.push_str(line);
        self.0.push('\n');
    }
}

fn root() -> PathBuf {
    kernel::workspace_root()
}

/// Where the copies and their shared builds live.
fn copies() -> PathBuf {
    root().join("target").join("lab-copies")
}

/// The kernel variants `labs` build.
fn variants(labs: &[&Lab]) -> Vec<Variant> {
    let mut v: Vec<Variant> = Vec::new();
    for setup in labs.iter().flat_map(|l| l.items).map(|i| i.setup) {
        let variant = Variant::with_features(setup.features);
        if !v.contains(&variant) {
            v.push(variant);
        }
    }
    v
}

/// Grades `labs` of `source`, logging the grader's steps and its table.
fn grade_labs(log: &mut Log, source: &Source, labs: &[&'static Lab]) -> Result<Vec<LabGrade>> {
    let grades = grade(source, labs, &mut |line| log.say(&format!("grade: {line}")))?;
    log.say(&boot::labs::report::table(&grades));
    Ok(grades)
}

fn full(g: &LabGrade) -> bool {
    g.points() == g.max()
}

/// The losses of `g`, for messages: `setup check: reason`.
fn losses(g: &LabGrade) -> String {
    let lost = g.items.iter().filter(|i| i.points < i.max);
    lost.map(|i| format!("\n  {} {}: {}", i.setup, i.check, i.judged.reason().unwrap_or(""))).collect()
}

fn reference(log: &mut Log) -> Result<()> {
    let labs: Vec<&'static Lab> = LABS.iter().collect();
    for g in grade_labs(log, &Source::this_tree(), &labs)? {
        ensure!(full(&g), "the reference solution lost points on lab {}:{}", g.number, losses(&g));
    }
    Ok(())
}

/// The shared build directory of the copies, seeded once from the reference tree's builds.
fn shared_targets() -> Result<PathBuf> {
    let shared = copies().join("kernel");
    for variant in variants(&LABS.iter().collect::<Vec<_>>()) {
        let to = shared.join(variant.name());
        if to.exists() {
            continue;
        }
        kernel::build(&variant, true)?; // the reference build, to copy from
        let from = root().join("target").join("kernel").join(variant.name());
        std::fs::create_dir_all(&shared)?;
        let status =
            std::process::Command::new("cp").arg("-a").arg(&from).arg(&to).status().context("running cp -a")?;
        ensure!(status.success(), "cp -a {} {} failed: {status}", from.display(), to.display());
    }
    Ok(shared)
}

/// Writes a copy of this tree for `lab` (its regions filled by `fill`) into a fresh directory
/// `name`, builds the kernel variants that grading `graded` needs in the shared directory, and
/// returns where it is.
fn fresh_copy(lab: u32, name: &str, fill: &mut Fill<'_>, graded: &[&Lab]) -> Result<Source> {
    let targets = shared_targets()?;
    let dir = copies().join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing the old {}", dir.display()))?;
    }
    let tree = Tree::read(&root())?;
    write_copy(&tree, lab, &dir, fill)?;
    let written = SystemTime::now();
    for variant in variants(graded) {
        let elf = kernel::build_in(&dir, &targets, &variant, true)?;
        let built = std::fs::metadata(&elf)?.modified()?;
        ensure!(
            built >= written,
            "cargo did not rebuild the kernel ({}) of {}: its ELF is older than the copy",
            variant.name(),
            dir.display()
        );
    }
    Ok(Source { root: dir, targets })
}

fn student_copy(log: &mut Log, lab: &'static Lab) -> Result<()> {
    // Each copy is graded on the labs of its kind (`boot::labs::catalog`): a lab 1-4 copy on
    // labs 1-4; the lab 5 copy, a kernel with a bug, on lab 5 alone.
    let labs: Vec<&'static Lab> = match lab.kind {
        Kind::WriteBack => LABS.iter().filter(|l| l.kind == Kind::WriteBack).collect(),
        Kind::FindAndFix => vec![lab],
    };
    let source = fresh_copy(lab.number, &format!("lab-{}", lab.number), &mut Fill::Stub, &labs)?;
    if lab.kind == Kind::FindAndFix {
        let shown = Tree::read(&source.root)?.labs();
        ensure!(!shown.contains(&lab.number), "the lab {} copy shows its markers", lab.number);
    }
    let grades = grade_labs(log, &source, &labs)?;
    for g in &grades {
        if g.number == lab.number {
            ensure!(!full(g), "the lab {} copy (stubs only) scored full marks on its own lab", lab.number);
            ensure!(
                g.items.iter().any(|i| i.judged.word() != "NOT RUN"),
                "the lab {} copy ran none of its own checks:{}",
                lab.number,
                losses(g)
            );
        } else {
            ensure!(full(g), "the lab {} copy lost points on lab {}:{}", lab.number, g.number, losses(g));
        }
    }
    Ok(())
}

/// A known-wrong solution for `lab`: each of its regions is filled with `edit` applied to the
/// reference solution's lines (the STUB lines left out). `lost` names the checks (by the end of
/// their names) that must lose their points; every other check of the lab must keep them.
fn known_wrong(
    log: &mut Log,
    lab: u32,
    name: &str,
    edit: fn(&Region, Vec<String>) -> Vec<String>,
    lost: &[&str],
) -> Result<()> {
    let mut changed = false;
    let mut fill = |region: &Region, inside: &[&str]| -> Vec<String> {
        let solution: Vec<String> = inside
            .iter()
            .filter(|l| !l.trim_start().starts_with(&format!("// LAB {} STUB:", region.lab)))
            .map(|l| l.to_string())
            .collect();
        let edited = edit(region, solution.clone());
        changed |= edited != solution;
        edited
    };
    let graded = boot::labs::catalog::lab(lab).expect("a lab of the catalog");
    let source = fresh_copy(lab, name, &mut Fill::With(&mut fill), &[graded])?;
    ensure!(
        changed,
        "the known-wrong edit '{name}' changed nothing: the lab {lab} regions no longer have the code it edits"
    );
    let grades = grade_labs(log, &source, &[graded])?;
    let g = &grades[0];
    for item in &g.items {
        let should_lose = lost.iter().any(|l| item.check.ends_with(l));
        if should_lose && item.points == item.max {
            bail!("'{name}' kept the points of {} {}", item.setup, item.check);
        }
        if !should_lose && item.points < item.max {
            bail!("'{name}' lost the points of {} {}: {}", item.setup, item.check, item.judged.reason().unwrap_or(""));
        }
    }
    ensure!(
        g.items.iter().any(|i| lost.iter().any(|l| i.check.ends_with(l))),
        "no check of lab {} is named {lost:?}",
        g.number
    );
    Ok(())
}

/// Removes the lines containing `needle` and the `drop_after` lines after each.
fn without(lines: Vec<String>, needle: &str, drop_after: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = 0;
    for line in lines {
        if skip > 0 {
            skip -= 1;
        } else if line.contains(needle) {
            skip = drop_after;
        } else {
            out.push(line);
        }
    }
    out
}

/// Lab 2: the hook poisons the guard even when it holds a poison already (no check against
/// `STACK_POISON_MIN`): the count mode's poison is overwritten, so the hook-count test fails.
fn hook_overwrites_poison(log: &mut Log) -> Result<()> {
    // The constant goes too: an assembly operand that nothing uses does not build.
    let edit = |_: &Region, lines| without(without(lines, "{poison_min}", 1), "poison_min = const", 0);
    known_wrong(log, 2, "wrong-hook", edit, &["hook_runs_in_every_prologue"])
}

/// Lab 3: a thief takes the whole ring instead of its older half.
fn steal_takes_all(log: &mut Log) -> Result<()> {
    known_wrong(
        log,
        3,
        "wrong-steal",
        |_, lines| without(lines, "let n = n - n / 2;", 0),
        &["steal_takes_the_older_half"],
    )
}

/// Lab 4: a growth step that always stores the new guard, dropping a poison that was there.
fn growth_drops_poison(log: &mut Log) -> Result<()> {
    known_wrong(
        log,
        4,
        "wrong-growth",
        |_, lines| {
            let mut out = Vec::new();
            let mut skip_close = false;
            for line in lines {
                if line.contains("if !is_poison(g.stackguard0") {
                    skip_close = true; // keep the store inside, drop the condition
                } else if skip_close && line.trim() == "}" {
                    skip_close = false;
                } else {
                    out.push(line);
                }
            }
            out
        },
        &["a_growth_keeps_a_poisoned_guard"],
    )
}

//! Student copies (`cargo run -- lab-copy LAB DIR`), and the check that a collected copy changed
//! nothing outside its lab's regions (`grade --tree DIR`; for a find-and-fix lab, nothing of the
//! tests).
//!
//! A copy is this source tree without `target/` and `.git` (so it has no build products and no
//! history to read the answers from), with the regions of one lab replaced by their stubs
//! (`markers`); the regions of the other labs stay, with their solutions. A find-and-fix lab's
//! regions (`catalog::Kind::FindAndFix`) are never marked in a copy: in Rust files its own copy
//! gets their stub (the bug), every other copy their solution; in Markdown (instructor notes,
//! which name the bug) every copy gets the stub. Such a Rust region must have STUB lines.
//! Marked files are the kernel's Rust files and the Markdown pages under `docs/`. Every marked
//! file is parsed before anything is written: an error (a bad marker, a lab without regions, a
//! `DIR` that exists and is not empty) leaves nothing behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use super::catalog::find_and_fix_labs;
use super::markers::{self, Fill, Region, Syntax, Unmark};

/// Where markers are looked for: (directory under the root, file extension, syntax).
const MARKED: [(&str, &str, Syntax); 2] = [("kernel", "rs", Syntax::Rust), ("docs", "md", Syntax::Markdown)];

/// Top-level entries a copy leaves out.
const LEFT_OUT: [&str; 2] = ["target", ".git"];

/// A source tree's files (relative paths, sorted), and the regions of its marked files.
pub struct Tree {
    pub root: PathBuf,
    pub files: Vec<PathBuf>,
    /// Marked files with at least one region: relative path -> (syntax, regions).
    pub marked: BTreeMap<PathBuf, (Syntax, Vec<Region>)>,
}

impl Tree {
    /// Reads the tree at `root`: every file outside `target/` and `.git`, and the regions of every
    /// marked file (any marker error is returned, naming the file and line).
    pub fn read(root: &Path) -> Result<Tree> {
        let mut files = Vec::new();
        walk(root, Path::new(""), &mut files)?;
        files.sort();
        let mut marked = BTreeMap::new();
        let hidden = find_and_fix_labs();
        for file in &files {
            let Some(syntax) = syntax_of(file) else { continue };
            let text = read_text(root, file)?;
            let regions = markers::parse(&file.display().to_string(), &text, syntax)?;
            if let Some(r) =
                regions.iter().find(|r| syntax == Syntax::Rust && hidden.contains(&r.lab) && r.stub.is_empty())
            {
                bail!(
                    "{}:{}: lab {} is a find-and-fix lab: its region needs STUB lines (the bug); a todo! stub would \
                     show the students where to look",
                    file.display(),
                    r.begin + 1,
                    r.lab
                );
            }
            if !regions.is_empty() {
                marked.insert(file.clone(), (syntax, regions));
            }
        }
        Ok(Tree { root: root.to_path_buf(), files, marked })
    }

    /// The labs that have regions in this tree, in order.
    pub fn labs(&self) -> Vec<u32> {
        let mut labs: Vec<u32> = self.marked.values().flat_map(|(_, rs)| rs.iter().map(|r| r.lab)).collect();
        labs.sort();
        labs.dedup();
        labs
    }

    /// How many regions lab `lab` has, and in how many files.
    pub fn count(&self, lab: u32) -> (usize, usize) {
        let per_file = self.marked.values().map(|(_, rs)| rs.iter().filter(|r| r.lab == lab).count());
        per_file.fold((0, 0), |(regions, files), n| (regions + n, files + usize::from(n > 0)))
    }

    /// How many regions lab `lab` has in files of `syntax`.
    pub fn count_in(&self, lab: u32, syntax: Syntax) -> usize {
        let of_syntax = self.marked.values().filter(|(s, _)| *s == syntax);
        of_syntax.map(|(_, rs)| rs.iter().filter(|r| r.lab == lab).count()).sum()
    }

    /// The text of `file` in the copy for `lab`: `fill` inside the regions of `lab`, and the
    /// find-and-fix labs' regions unmarked (the file as it is if it has no regions).
    pub fn rewritten(&self, file: &Path, lab: u32, fill: &mut Fill<'_>) -> Result<String> {
        let mut text = read_text(&self.root, file)?;
        let Some((syntax, regions)) = self.marked.get(file) else { return Ok(text) };
        if !find_and_fix_labs().contains(&lab) {
            text = markers::rewrite(&text, regions, lab, *syntax, fill);
        }
        unmark_find_and_fix(file, text, *syntax, Some(lab))
    }
}

/// `text` (of `file`) with the find-and-fix labs' regions unmarked, as the copy for `copy_lab`
/// has them: that lab's Rust regions become their bug, the other labs' their solution, and
/// Markdown regions (instructor notes, which name the bug) always their stub.
fn unmark_find_and_fix(file: &Path, mut text: String, syntax: Syntax, copy_lab: Option<u32>) -> Result<String> {
    for lab in find_and_fix_labs() {
        // Re-parsed after each lab: the line numbers move.
        let regions = markers::parse(&file.display().to_string(), &text, syntax)?;
        let to = if copy_lab == Some(lab) || syntax == Syntax::Markdown { Unmark::ToStub } else { Unmark::ToSolution };
        text = markers::unmark(&text, &regions, lab, syntax, to);
    }
    Ok(text)
}

/// The marker syntax of `file` if it is a marked file.
fn syntax_of(file: &Path) -> Option<Syntax> {
    let top = file.components().next()?.as_os_str().to_str()?;
    let ext = file.extension()?.to_str()?;
    MARKED.iter().find(|(dir, e, _)| *dir == top && *e == ext).map(|(_, _, syntax)| *syntax)
}

fn read_text(root: &Path, file: &Path) -> Result<String> {
    std::fs::read_to_string(root.join(file)).with_context(|| format!("reading {}", root.join(file).display()))
}

/// Collects the files under `root/dir` (relative to `root`), leaving out `LEFT_OUT` at the top.
fn walk(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let path = root.join(dir);
    for entry in std::fs::read_dir(&path).with_context(|| format!("listing {}", path.display()))? {
        let entry = entry.with_context(|| format!("listing {}", path.display()))?;
        let name = entry.file_name();
        if dir.as_os_str().is_empty() && LEFT_OUT.iter().any(|l| name == *l) {
            continue;
        }
        let rel = dir.join(&name);
        let kind = entry.file_type().with_context(|| format!("reading {}", entry.path().display()))?;
        if kind.is_dir() {
            walk(root, &rel, files)?;
        } else if kind.is_file() {
            files.push(rel);
        }
        // Symbolic links and other special files are left out: the repository has none.
    }
    Ok(())
}

/// Checks that `lab` is one of the labs of `tree`.
pub fn check_lab(tree: &Tree, lab: u32) -> Result<()> {
    let labs = tree.labs();
    ensure!(
        labs.contains(&lab),
        "lab {lab} has no marked regions in {} (labs with regions: {})",
        tree.root.display(),
        labs.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

/// Refuses a destination that exists and is not empty, or that lies inside the source tree
/// (outside its `target/`): a copy must never copy itself.
fn check_destination(source: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        ensure!(dir.is_dir(), "{} exists and is not a directory", dir.display());
        let mut entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
        ensure!(entries.next().is_none(), "{} exists and is not empty: choose a new directory", dir.display());
    }
    let source = source.canonicalize().with_context(|| format!("resolving {}", source.display()))?;
    // The destination may not exist yet: resolve its nearest existing ancestor.
    let mut probe = if dir.is_absolute() { dir.to_path_buf() } else { std::env::current_dir()?.join(dir) };
    let mut tail = Vec::new();
    while !probe.exists() {
        tail.push(probe.file_name().map(|n| n.to_os_string()).unwrap_or_default());
        if !probe.pop() {
            break;
        }
    }
    let mut resolved = probe.canonicalize().with_context(|| format!("resolving {}", probe.display()))?;
    resolved.extend(tail.iter().rev());
    if let Ok(inside) = resolved.strip_prefix(&source)
        && !inside.starts_with("target")
    {
        bail!(
            "{} is inside the source tree {}: put the copy elsewhere (or under its target/)",
            dir.display(),
            source.display()
        );
    }
    Ok(())
}

/// Writes the copy of `tree` for `lab` into `dir` (created; it must not exist or be empty), the
/// regions of `lab` filled by `fill`. Returns the number of files written.
pub fn write_copy(tree: &Tree, lab: u32, dir: &Path, fill: &mut Fill<'_>) -> Result<usize> {
    check_lab(tree, lab)?;
    check_destination(&tree.root, dir)?;
    // Everything rewritten in memory first: a failure leaves no half-written copy.
    let mut rewritten = BTreeMap::new();
    for file in tree.marked.keys() {
        rewritten.insert(file.clone(), tree.rewritten(file, lab, fill)?);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for file in &tree.files {
        let to = dir.join(file);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        match rewritten.get(file) {
            Some(text) => std::fs::write(&to, text).with_context(|| format!("writing {}", to.display()))?,
            None => {
                std::fs::copy(tree.root.join(file), &to).with_context(|| format!("copying {}", file.display()))?;
            }
        }
    }
    Ok(tree.files.len())
}

/// What a kernel build of a tree reads besides `kernel/`: the workspace's manifest and lock file,
/// the toolchain pin and cargo's configuration.
fn builds_from(file: &Path) -> bool {
    file.starts_with("kernel")
        || file.starts_with(".cargo")
        || ["Cargo.toml", "Cargo.lock", "rust-toolchain.toml"].iter().any(|f| file == Path::new(f))
}

/// What a collected copy changed, in the files a kernel build reads (`builds_from`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Changes that the graded labs do not allow: outside their regions, or a test edited.
    pub refused: Vec<String>,
    /// Changes a find-and-fix lab allows (kernel code other than the tests), for the grader to
    /// list: the fix, and anything else the students touched.
    pub allowed: Vec<String>,
}

/// Compares a collected copy (`theirs`) with the copy of `ours` for `labs`, outside the regions
/// of those labs (a write-back lab's students write only inside them). A find-and-fix lab is
/// graded alone: its students may change, add or remove any kernel source file but the tests
/// (`is_test_code`), and those changes are listed as allowed.
pub fn changes(ours: &Tree, theirs: &Tree, labs: &[u32]) -> Result<Changes> {
    let fixing = labs.iter().any(|l| find_and_fix_labs().contains(l));
    ensure!(
        !fixing || labs.len() == 1,
        "lab(s) {} are find-and-fix labs: grade a collected copy for one of them alone (its students may change any \
         kernel code, so no other lab's regions could be checked in the same tree)",
        list(&find_and_fix_labs())
    );
    let may_fix = |file: &Path| fixing && file.starts_with("kernel/src") && !is_test_code(file);
    let built = |t: &Tree| -> Vec<PathBuf> { t.files.iter().filter(|f| builds_from(f)).cloned().collect() };
    let (a, b) = (built(ours), built(theirs));
    let mut changes = Changes::default();
    let mut note = |file: &Path, what: String| {
        if may_fix(file) { changes.allowed.push(what) } else { changes.refused.push(what) }
    };
    for file in a.iter().filter(|f| !b.contains(f)) {
        note(file, format!("{} is missing", file.display()));
    }
    for file in b.iter().filter(|f| !a.contains(f)) {
        note(file, format!("{} was added", file.display()));
    }
    for file in a.iter().filter(|f| b.contains(f)) {
        if handed_out(ours, file, labs)? != handed_out(theirs, file, labs)? {
            let what = if may_fix(file) {
                format!("{} changed", file.display())
            } else {
                format!("{} changed outside the lab {} regions", file.display(), list(labs))
            };
            note(file, what);
        }
    }
    Ok(changes)
}

/// `file` of `t` as the copy for `labs` shows it (find-and-fix regions unmarked), with the insides
/// of the graded write-back labs' regions removed: two trees that agree on this differ only
/// where the students write.
fn handed_out(t: &Tree, file: &Path, labs: &[u32]) -> Result<String> {
    let mut text = read_text(&t.root, file)?;
    let Some(syntax) = syntax_of(file) else { return Ok(text) };
    let hidden = find_and_fix_labs();
    text = unmark_find_and_fix(file, text, syntax, labs.iter().copied().find(|l| hidden.contains(l)))?;
    for &lab in labs.iter().filter(|l| !hidden.contains(l)) {
        // Re-parsed after each lab: the line numbers move.
        let regions = markers::parse(&file.display().to_string(), &text, syntax)?;
        text = markers::rewrite(&text, &regions, lab, syntax, &mut Fill::Nothing);
    }
    Ok(text)
}

/// Is `file` (a path under `kernel/src`) test code: in-kernel tests, their runner, or the torture
/// test and its invariants?
fn is_test_code(file: &Path) -> bool {
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "tests.rs"
        || name.ends_with("_tests.rs")
        || file.starts_with("kernel/src/ktest")
        || file.starts_with("kernel/src/stress")
}

/// `1`, `1, 2`, ...
fn list(labs: &[u32]) -> String {
    labs.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small tree in a fresh temporary directory: `kernel/src/a.rs` with a lab 1 and a lab 2
    /// region, a doc page, and a file under `target/` that a copy must leave out.
    fn sample(name: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("prologue-labs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let write = |rel: &str, text: &str| {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write(
            "kernel/src/a.rs",
            "fn a() {\n    // LAB 1 BEGIN: one\n    one();\n    // LAB 1 END\n    // LAB 2 BEGIN: two\n    // LAB 2 STUB: let _ = 2;\n    two();\n    // LAB 2 END\n}\n",
        );
        write("docs/p.md", "text\n<!-- LAB 2 BEGIN: answer -->\nthe answer\n<!-- LAB 2 END -->\n");
        write("target/junk", "build output");
        write("README.md", "readme\n");
        root
    }

    #[test]
    fn a_copy_stubs_one_lab_and_keeps_the_others() {
        let root = sample("copy");
        let tree = Tree::read(&root).unwrap();
        assert_eq!(tree.labs(), [1, 2]);
        assert_eq!(tree.count(2), (2, 2));
        let dir = root.join("target").join("copy2");
        assert_eq!(write_copy(&tree, 2, &dir, &mut Fill::Stub).unwrap(), 3);
        let a = std::fs::read_to_string(dir.join("kernel/src/a.rs")).unwrap();
        assert!(a.contains("    one();") && a.contains("    let _ = 2;") && !a.contains("two();"), "{a}");
        let page = std::fs::read_to_string(dir.join("docs/p.md")).unwrap();
        assert!(!page.contains("the answer"), "{page}");
        assert!(!dir.join("target").exists(), "the copy has the source's target/");
        // The copy differs from the source only inside lab 2's regions.
        let copy = Tree::read(&dir).unwrap();
        assert_eq!(changes(&tree, &copy, &[2]).unwrap(), Changes::default());
        let refused = changes(&tree, &copy, &[1]).unwrap().refused;
        assert_eq!(refused, ["kernel/src/a.rs changed outside the lab 1 regions"]);
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Lab 5 (find and fix): its copy has the bug and no marker; another lab's copy has the fix
    /// and no marker, and its instructor notes are left out of every copy; a clean copy of
    /// another lab is accepted as it is; a collected lab 5 copy may change or add kernel code
    /// anywhere but in the tests, and is graded alone.
    #[test]
    fn a_find_and_fix_lab_is_never_marked() {
        let root = sample("hidden");
        let fix =
            "fn c() {\n    // LAB 5 BEGIN: the fix\n    // LAB 5 STUB: buggy();\n    fixed();\n    // LAB 5 END\n}\n";
        std::fs::write(root.join("kernel/src/c.rs"), fix).unwrap();
        std::fs::write(root.join("docs/n.md"), "<!-- LAB 5 BEGIN: notes -->\nthe bug is in c\n<!-- LAB 5 END -->\n")
            .unwrap();
        std::fs::create_dir_all(root.join("kernel/src/sync")).unwrap();
        std::fs::write(root.join("kernel/src/sync/tests.rs"), "fn t() {}\n").unwrap();
        let tree = Tree::read(&root).unwrap();
        let five = root.join("target").join("copy5");
        write_copy(&tree, 5, &five, &mut Fill::Stub).unwrap();
        assert_eq!(std::fs::read_to_string(five.join("kernel/src/c.rs")).unwrap(), "fn c() {\n    buggy();\n}\n");
        let one = root.join("target").join("copy1");
        write_copy(&tree, 1, &one, &mut Fill::Stub).unwrap();
        assert_eq!(std::fs::read_to_string(one.join("kernel/src/c.rs")).unwrap(), "fn c() {\n    fixed();\n}\n");
        for copy in [&one, &five] {
            let notes = std::fs::read_to_string(copy.join("docs/n.md")).unwrap();
            assert!(!notes.contains("the bug is in c") && !notes.contains("LAB 5"), "{notes}");
        }
        assert_eq!(changes(&tree, &Tree::read(&one).unwrap(), &[1]).unwrap(), Changes::default());
        // The student fixes c.rs, touches a.rs and adds a test file of their own: allowed, and
        // listed. Editing an existing test is refused.
        std::fs::write(five.join("kernel/src/c.rs"), "fn c() {\n    fixed_differently();\n}\n").unwrap();
        std::fs::write(five.join("kernel/src/a.rs"), "fn a() {}\n").unwrap();
        std::fs::write(five.join("kernel/src/join_race.rs"), "fn mine() {}\n").unwrap();
        let got = changes(&tree, &Tree::read(&five).unwrap(), &[5]).unwrap();
        assert!(got.refused.is_empty(), "{got:?}");
        assert_eq!(
            got.allowed,
            ["kernel/src/join_race.rs was added", "kernel/src/a.rs changed", "kernel/src/c.rs changed"]
        );
        std::fs::write(five.join("kernel/src/sync/tests.rs"), "fn t() { weakened() }\n").unwrap();
        let refused = changes(&tree, &Tree::read(&five).unwrap(), &[5]).unwrap().refused;
        assert_eq!(refused, ["kernel/src/sync/tests.rs changed outside the lab 5 regions"]);
        let e = changes(&tree, &Tree::read(&five).unwrap(), &[1, 5]).unwrap_err().to_string();
        assert!(e.contains("alone"), "{e}");
        // A find-and-fix region without its bug would become a todo! naming the spot.
        std::fs::write(root.join("kernel/src/d.rs"), "// LAB 5 BEGIN: x\nfixed();\n// LAB 5 END\n").unwrap();
        let e = format!("{:#}", Tree::read(&root).err().unwrap());
        assert!(e.contains("kernel/src/d.rs:1: lab 5 is a find-and-fix lab"), "{e}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn bad_requests_are_refused_and_write_nothing() {
        let root = sample("refuse");
        let tree = Tree::read(&root).unwrap();
        let dir = root.join("target").join("c");
        let err = write_copy(&tree, 7, &dir, &mut Fill::Stub).unwrap_err().to_string();
        assert!(err.contains("lab 7 has no marked regions") && err.contains("1, 2"), "{err}");
        assert!(!dir.exists());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("x"), "").unwrap();
        let err = write_copy(&tree, 1, &dir, &mut Fill::Stub).unwrap_err().to_string();
        assert!(err.contains("exists and is not empty"), "{err}");
        let err = write_copy(&tree, 1, &root.join("kernel").join("copy"), &mut Fill::Stub).unwrap_err().to_string();
        assert!(err.contains("inside the source tree"), "{err}");
        std::fs::write(root.join("kernel/src/b.rs"), "// LAB 1 BEGIN: open\n").unwrap();
        let err = format!("{:#}", Tree::read(&root).err().unwrap());
        assert!(err.contains("kernel/src/b.rs:1: LAB 1 BEGIN has no END"), "{err}");
        let _ = std::fs::remove_dir_all(&root);
    }
}

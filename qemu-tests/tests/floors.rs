//! The kernel's floors, checked against its code (no QEMU): every module imports only from its
//! own floor and the floors below it, as the floor table in `docs/architecture.md` says, except
//! the imports that table lists as allowed; import circles stay inside the knot the page names;
//! and every kernel file stays readable (an opening comment, at most 500 lines).
//!
//! What counts as an import is every path the code names from the crate root: `use crate::...`
//! lines (with their `{...}` groups expanded), paths written inline (`crate::sched::sleep(..)`),
//! the kernel's own macros (`crate::println!` is the console's), and, inside a module, the names
//! of its child modules and `super::`. Test code (`tests.rs`, `*_tests.rs`, `ktest/helpers.rs`)
//! belongs to the top floor, whatever folder it sits in, and is not checked.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

/// The floor table and the knot, read from `docs/architecture.md`.
struct Plan {
    /// Top-level module (`main` for the crate root) -> floor number.
    floors: BTreeMap<String, u32>,
    /// Allowed upward imports: (importing file, imported module path).
    allowed: BTreeSet<(String, String)>,
    /// The files of the one circle allowed.
    knot: BTreeSet<String>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

/// The lines between `<!-- NAME -->` and `<!-- /NAME -->`.
fn section<'a>(doc: &'a str, name: &str) -> Result<&'a str> {
    let open = format!("<!-- {name} -->");
    let close = format!("<!-- /{name} -->");
    let start = doc.find(&open).with_context(|| format!("docs/architecture.md has no `{open}` marker"))?;
    let end = doc[start..].find(&close).with_context(|| format!("docs/architecture.md has no `{close}` marker"))?;
    Ok(&doc[start + open.len()..start + end])
}

/// The `code` spans of a Markdown table cell.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// The data rows of a Markdown table, as cells.
fn table_rows(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('|') && !l.starts_with("|---") && !l.starts_with("| ---"))
        .skip(1) // the header
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect()
}

fn read_plan(doc: &str) -> Result<Plan> {
    let mut floors = BTreeMap::new();
    for row in table_rows(section(doc, "floors")?) {
        ensure!(row.len() >= 3, "a floor table row needs floor | name | modules: {row:?}");
        let floor: u32 = row[0].parse().with_context(|| format!("floor number `{}`", row[0]))?;
        for module in code_spans(row[2]) {
            ensure!(floors.insert(module.clone(), floor).is_none(), "module `{module}` is on two floors");
        }
    }
    ensure!(!floors.is_empty(), "the floor table lists no module");
    let mut allowed = BTreeSet::new();
    for row in table_rows(section(doc, "allowed-upward")?) {
        ensure!(row.len() >= 3, "an allowed-import row needs file | imports | why: {row:?}");
        let (file, target) = (code_spans(row[0]), code_spans(row[1]));
        ensure!(file.len() == 1 && target.len() == 1, "an allowed-import row names one file and one module: {row:?}");
        ensure!(!row[2].is_empty(), "allowed import {} -> {} says not why", file[0], target[0]);
        allowed.insert((file[0].clone(), target[0].clone()));
    }
    let knot: BTreeSet<String> = code_spans(section(doc, "knot")?).into_iter().collect();
    Ok(Plan { floors, allowed, knot })
}

/// One kernel source file.
struct Source {
    /// Path from `kernel/src`, e.g. `sched/mod.rs`.
    path: String,
    /// Its module path, e.g. `sched` (`main` for the crate root).
    module: String,
    text: String,
}

fn module_of(path: &str) -> String {
    let p = path.trim_end_matches(".rs");
    let p = p.strip_suffix("/mod").unwrap_or(p);
    if p == "main" { "main".into() } else { p.replace('/', "::") }
}

fn is_test_code(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or(path);
    file == "tests.rs" || file.ends_with("_tests.rs") || path == "ktest/helpers.rs"
}

fn sources() -> Result<Vec<Source>> {
    let src = root().join("kernel/src");
    let mut out = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(&src)?.to_string_lossy().replace('\\', "/");
                let text = fs::read_to_string(&path)?;
                out.push(Source { module: module_of(&rel), path: rel, text });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// `text` without comments and with string and character literals blanked (a `//` or a path in
/// a string is not code).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            // A string; raw strings (`r#"...`) are rare in paths that matter and are blanked too.
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Expands one `use` tree (the text after `use crate::`) into whole paths.
fn expand_use(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim().trim_end_matches("::");
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let base = if head.is_empty() { prefix.to_string() } else { join(prefix, head) };
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand_use(&base, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand_use(&base, &inner[start..], out);
    } else if !tree.is_empty() {
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        out.push(if path == "self" { prefix.to_string() } else { join(prefix, path) });
    }
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() { b.to_string() } else { format!("{a}::{b}") }
}

/// Every path named from the crate root in `code`: `use crate::...` trees and inline paths.
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use crate::") {
        let after = &rest[at + "use crate::".len()..];
        let end = after.find(';').unwrap_or(after.len());
        expand_use("", &after[..end], &mut out);
        rest = &after[end..];
    }
    let b = code.as_bytes();
    let mut i = 0;
    while let Some(found) = code[i..].find("crate::") {
        let start = i + found;
        i = start + "crate::".len();
        if start > 0 && (is_ident_byte(b[start - 1]) || b[start - 1] == b'$') {
            continue; // `$crate::` inside a macro body: the macro's own crate, resolved where used
        }
        let mut end = i;
        while end < b.len() && (is_ident_byte(b[end]) || (b[end] == b':' && b.get(end + 1) == Some(&b':'))) {
            end += if b[end] == b':' { 2 } else { 1 };
        }
        let path = code[i..end].trim_end_matches("::");
        if !path.is_empty() && !(b.get(end) == Some(&b'{')) {
            out.push(path.to_string());
        }
    }
    out
}

/// Every path named relative to `prefix` (`super::`) in `code`: `use` trees and inline paths,
/// without the prefix.
fn relative_paths(code: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = code.as_bytes();
    for (start, _) in code.match_indices(prefix) {
        if start > 0 && (is_ident_byte(b[start - 1]) || b[start - 1] == b':') {
            continue;
        }
        let after = &code[start + prefix.len()..];
        let end = after.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(after.len());
        if after[end..].starts_with('{') {
            let close = after.find(';').unwrap_or(after.len());
            expand_use("", &after[..close], &mut out);
        } else {
            let path = after[..end].trim_end_matches("::");
            if !path.is_empty() {
                out.push(path.to_string());
            }
        }
    }
    out
}

/// The module (file) a crate path lands in: its longest prefix that is a module, or, for a
/// macro (`println`), the module that defines it.
fn resolve(path: &str, modules: &BTreeSet<String>, macros: &BTreeMap<String, String>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    for n in (1..=parts.len()).rev() {
        let m = parts[..n].join("::");
        if modules.contains(&m) {
            return Some(m);
        }
    }
    macros.get(parts[0]).cloned()
}

fn floor_of(module: &str, plan: &Plan) -> Option<u32> {
    let top = module.split("::").next().unwrap_or(module);
    plan.floors.get(top).copied()
}

/// The crate's own `macro_rules!` (exported at the root): name -> defining module.
fn macros(sources: &[Source]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for s in sources {
        for piece in s.text.split("macro_rules!").skip(1) {
            let name: String = piece.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            out.insert(name, s.module.clone());
        }
    }
    out
}

/// Every module each file imports (test code left out).
fn imports(sources: &[Source]) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = sources.iter().map(|s| s.module.clone()).collect();
    let macros = macros(sources);
    let mut out = BTreeMap::new();
    for s in sources.iter().filter(|s| !is_test_code(&s.path)) {
        let code = code_only(&s.text);
        let mut targets = BTreeSet::new();
        for path in crate_paths(&code) {
            if let Some(m) = resolve(&path, &modules, &macros) {
                targets.insert(m);
            }
        }
        // Child modules named without `crate::` (a parent using its children), and `super::`.
        let children = modules.iter().filter(|m| m.rsplit_once("::").map(|(p, _)| p) == Some(s.module.as_str()));
        for child in children {
            let name = child.rsplit("::").next().unwrap_or(child);
            let needle = format!("{name}::");
            let b = code.as_bytes();
            if code.match_indices(&needle).any(|(i, _)| i == 0 || !(is_ident_byte(b[i - 1]) || b[i - 1] == b':')) {
                targets.insert(child.clone());
            }
        }
        if let Some((parent, _)) = s.module.rsplit_once("::") {
            for path in relative_paths(&code, "super::") {
                if let Some(m) = resolve(&join(parent, &path), &modules, &macros) {
                    targets.insert(m);
                }
            }
        }
        targets.remove(&s.module);
        out.insert(s.path.clone(), targets);
    }
    out
}

fn path_of(module: &str, sources: &[Source]) -> String {
    sources.iter().find(|s| s.module == module).map_or_else(|| module.to_string(), |s| s.path.clone())
}

/// Circles of files (strongly connected components with more than one file).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    // Reachability by repeated search: the graph is small (under a hundred files).
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for m in graph.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    todo.push(m.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> = graph.keys().map(|k| (k, reach(k))).collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for (a, from_a) in &reached {
        if out.iter().any(|c| c.contains(*a)) {
            continue;
        }
        let circle: BTreeSet<String> =
            from_a.iter().filter(|b| reached.get(b).is_some_and(|r| r.contains(*a))).cloned().collect();
        if circle.len() > 1 {
            out.push(circle);
        }
    }
    out
}

fn check() -> Result<()> {
    let doc = fs::read_to_string(root().join("docs/architecture.md")).context("reading docs/architecture.md")?;
    let plan = read_plan(&doc)?;
    let sources = sources()?;
    let mut problems = Vec::new();

    for s in &sources {
        let top = s.module.split("::").next().unwrap_or(&s.module);
        if !plan.floors.contains_key(top) {
            problems.push(format!("kernel/src/{}: module `{top}` is on no floor of docs/architecture.md", s.path));
        }
        let lines = s.text.lines().count();
        if lines > 500 {
            problems.push(format!("kernel/src/{}: {lines} lines (at most 500)", s.path));
        }
        if !s.text.trim_start().starts_with("//!") {
            problems.push(format!("kernel/src/{}: does not open with a `//!` comment saying what lives there", s.path));
        }
    }

    let imports = imports(&sources);
    let mut allowed_used = BTreeSet::new();
    for (file, targets) in &imports {
        let from = module_of(file);
        let Some(mine) = floor_of(&from, &plan) else { continue };
        for target in targets {
            let Some(theirs) = floor_of(target, &plan) else { continue };
            if theirs > mine {
                let key = (file.clone(), target.clone());
                if plan.allowed.contains(&key) {
                    allowed_used.insert(key);
                } else {
                    problems.push(format!(
                        "kernel/src/{file} (floor {mine}) imports `{target}` (floor {theirs}): an import up a floor"
                    ));
                }
            }
        }
    }
    for (file, target) in plan.allowed.difference(&allowed_used) {
        problems
            .push(format!("the allowed upward import {file} -> {target} no longer exists: strike it from the table"));
    }
    if plan.allowed.len() > 10 {
        problems.push(format!("{} allowed upward imports (at most 10)", plan.allowed.len()));
    }

    let graph: BTreeMap<String, BTreeSet<String>> = imports
        .iter()
        .map(|(file, targets)| (file.clone(), targets.iter().map(|t| path_of(t, &sources)).collect()))
        .collect();
    for circle in circles(&graph) {
        let outside: Vec<&String> = circle.iter().filter(|f| !plan.knot.contains(*f)).collect();
        if !outside.is_empty() {
            problems.push(format!("an import circle outside the knot: {circle:?} (not in the knot: {outside:?})"));
        }
    }

    if !problems.is_empty() {
        bail!("{} problem(s):\n  {}", problems.len(), problems.join("\n  "));
    }
    Ok(())
}

#[test]
fn every_module_imports_only_from_its_floor_and_below() {
    if let Err(e) = check() {
        panic!("{e:#}");
    }
}

#[test]
fn use_trees_expand_to_whole_paths() {
    let mut out = Vec::new();
    expand_use("", "sched::{self, g::{G, GState}, spawn}", &mut out);
    assert_eq!(out, ["sched", "sched::g::G", "sched::g::GState", "sched::spawn"]);
    let code = code_only("use crate::a::b; // crate::c::d\nlet x = crate::e::f(\"crate::g\"); $crate::h!();");
    assert_eq!(crate_paths(&code), ["a::b", "a::b", "e::f"]);
}

#[test]
fn relative_paths_name_their_modules() {
    let code = code_only("use super::queue::{Pop, Tally};\nuse super::LIMIT;\nlet x = super::lanes::shape(1);");
    assert_eq!(relative_paths(&code, "super::"), ["queue::Pop", "queue::Tally", "LIMIT", "lanes::shape"]);
}

#[test]
fn an_upward_import_is_named() {
    // The check itself, on a made-up plan and two files: the lower one imports the upper one.
    let plan = Plan {
        floors: [("low".to_string(), 1), ("high".to_string(), 2)].into(),
        allowed: BTreeSet::new(),
        knot: BTreeSet::new(),
    };
    let sources = vec![
        Source { path: "low.rs".into(), module: "low".into(), text: "//! low\nuse crate::high::x;\n".into() },
        Source { path: "high.rs".into(), module: "high".into(), text: "//! high\nuse crate::low::y;\n".into() },
    ];
    let imports = imports(&sources);
    assert_eq!(imports["low.rs"], BTreeSet::from(["high".to_string()]));
    let up: Vec<_> = imports
        .iter()
        .flat_map(|(f, t)| t.iter().map(move |t| (f.clone(), t.clone())))
        .filter(|(f, t)| floor_of(t, &plan) > floor_of(&module_of(f), &plan))
        .collect();
    assert_eq!(up, [("low.rs".to_string(), "high".to_string())]);
    let graph = imports.clone();
    let graph: BTreeMap<String, BTreeSet<String>> =
        graph.into_iter().map(|(f, t)| (f, t.into_iter().map(|m| format!("{m}.rs")).collect())).collect();
    assert_eq!(circles(&graph), [BTreeSet::from(["high.rs".to_string(), "low.rs".to_string()])]);
}

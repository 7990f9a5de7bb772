//! Building kernel variants.
//!
//! The kernel is built for `x86_64-unknown-none` with `-Z build-std` (so the prologue hook is in
//! `core` and `alloc` too), by running cargo on the kernel crate. A variant is a profile
//! (`kernel` debug, `kernel-release`, or `kernel-plain`: release without the prologue hook, for
//! comparisons; `kernel-plain-fp`: the same with frame pointers, which the hook forces on the
//! other builds, so that the hook's cost can be told from theirs) plus cargo features; each variant gets its own target directory, so switching
//! between variants does not rebuild, and a nested build never waits for the lock of the cargo
//! process that runs the tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The kernel's target.
pub const TARGET: &str = "x86_64-unknown-none";

/// One way of building the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Variant {
    /// Optimised, without debug assertions.
    pub release: bool,
    /// Cargo features of the kernel crate (e.g. `always-preempt`).
    pub features: Vec<String>,
    /// Build without `-Z instrument-mcount` (release only): the baseline for overhead figures.
    pub plain: bool,
    /// With `plain`: keep frame pointers anyway (the instrumented builds always have them).
    pub frame_pointers: bool,
    /// Full debug information (types, locals, paths) for a debugger (debug builds only): the
    /// `kernel-gdb` profile. The other builds carry line tables only.
    pub full_debug: bool,
}

impl Variant {
    /// The default debug build.
    pub fn debug() -> Variant {
        Variant::default()
    }

    /// A debug build with `features`.
    pub fn with_features(features: &[&str]) -> Variant {
        Variant { features: features.iter().map(|f| f.to_string()).collect(), ..Variant::default() }
    }

    /// The cargo profile.
    pub fn profile(&self) -> &'static str {
        match (self.plain, self.frame_pointers, self.release, self.full_debug) {
            (true, true, _, _) => "kernel-plain-fp",
            (true, false, _, _) => "kernel-plain",
            (false, _, true, _) => "kernel-release",
            (false, _, false, true) => "kernel-gdb",
            (false, _, false, false) => "kernel",
        }
    }

    /// A short name: the profile and the features.
    pub fn name(&self) -> String {
        let mut name = self.profile().to_string();
        for feature in &self.features {
            name.push('+');
            name.push_str(feature);
        }
        name
    }
}

/// The workspace root (where `Cargo.toml` of the workspace is).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("boot/ has a parent").to_path_buf()
}

/// Builds `variant` and returns the path of the kernel ELF. With `quiet`, cargo's output is
/// shown only if the build fails.
pub fn build(variant: &Variant, quiet: bool) -> Result<PathBuf> {
    let root = workspace_root();
    build_in(&root, &root.join("target").join("kernel"), variant, quiet)
}

/// Builds `variant` of the kernel of the source tree at `root` (another copy of this repository,
/// such as a lab copy), in `targets/VARIANT`, and returns the path of the kernel ELF. Trees may
/// share `targets` (the standard library and the dependencies are then built once), one at a
/// time.
///
/// Sharing needs care: cargo identifies a path package by its place in its workspace, so the
/// kernel of two copies is "the same package", and it would call the second copy's kernel fresh
/// (and hand back the first copy's ELF) whenever the second copy's files are older than that
/// build. So each build directory records the tree it was last built from (`SOURCE_STAMP`), and a
/// build for another tree first removes the kernel crate's own outputs (`cargo clean -p kernel`,
/// about a second; the standard library and the dependencies stay).
pub fn build_in(root: &Path, targets: &Path, variant: &Variant, quiet: bool) -> Result<PathBuf> {
    if variant.plain && !variant.release {
        bail!("the uninstrumented (plain) kernel exists only as a release build");
    }
    if variant.frame_pointers && !variant.plain {
        bail!("frame pointers are a choice only for the uninstrumented (plain) build: the hook forces them");
    }
    if variant.full_debug && variant.release {
        bail!("full debug information (--gdb) exists only for the debug build: drop --release to debug with gdb");
    }
    let target_dir = targets.join(variant.name());
    let this_tree = root.canonicalize().with_context(|| format!("resolving {}", root.display()))?;
    let stamp = target_dir.join(SOURCE_STAMP);
    let built_from = std::fs::read_to_string(&stamp).ok().map(PathBuf::from);
    // A directory without a stamp is this runner's own from before stamps, or a copy of one.
    let ours = || workspace_root().canonicalize().is_ok_and(|w| w == this_tree);
    let stale = match &built_from {
        Some(from) => *from != this_tree,
        None => target_dir.exists() && !ours(),
    };
    if stale {
        let status = cargo_in(root)
            .args(["clean", "-p", "kernel", "--target", TARGET, "--profile", variant.profile(), "--target-dir"])
            .arg(&target_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running cargo clean -p kernel")?;
        if !status.success() {
            bail!("cleaning the kernel of another tree from {} failed: {status}", target_dir.display());
        }
    }
    let mut cmd = cargo_in(root);
    cmd.args(["build", "-p", "kernel", "--target", TARGET, "--profile", variant.profile()])
        .args(["-Zbuild-std=core,alloc", "-Zbuild-std-features=compiler-builtins-mem"])
        .arg("--target-dir")
        .arg(&target_dir);
    if !variant.features.is_empty() {
        cmd.arg("--features").arg(variant.features.join(","));
    }
    let status = if quiet {
        let output =
            cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output().context("running cargo to build the kernel")?;
        if !output.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        }
        output.status
    } else {
        cmd.status().context("running cargo to build the kernel")?
    };
    if !status.success() {
        bail!("building the kernel ({}) failed: cargo exited with {status}", variant.name());
    }
    let elf = target_dir.join(TARGET).join(variant.profile()).join("kernel");
    if !elf.exists() {
        bail!("the kernel build succeeded but {} is missing", elf.display());
    }
    if built_from.as_ref() != Some(&this_tree) {
        std::fs::write(&stamp, this_tree.display().to_string())
            .with_context(|| format!("writing {}", stamp.display()))?;
    }
    Ok(elf)
}

/// The file in a kernel build directory that names the source tree it was last built from.
pub const SOURCE_STAMP: &str = "prologue-source-tree";

/// `cargo` run in `root`, without the settings of the cargo process that runs us (they must not
/// leak into the kernel build).
fn cargo_in(root: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root);
    for var in
        ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR", "RUSTC_WORKSPACE_WRAPPER"]
    {
        cmd.env_remove(var);
    }
    cmd
}

//! The Go and Linux comparison figures, measured for real (`boot::against`), until the bench
//! driver takes them over: each anchor is booted twice and the raw instruction counts of the
//! two runs must be identical.
//!
//! Ignored by default (it installs Go, gcc and a Linux kernel if missing, and boots Linux four
//! times under instruction counting: minutes). Run it with
//! `cargo test -p boot --test against -- --ignored --nocapture`.

use boot::against::{Anchor, measure};

#[test]
#[ignore = "boots Linux four times under -icount; run with --ignored"]
fn go_and_linux_figures_repeat_exactly() {
    let mut differing = Vec::new();
    // One after the other: they share the installation step and the machine's two cores.
    for anchor in [Anchor::Go, Anchor::LinuxPthreads] {
        let first = measure(anchor).unwrap_or_else(|e| panic!("{}, first run: {e:#}", anchor.name()));
        let second = measure(anchor).unwrap_or_else(|e| panic!("{}, second run: {e:#}", anchor.name()));
        println!("{}:", anchor.name());
        for (name, a) in &first {
            let b = &second[name];
            let same = if a.total == b.total { "identical" } else { "DIFFERENT" };
            println!(
                "  {name:28} {:>12} / {:>7} = {:>9.1}   {:>12} / {:>7} = {:>9.1}   {same}",
                a.total, a.ops, a.per_op, b.total, b.ops, b.per_op
            );
            if a.total != b.total {
                differing.push(format!("{}/{name}", anchor.name()));
            }
        }
    }
    assert!(differing.is_empty(), "raw totals differ between two runs: {differing:?}");
}

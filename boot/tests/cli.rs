//! The `boot` command as a user runs it: a subprocess, judged by its exit status and by what
//! it says on stderr and prints on stdout.
//!
//! One check only (each run builds and boots the kernel): an unknown test name must fail the
//! command with one clear `boot:` line naming the name, after the kernel's own explanation.

use std::process::Command;

#[test]
fn unknown_test_name_fails_with_a_clear_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_boot"))
        .args(["--timeout", "120", "test", "no_such_ktest"])
        .output()
        .expect("the boot binary starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "boot succeeded for an unknown test:\n{stdout}\n{stderr}");
    // The kernel's transcript is echoed on stdout...
    assert!(
        stdout.lines().any(|l| l.starts_with("ktest: no test matches 'no_such_ktest'")),
        "the kernel's explanation is missing from stdout:\n{stdout}"
    );
    // ...and the command's verdict is one line on stderr (after cargo's build output).
    let verdict: Vec<&str> = stderr.lines().filter(|l| l.starts_with("boot:")).collect();
    assert_eq!(
        verdict,
        ["boot: kernel failure: ktest: no test matches 'no_such_ktest' (test=list shows them)"],
        "stderr:\n{stderr}"
    );
}

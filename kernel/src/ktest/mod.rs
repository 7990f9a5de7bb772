//! In-kernel tests ("ktests"): registration, selection, and the runner.
//!
//! A test is an ordinary function in any module, registered with the `ktest!` macro:
//!
//! ```ignore
//! ktest! {
//!     /// What it checks.
//!     fn frames_come_back() { assert_eq!(...); }
//! }
//! ktest! {
//!     #[expect(panic = "send on closed channel")]
//!     fn send_on_closed_panics() { ... }
//! }
//! ```
//!
//! `ktest!` places a `KTest` record in a linker section (`linkme`), so the runner finds every
//! test without a central list. A test's name is its module path without `kernel::`, e.g.
//! `sync::chan::close_wakes_receivers`.
//!
//! Each test runs in its own thread; the runner joins it. A test passes if it returns (or, if
//! it declares `#[expect(...)]`, if it dies the expected way: a panic whose message contains a
//! given text, a CPU exception with a given vector, or a stack overflow). Thread death is
//! contained (see `trap::panic` and `trap::exceptions`), so one failing test does not stop the run.
//!
//! A test that cannot run in the machine it got (one CPU for an SMP test, too little memory, a
//! build without the feature it checks) says so with `ktest_skip!("reason")`, which returns from
//! the test: it is reported as skipped, never as passed.
//!
//! A test checks its results *outside* its guards: an assertion that fails while the test holds a
//! spin lock or runs with interrupts disabled is a panic under a lock, which the kernel rightly
//! treats as fatal, and the rest of the suite would never run. So a test computes under the guard
//! and asserts after dropping it.
//!
//! Output protocol (parsed by the runner on the host): `test NAME ... ok`,
//! `test NAME ... FAILED: reason` or `test NAME ... skipped: reason`, one per test, then
//! `N passed, M failed, K skipped` alone on a line; the QEMU exit status agrees with it (skipped
//! tests do not fail the run).

pub mod baseline;
pub mod helpers;

use alloc::vec::Vec;
use core::fmt::Write;

use linkme::distributed_slice;

use crate::sched::thread::Death;

/// How a test is expected to end.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// It returns.
    Pass,
    /// It panics with a message containing this text.
    Panic(&'static str),
    /// Its thread takes CPU exception `vector`.
    Fault(u8),
    /// Its thread overflows its stack.
    StackOverflow,
}

/// A registered test.
pub struct KTest {
    /// `module_path!()::name`.
    pub path: &'static str,
    pub func: fn(),
    pub expect: Expect,
}

impl KTest {
    /// The test's name: its path without the crate name.
    pub fn name(&self) -> &'static str {
        self.path.strip_prefix("kernel::").unwrap_or(self.path)
    }
}

/// Every test in the kernel.
#[distributed_slice]
pub static KTESTS: [KTest];

/// Why the running test skipped itself (set by `ktest_skip!`, read by the runner after the join).
static SKIP_REASON: crate::records::spin::SpinLock<Option<alloc::string::String>> =
    crate::records::spin::SpinLock::new(crate::records::spin::Rank::Object, None);

/// Records that the running test skips itself, and why. Use `ktest_skip!`, which also returns.
pub fn record_skip(reason: core::fmt::Arguments<'_>) {
    let reason = alloc::format!("{reason}");
    *SKIP_REASON.lock() = Some(reason);
}

/// Ends the running test as skipped: `ktest_skip!("needs {} CPUs", 2)`. The reason says what the
/// test needs that this machine or build lacks.
#[macro_export]
macro_rules! ktest_skip {
    ($($arg:tt)*) => {{
        $crate::ktest::record_skip(format_args!($($arg)*));
        return;
    }};
}

/// Registers a test function; see the module documentation.
#[macro_export]
macro_rules! ktest {
    ($(#[doc = $doc:literal])* #[expect(panic = $msg:literal)] fn $name:ident() $body:block) => {
        $crate::ktest!(@register $name, $crate::ktest::Expect::Panic($msg), $body);
    };
    ($(#[doc = $doc:literal])* #[expect(fault = $vector:literal)] fn $name:ident() $body:block) => {
        $crate::ktest!(@register $name, $crate::ktest::Expect::Fault($vector), $body);
    };
    ($(#[doc = $doc:literal])* #[expect(stack_overflow)] fn $name:ident() $body:block) => {
        $crate::ktest!(@register $name, $crate::ktest::Expect::StackOverflow, $body);
    };
    ($(#[doc = $doc:literal])* fn $name:ident() $body:block) => {
        $crate::ktest!(@register $name, $crate::ktest::Expect::Pass, $body);
    };
    (@register $name:ident, $expect:expr, $body:block) => {
        fn $name() $body
        const _: () = {
            #[linkme::distributed_slice($crate::ktest::KTESTS)]
            static TEST: $crate::ktest::KTest = $crate::ktest::KTest {
                path: concat!(module_path!(), "::", stringify!($name)),
                func: $name,
                expect: $expect,
            };
        };
    };
}

/// Does `name` match one of the comma-separated patterns (`NAME`, `PREFIX*`, `all`)?
fn matches(name: &str, patterns: &str) -> bool {
    patterns.split(',').any(|p| match p.strip_suffix('*') {
        _ if p == "all" => true,
        Some(prefix) => name.starts_with(prefix),
        None => name == p,
    })
}

/// What became of one test.
enum Verdict {
    Passed,
    Failed(alloc::string::String),
    Skipped(alloc::string::String),
}

/// Judges a finished test against its expectation (a test that skipped itself is skipped, whatever
/// it expected).
fn judge(test: &KTest, outcome: Result<(), Death>, skipped: Option<alloc::string::String>) -> Verdict {
    use alloc::format;
    if let (Some(reason), Ok(())) = (skipped, &outcome) {
        return Verdict::Skipped(reason);
    }
    let failure = match (test.expect, outcome) {
        (Expect::Pass, Ok(())) => return Verdict::Passed,
        (Expect::Pass, Err(death)) => format!("{death}"),
        (Expect::Panic(text), Err(Death::Panic(msg))) if msg.contains(text) => return Verdict::Passed,
        (Expect::Fault(v), Err(Death::Fault { vector, .. })) if vector == v => return Verdict::Passed,
        (Expect::StackOverflow, Err(Death::StackOverflow { .. })) => return Verdict::Passed,
        (expect, Ok(())) => format!("returned, but was expected to die ({expect:?})"),
        (expect, Err(death)) => format!("expected {expect:?}, but {death}"),
    };
    Verdict::Failed(failure)
}

/// Runs the tests selected by `patterns` (or lists them, for `list`) and exits QEMU with the
/// verdict. Runs as a thread.
pub fn run(patterns: &str) -> ! {
    let mut tests: Vec<&KTest> = KTESTS.iter().collect();
    tests.sort_by_key(|t| t.name());
    if patterns == "list" {
        for t in &tests {
            crate::println!("ktest {} {:?}", t.name(), t.expect);
        }
        crate::println!("{} tests", tests.len());
        crate::console::exit(crate::arch::qemu::ExitCode::Success);
    }
    // Every pattern must select something: a typo is an error, not an empty run.
    for pattern in patterns.split(',') {
        if !tests.iter().any(|t| matches(t.name(), pattern)) {
            crate::println!("ktest: no test matches '{pattern}' (test=list shows them)");
            crate::console::exit(crate::arch::qemu::ExitCode::Failure);
        }
    }
    tests.retain(|t| matches(t.name(), patterns));
    crate::println!("running {} tests", tests.len());
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for test in tests {
        let mut line = alloc::string::String::new();
        let _ = write!(line, "test {} ... ", test.name());
        crate::print!("{line}");
        let mark = crate::console::prints();
        let func = test.func;
        *SKIP_REASON.lock() = None;
        let outcome = crate::sched::spawn(test.name(), func).join();
        let skip = SKIP_REASON.lock().take();
        let verdict = judge(test, outcome, skip);
        if crate::console::prints() != mark {
            // The test printed something: repeat the prefix so the result line is whole.
            crate::print!("{line}");
        }
        match verdict {
            Verdict::Passed => {
                passed += 1;
                crate::println!("ok");
            }
            Verdict::Failed(reason) => {
                failed += 1;
                crate::println!("FAILED: {reason}");
            }
            Verdict::Skipped(reason) => {
                skipped += 1;
                crate::println!("skipped: {reason}");
            }
        }
    }
    crate::println!("{passed} passed, {failed} failed, {skipped} skipped");
    let code = if failed == 0 { crate::arch::qemu::ExitCode::Success } else { crate::arch::qemu::ExitCode::Failure };
    crate::console::exit(code)
}

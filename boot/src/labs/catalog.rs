//! The graded labs: for each, the checks that grade it, the kernel set-up each runs in, and its
//! points. `docs/labs/README.md` shows the same table, with the reference solution's score.
//!
//! A check is one in-kernel test, or a short run of the torture test with a seed. Its set-up is a
//! kernel build (debug, or debug with `always-preempt`), a CPU count and kernel command-line
//! words. The set-ups are chosen so that each lab grades only its own code, whatever the state of
//! the others' regions: every lab but lab 4 runs with stacks mapped whole at spawn
//! (`stack_max_kib=64 stack_init_kib=64`: no stack ever grows, so a lab 4 copy whose stacks
//! cannot grow yet grades the other labs in full), and no check outside lab 1 blocks on a
//! channel (a lab 1 copy has none that can block). `cargo test` checks both claims on real copies
//! of labs 1-4, each graded on labs 1-4.
//!
//! Lab 5 is of another kind (`Kind::FindAndFix`): its copy holds a bug in the kernel's own code
//! instead of a stub, with no marker to show where, and it is graded by torture runs under every
//! preemption strategy plus six of the kernel's tests that a fix must not break. It needs the
//! whole kernel: a lab 1-4 copy (channels or stack growth missing) fails it, and a lab 5 copy (a
//! broken kernel) may fail the other labs' torture checks. So each copy is graded on its own kind.

/// A kernel build and machine to run checks in.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Setup {
    /// Short name, shown in the grade table.
    pub name: &'static str,
    /// Kernel cargo features.
    pub features: &'static [&'static str],
    pub smp: u32,
    /// Kernel command-line words besides `test=` or `stress=`.
    pub cmdline: &'static str,
    /// The longest one test may run before it counts as hung (seconds).
    pub test_limit: u64,
}

/// Stacks mapped whole at spawn: no growth (see the module comment).
const WHOLE_STACKS: &str = "stack_max_kib=64 stack_init_kib=64";

pub static SMP2: Setup = Setup { name: "smp2", features: &[], smp: 2, cmdline: WHOLE_STACKS, test_limit: 40 };
pub static SMP4: Setup = Setup { name: "smp4", features: &[], smp: 4, cmdline: WHOLE_STACKS, test_limit: 40 };
pub static AP_SMP1: Setup =
    Setup { name: "always-preempt-smp1", features: &["always-preempt"], smp: 1, cmdline: WHOLE_STACKS, test_limit: 60 };
pub static AP_SMP2: Setup =
    Setup { name: "always-preempt-smp2", features: &["always-preempt"], smp: 2, cmdline: WHOLE_STACKS, test_limit: 60 };
/// Stacks that start small and grow, as by default, but from 16 KiB rather than 4: the test runner
/// itself then fits without growing, so that a copy whose stacks cannot grow yet still reports
/// each test (every graded test grows its stack well past 16 KiB).
const GROWING_STACKS: &str = "stack_init_kib=16";

pub static GROW_SMP1: Setup =
    Setup { name: "growing-smp1", features: &[], smp: 1, cmdline: GROWING_STACKS, test_limit: 40 };
pub static GROW_SMP2: Setup =
    Setup { name: "growing-smp2", features: &[], smp: 2, cmdline: GROWING_STACKS, test_limit: 40 };
pub static GROW_AP_SMP1: Setup = Setup {
    name: "growing-always-preempt-smp1",
    features: &["always-preempt"],
    smp: 1,
    cmdline: GROWING_STACKS,
    test_limit: 60,
};

/// Lab 5's set-ups: the torture test in the forced-preemption build at one CPU under each
/// strategy of the schedule explorer, and the normal build (timer preemption) at two CPUs.
pub static FIX_EVERY: Setup = Setup {
    name: "always-preempt-smp1-every",
    features: &["always-preempt"],
    smp: 1,
    cmdline: "strategy=every",
    test_limit: 60,
};
pub static FIX_RANDOM: Setup = Setup {
    name: "always-preempt-smp1-random:8",
    features: &["always-preempt"],
    smp: 1,
    cmdline: "strategy=random:8",
    test_limit: 60,
};
pub static FIX_PCT: Setup = Setup {
    name: "always-preempt-smp1-pct:3",
    features: &["always-preempt"],
    smp: 1,
    cmdline: "strategy=pct:3",
    test_limit: 60,
};
pub static FIX_ASYNC: Setup = Setup {
    name: "always-preempt-smp1-async:200000",
    features: &["always-preempt"],
    smp: 1,
    cmdline: "strategy=async:200000",
    test_limit: 60,
};
pub static FIX_NORMAL: Setup = Setup { name: "smp2-timer", features: &[], smp: 2, cmdline: "", test_limit: 40 };

/// What one graded item runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    /// An in-kernel test, by its full name.
    Test(&'static str),
    /// The torture test for `seconds` with `seed`: it must end with `stress: SUCCESS`.
    Stress { seconds: u64, seed: u64 },
}

impl Check {
    /// How the grade table names it.
    pub fn name(&self) -> String {
        match self {
            Check::Test(name) => name.to_string(),
            Check::Stress { seconds, seed } => format!("stress for {seconds} s, seed {seed}"),
        }
    }
}

/// One graded item: a check, where it runs, and what it is worth.
#[derive(Debug)]
pub struct Item {
    pub setup: &'static Setup,
    pub check: Check,
    pub points: u32,
}

/// What the students of a lab do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Write back the marked regions, which their copy has as stubs.
    WriteBack,
    /// Find and fix a bug: their copy has each marked region's `STUB` (the bug) in place of the
    /// solution, without this lab's markers; the other labs' copies have the solution, unmarked
    /// too. The students may change or add any kernel code except the tests.
    FindAndFix,
}

/// A lab: its number, title, page, and items.
#[derive(Debug)]
pub struct Lab {
    pub number: u32,
    pub kind: Kind,
    pub title: &'static str,
    /// The lab's page, relative to the repository root.
    pub page: &'static str,
    pub items: &'static [Item],
}

impl Lab {
    /// The points a perfect solution earns.
    pub fn max_points(&self) -> u32 {
        self.items.iter().map(|i| i.points).sum()
    }
}

const fn test(setup: &'static Setup, name: &'static str, points: u32) -> Item {
    Item { setup, check: Check::Test(name), points }
}

const fn stress(setup: &'static Setup, seconds: u64, seed: u64, points: u32) -> Item {
    Item { setup, check: Check::Stress { seconds, seed }, points }
}

/// Every graded lab, in order.
pub static LABS: [Lab; 5] = [
    Lab {
        number: 1,
        kind: Kind::WriteBack,
        title: "threads and channels: the unbuffered rendezvous over park and ready",
        page: "docs/labs/01-threads-and-channels.md",
        items: &[
            test(&SMP2, "sync::tests::unbuffered_send_waits_for_its_receiver", 3),
            test(&SMP2, "sync::tests::unbuffered_round_trips", 2),
            test(&SMP2, "sync::tests::buffered_round_trips", 2),
            test(&SMP2, "sync::tests::close_drains_then_returns_none", 1),
            test(&SMP2, "sync::tests::close_panics_blocked_senders", 2),
            test(&SMP2, "sync::tests::select_blocks_until_a_case_is_ready", 2),
            test(&SMP2, "sync::tests::sieve_finds_the_first_thousand_primes", 2),
            test(&SMP2, "sync::wake_tests::a_close_at_any_depth_wakes_every_receiver", 1),
            test(&SMP2, "sync::wake_tests::a_send_at_any_depth_wakes_a_parked_select", 1),
            test(&AP_SMP2, "sync::tests::unbuffered_send_waits_for_its_receiver", 1),
            test(&AP_SMP2, "sync::tests::unbuffered_round_trips", 1),
            test(&AP_SMP2, "sync::tests::close_panics_blocked_senders", 1),
            stress(&AP_SMP1, 3, 1, 1),
            stress(&AP_SMP1, 3, 2, 1),
        ],
    },
    Lab {
        number: 2,
        kind: Kind::WriteBack,
        title: "the always-preempt hook, in assembly",
        page: "docs/labs/02-the-always-preempt-hook.md",
        items: &[
            test(&AP_SMP1, "sched::preempt_tests::every_prologue_preempts_under_always_preempt", 3),
            test(&AP_SMP1, "sched::preempt_tests::hook_runs_in_every_prologue", 3),
            test(&AP_SMP1, "sched::preempt_tests::spin_lock_defers_preemption", 2),
            test(&AP_SMP1, "sched::preempt_tests::planted_race_is_caught", 2),
            test(&AP_SMP2, "sched::preempt_tests::every_prologue_preempts_under_always_preempt", 2),
            test(&AP_SMP2, "sched::preempt_tests::hook_runs_in_every_prologue", 2),
            test(&AP_SMP2, "sched::preempt_tests::spin_lock_defers_preemption", 1),
            test(&AP_SMP2, "sched::preempt_tests::planted_race_is_caught", 1),
        ],
    },
    Lab {
        number: 3,
        kind: Kind::WriteBack,
        title: "work stealing and the idle/wake-up handshake",
        page: "docs/labs/03-work-stealing.md",
        items: &[
            test(&SMP4, "sched::balance_tests::steal_takes_the_older_half", 3),
            test(&SMP4, "sched::balance_tests::steal_takes_runnext_only_as_a_last_resort", 2),
            test(&SMP4, "sched::balance_tests::an_idle_cpu_takes_a_new_thread_at_once", 3),
            test(&SMP4, "sched::balance_tests::a_halted_cpu_is_woken_by_an_ipi", 3),
            test(&SMP4, "sched::smp_tests::fan_out_is_stolen_by_every_cpu", 2),
            test(&SMP4, "sched::smp_tests::mutex_across_cpus_is_exact", 1),
        ],
    },
    Lab {
        number: 4,
        kind: Kind::WriteBack,
        title: "stacks that grow: the growth step, in the slow path and the fault path",
        page: "docs/labs/04-stacks-that-grow.md",
        items: &[
            test(&GROW_SMP1, "sched::tests::recursion_grows_the_stack_in_place", 3),
            test(&GROW_SMP1, "sched::tests::large_frame_grows_the_stack", 3),
            test(&GROW_SMP1, "sched::tests::a_growth_keeps_a_poisoned_guard", 3),
            test(&GROW_SMP1, "sched::tests::deep_recursion_overflows_alone", 2),
            test(&GROW_SMP1, "sched::tests::large_frame_past_the_reservation_overflows", 1),
            test(&GROW_SMP2, "sched::tests::recursion_grows_the_stack_in_place", 1),
            test(&GROW_SMP2, "sched::tests::large_frame_grows_the_stack", 1),
            test(&GROW_AP_SMP1, "sched::tests::recursion_grows_the_stack_in_place", 1),
            test(&GROW_AP_SMP1, "sched::tests::a_growth_keeps_a_poisoned_guard", 1),
        ],
    },
    Lab {
        number: 5,
        kind: Kind::FindAndFix,
        title: "find and fix a preemption bug, with the stress farm, replay and shrinking",
        page: "docs/labs/05-find-and-fix.md",
        items: &[
            stress(&FIX_EVERY, 2, 1, 2),
            stress(&FIX_EVERY, 2, 2, 2),
            stress(&FIX_RANDOM, 2, 1, 2),
            stress(&FIX_RANDOM, 2, 2, 2),
            stress(&FIX_PCT, 2, 1, 1),
            stress(&FIX_PCT, 2, 2, 1),
            stress(&FIX_ASYNC, 2, 1, 1),
            stress(&FIX_ASYNC, 2, 2, 1),
            stress(&FIX_NORMAL, 2, 1, 1),
            stress(&FIX_NORMAL, 2, 2, 1),
            test(&FIX_NORMAL, "sync::tests::unbuffered_round_trips", 1),
            test(&FIX_NORMAL, "sync::tests::select_blocks_until_a_case_is_ready", 1),
            test(&FIX_NORMAL, "sched::smp_tests::mutex_across_cpus_is_exact", 1),
            test(&FIX_NORMAL, "sched::tests::ten_thousand_threads", 1),
            test(&FIX_RANDOM, "sync::tests::close_panics_blocked_senders", 1),
            test(&FIX_RANDOM, "sched::tests::a_panicking_thread_dies_alone", 1),
        ],
    },
];

/// The labs whose students find and fix a bug (their regions are never marked in a copy).
pub fn find_and_fix_labs() -> Vec<u32> {
    LABS.iter().filter(|l| l.kind == Kind::FindAndFix).map(|l| l.number).collect()
}

/// The lab numbered `number`.
pub fn lab(number: u32) -> Option<&'static Lab> {
    LABS.iter().find(|l| l.number == number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_distinct_and_worth_something() {
        for lab in &LABS {
            assert!(lab.max_points() > 0);
            for (i, a) in lab.items.iter().enumerate() {
                assert!(a.points > 0, "lab {}: {} is worth nothing", lab.number, a.check.name());
                for b in &lab.items[i + 1..] {
                    assert!(
                        !(a.setup == b.setup && a.check == b.check),
                        "lab {}: {} twice",
                        lab.number,
                        a.check.name()
                    );
                }
            }
        }
        assert_eq!(LABS.iter().map(|l| l.number).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn set_up_names_are_distinct() {
        let setups = [
            &SMP2,
            &SMP4,
            &AP_SMP1,
            &AP_SMP2,
            &GROW_SMP1,
            &GROW_SMP2,
            &GROW_AP_SMP1,
            &FIX_EVERY,
            &FIX_RANDOM,
            &FIX_PCT,
            &FIX_ASYNC,
            &FIX_NORMAL,
        ];
        for (i, a) in setups.iter().enumerate() {
            for b in &setups[i + 1..] {
                assert_ne!(a.name, b.name);
            }
        }
    }
}

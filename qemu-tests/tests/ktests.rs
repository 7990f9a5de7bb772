//! Every in-kernel test as its own host test: `CONFIG::KTEST` for each configuration in
//! `qemu_tests::config::CONFIGS`, plus one ktest under UEFI firmware and the schedule explorer's
//! ktests on the forced-preemption build at one CPU.
//!
//! The list of ktests comes from booting the debug kernel with `test=list`, before the harness
//! starts (so `--list` and filters see real names). Each configuration then boots at most once,
//! with exactly the tests whose trials libtest-mimic will run: the selection below applies
//! libtest-mimic's own filter to each trial name, so the two cannot disagree (and
//! `Suite::verdict` refuses a trial that was not selected). If the list cannot be had, a single
//! failing trial `ktest-list` says why.

use std::sync::Arc;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use qemu_tests::config::{CONFIGS, Config, EXPLORE, EXPLORE_TESTS, UEFI};
use qemu_tests::kernels;
use qemu_tests::suite::{self, Ran, Suite};

fn main() {
    let args = Arguments::from_args();
    let trials = match kernels::list() {
        Ok(names) => {
            if !args.list {
                // Said before the trials start: nothing prints between their lines (see `suite`).
                eprintln!(
                    "qemu-tests: {} ktests x {} configurations, each booted at most once; transcripts in {}",
                    names.len(),
                    CONFIGS.len(),
                    suite::log_dir().display()
                );
            }
            trials(&args, &names)
        }
        Err(e) => {
            let message = format!("cannot list the ktests: {e:#}");
            vec![Trial::test("ktest-list", move || Err(Failed::from(message)))]
        }
    };
    libtest_mimic::run(&args, trials).exit();
}

/// Will the harness run a trial named `name`? (Filter, `--exact`, `--skip`, `--ignored`,
/// `--list`: decided by libtest-mimic itself, on a stand-in trial of that name.)
fn runs(args: &Arguments, name: &str) -> bool {
    let probe = Trial::test(name, || Ok(()));
    !args.list && !args.is_filtered_out(&probe) && !args.is_ignored(&probe)
}

/// One trial per ktest in `candidates`, sharing one suite (one boot) of `config`.
fn config_trials(args: &Arguments, config: &'static Config, all: &[String], candidates: &[String]) -> Vec<Trial> {
    let selected = candidates.iter().filter(|t| runs(args, &config.trial_name(t))).cloned().collect();
    let suite = Arc::new(Suite::new(config, all, selected));
    candidates
        .iter()
        .map(|test| {
            let (suite, test) = (Arc::clone(&suite), test.clone());
            Trial::ignorable_test(config.trial_name(&test), move || match suite.verdict(&test) {
                Ok(Ran::Passed) => Ok(Completion::Completed),
                Ok(Ran::Skipped(reason)) => Ok(Completion::ignored_with(reason)),
                Err(reason) => Err(Failed::from(reason)),
            })
        })
        .collect()
}

fn trials(args: &Arguments, names: &[String]) -> Vec<Trial> {
    let mut trials: Vec<Trial> = CONFIGS.iter().flat_map(|config| config_trials(args, config, names, names)).collect();
    // UEFI: one real test is enough to prove the firmware path (an `arch::` test touches the
    // hardware set-up that differs most between firmwares).
    match names.iter().find(|n| n.starts_with("arch::")) {
        Some(test) => trials.extend(config_trials(args, &UEFI, names, std::slice::from_ref(test))),
        None => trials.push(Trial::ignorable_test(UEFI.trial_name("boot"), || {
            Ok(Completion::ignored_with("the kernel lists no arch:: ktest to boot under UEFI"))
        })),
    }
    let explore: Vec<String> = names.iter().filter(|n| n.starts_with(EXPLORE_TESTS)).cloned().collect();
    trials.extend(config_trials(args, &EXPLORE, names, &explore));
    trials
}

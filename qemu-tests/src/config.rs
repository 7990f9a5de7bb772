//! The kernel configurations the ktests run under.
//!
//! A configuration is a kernel variant (cargo features), a firmware and a CPU count. Its name is
//! the first part of each trial's name (`bios-smp4::mm::heap::small_boxes`), so it must be
//! unique and contain no `::`.
//!
//! Timeouts are generous: TCG emulation is slow, the suite keeps growing, and
//! `always-preempt` (a preemption at every function prologue) is several times slower. The
//! watchdog is there to end a hung kernel, not to measure speed. They are also bounded: if every
//! configuration hangs, the watchdogs add up to 38 minutes, which keeps CI within its 90-minute
//! hard limit.

use std::time::Duration;

use boot::{Firmware, RunConfig, Variant};

/// Guest memory of every configuration: 1 GiB, as `sched::tests::hundred_thousand_idle_threads`
/// needs (100,000 parked threads at about 5 KiB each); QEMU touches host memory only as used.
pub const MEMORY_MIB: u32 = 1024;

/// One way of booting the kernel for its tests.
#[derive(Debug)]
pub struct Config {
    pub name: &'static str,
    /// Cargo features of the kernel crate.
    pub features: &'static [&'static str],
    /// The optimised build without debug assertions (else the debug build).
    pub release: bool,
    pub firmware: Firmware,
    pub smp: u32,
    /// The watchdog for one boot that runs the configuration's selected tests.
    pub timeout: Duration,
}

/// The configurations that run every ktest: the debug build on one and four CPUs, the
/// always-preempt build on four, and the release build (what benchmarks measure, where the
/// optimiser may change what a test relies on) on two.
pub const CONFIGS: [Config; 4] = [
    Config {
        name: "bios-smp1",
        features: &[],
        release: false,
        firmware: Firmware::Bios,
        smp: 1,
        timeout: Duration::from_secs(300),
    },
    Config {
        name: "bios-smp4",
        features: &[],
        release: false,
        firmware: Firmware::Bios,
        smp: 4,
        timeout: Duration::from_secs(300),
    },
    Config {
        name: "always-preempt-smp4",
        features: &["always-preempt"],
        release: false,
        firmware: Firmware::Bios,
        smp: 4,
        timeout: Duration::from_secs(900),
    },
    Config {
        name: "release-smp2",
        features: &[],
        release: true,
        firmware: Firmware::Bios,
        smp: 2,
        timeout: Duration::from_secs(300),
    },
];

/// The configuration that boots with UEFI firmware, for one ktest (UEFI boots are slower and
/// exercise only the firmware path, which does not depend on the test).
pub const UEFI: Config = Config {
    name: "uefi-smp2",
    features: &[],
    release: false,
    firmware: Firmware::Uefi,
    smp: 2,
    timeout: Duration::from_secs(180),
};

/// The configuration for the schedule explorer's own ktests (`sched::explore::`): the
/// forced-preemption build on one CPU, which PCT needs; the other configurations run them too,
/// and skip what needs one CPU.
pub const EXPLORE: Config = Config {
    name: "always-preempt-smp1",
    features: &["always-preempt"],
    release: false,
    firmware: Firmware::Bios,
    smp: 1,
    timeout: Duration::from_secs(300),
};

/// The ktests `EXPLORE` runs.
pub const EXPLORE_TESTS: &str = "sched::explore::";

impl Config {
    /// The kernel build this configuration boots.
    pub fn variant(&self) -> Variant {
        Variant { release: self.release, ..Variant::with_features(self.features) }
    }

    /// QEMU settings for a boot with kernel command line `cmdline`.
    pub fn run_config(&self, cmdline: String) -> RunConfig {
        RunConfig {
            firmware: self.firmware,
            smp: self.smp,
            memory_mib: MEMORY_MIB,
            cmdline,
            timeout: Some(self.timeout),
            ..RunConfig::default()
        }
    }

    /// The name of the trial that runs ktest `test` in this configuration.
    pub fn trial_name(&self, test: &str) -> String {
        format!("{}::{test}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_prefix_free() {
        let names: Vec<&str> = CONFIGS.iter().chain([&UEFI, &EXPLORE]).map(|c| c.name).collect();
        for (i, a) in names.iter().enumerate() {
            assert!(!a.contains("::"), "{a} contains ::");
            for b in &names[i + 1..] {
                // A filter `bios-smp1::` must never select another configuration's trials.
                assert!(!a.starts_with(b) && !b.starts_with(a), "{a} and {b} overlap");
            }
        }
    }

    #[test]
    fn run_config_carries_the_settings() {
        let cfg = CONFIGS[1].run_config("test=all".into());
        assert_eq!((cfg.smp, cfg.memory_mib, cfg.firmware), (4, MEMORY_MIB, Firmware::Bios));
        assert_eq!(cfg.cmdline, "test=all");
        assert_eq!(cfg.timeout, Some(Duration::from_secs(300)));
        assert!(!cfg.echo && !cfg.interactive && !cfg.gdb);
        assert_eq!(CONFIGS[2].variant(), Variant::with_features(&["always-preempt"]));
        assert!(CONFIGS[3].variant().release && !CONFIGS[3].variant().plain);
    }
}

//! Preemption points as data, for `shrink` and `--coverage`: the list a `points` run follows,
//! the record of the points a run took, and the table of where preemptions landed.
//!
//! A point is (thread key, prologue ordinal): "preempt the thread named `key` at its n-th
//! prologue". The runner passes a list as the fw_cfg file `opt/prologue/points`, one point per
//! line, `KEY ORDINAL` (key in hex). With `record=on` the kernel prints, at the end of the run,
//! every point it took as `point KEY ORDINAL RIP CALLER` (RIP: inside the preempted function;
//! CALLER: the return address into its caller), which the runner symbolizes. With
//! `coverage=on` it prints `cover RIP COUNT` for every distinct preemption site. Both are
//! always collected and only printed on request, so that asking for them does not change the
//! instructions a run executes (under `--icount`, its schedule).
//!
//! Invariants: the list is read once at boot and never changes; the record and the coverage
//! table are written lock-free (atomics) on g0 of any CPU and read at the end of the run.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The fw_cfg file holding the point list of a `points` run.
pub const POINTS_FILE: &str = "opt/prologue/points";

static LIST: spin::Once<Vec<(u64, u64)>> = spin::Once::new();

/// Why a point list was refused.
pub struct ListError {
    pub line: usize,
}

/// Reads the point list from `text` (the runner's file); returns the number of points.
pub fn load(text: &str) -> Result<usize, ListError> {
    let mut points = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_ascii_whitespace();
        let key = words.next().and_then(|w| u64::from_str_radix(w, 16).ok());
        let ordinal = words.next().and_then(|w| w.parse::<u64>().ok());
        match (key, ordinal, words.next()) {
            (Some(key), Some(ordinal), None) if ordinal > 0 => points.push((key, ordinal)),
            _ => return Err(ListError { line: i + 1 }),
        }
    }
    points.sort_unstable();
    points.dedup();
    let n = points.len();
    LIST.call_once(|| points);
    Ok(n)
}

/// The first listed ordinal of thread `key` after `now`, or `u64::MAX` if none.
pub fn next_after(key: u64, now: u64) -> u64 {
    let Some(list) = LIST.get() else { return u64::MAX };
    let at = list.partition_point(|&p| p <= (key, now));
    match list.get(at) {
        Some(&(k, ordinal)) if k == key => ordinal,
        _ => u64::MAX,
    }
}

const RECORD_SLOTS: usize = 64 * 1024;

struct Recorded {
    key: AtomicU64,
    ordinal: AtomicU64,
    rip: AtomicUsize,
    caller: AtomicUsize,
}

static RECORD: [Recorded; RECORD_SLOTS] = [const {
    Recorded {
        key: AtomicU64::new(0),
        ordinal: AtomicU64::new(0),
        rip: AtomicUsize::new(0),
        caller: AtomicUsize::new(0),
    }
}; RECORD_SLOTS];
static RECORDED: AtomicUsize = AtomicUsize::new(0);

/// Records a point taken (printed with `record=on`).
pub fn record(key: u64, ordinal: u64, rip: usize, caller: usize) {
    // Once the record is full, only a shared read: no write to a line every CPU would fight for.
    if RECORDED.load(Ordering::Relaxed) >= RECORD_SLOTS {
        return;
    }
    let at = RECORDED.fetch_add(1, Ordering::Relaxed);
    if let Some(slot) = RECORD.get(at) {
        slot.key.store(key, Ordering::Relaxed);
        slot.ordinal.store(ordinal, Ordering::Relaxed);
        slot.rip.store(rip, Ordering::Relaxed);
        slot.caller.store(caller, Ordering::Release);
    }
}

/// Prints the recorded points (nothing if none were recorded).
pub fn print_recorded() {
    let taken = RECORDED.load(Ordering::Acquire).min(RECORD_SLOTS);
    if taken == 0 {
        return;
    }
    for slot in RECORD.iter().take(taken) {
        crate::println!(
            "point {:x} {} {:#x} {:#x}",
            slot.key.load(Ordering::Relaxed),
            slot.ordinal.load(Ordering::Relaxed),
            slot.rip.load(Ordering::Relaxed),
            slot.caller.load(Ordering::Acquire)
        );
    }
    crate::println!(
        "points: {taken} recorded{}",
        if taken == RECORD_SLOTS { " (the record is full: the first ones)" } else { "" }
    );
}

const COVER_SLOTS: usize = 4096;
static COVER_RIP: [AtomicUsize; COVER_SLOTS] = [const { AtomicUsize::new(0) }; COVER_SLOTS];
static COVER_COUNT: [AtomicU64; COVER_SLOTS] = [const { AtomicU64::new(0) }; COVER_SLOTS];
static PRINT_COVERAGE: AtomicUsize = AtomicUsize::new(0);
static COVER_DROPPED: AtomicU64 = AtomicU64::new(0);

/// Prints the coverage table at the end of the run (`coverage=on`).
pub fn print_coverage_at_exit() {
    PRINT_COVERAGE.store(1, Ordering::Relaxed);
}

/// Counts a preemption at `rip` (open addressing; a full table counts the site as dropped).
pub fn cover(rip: usize) {
    if rip == 0 {
        return;
    }
    let mut at = (rip.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52) % COVER_SLOTS;
    for _ in 0..COVER_SLOTS {
        match COVER_RIP[at].compare_exchange(0, rip, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => {}
            Err(held) if held == rip => {}
            Err(_) => {
                at = (at + 1) % COVER_SLOTS;
                continue;
            }
        }
        COVER_COUNT[at].fetch_add(1, Ordering::Relaxed);
        return;
    }
    COVER_DROPPED.fetch_add(1, Ordering::Relaxed);
}

/// Prints the coverage table (with `coverage=on`).
pub fn print_coverage() {
    if PRINT_COVERAGE.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut sites = 0;
    for (rip, count) in COVER_RIP.iter().zip(COVER_COUNT.iter()) {
        let rip = rip.load(Ordering::Relaxed);
        if rip != 0 {
            sites += 1;
            crate::println!("cover {rip:#x} {}", count.load(Ordering::Relaxed));
        }
    }
    crate::println!(
        "coverage: {sites} distinct preemption sites, {} preemptions not counted (table full)",
        COVER_DROPPED.load(Ordering::Relaxed)
    );
}

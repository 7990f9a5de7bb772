//! The seeds of a farm, FIRST, FIRST+1, ..., FIRST+N-1, and the order they are handed out in.
//!
//! Invariants: a farm has at least one seed and its last seed fits in a `u64` (checked when the
//! range is made); `take` hands out each seed at most once, in increasing order, to any number of
//! threads.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Result, bail};

/// The seeds still to run.
pub struct Seeds {
    first: u64,
    count: u64,
    /// How many `take` calls there were: the next seed is `first + taken` while `taken < count`.
    taken: AtomicU64,
}

impl Seeds {
    /// The `count` seeds from `first`.
    pub fn new(first: u64, count: u64) -> Result<Seeds> {
        if count == 0 {
            bail!("a stress farm needs at least one run");
        }
        if first.checked_add(count - 1).is_none() {
            bail!("seeds {first} and the {} after it do not fit in 64 bits: start lower (--seed)", count - 1);
        }
        Ok(Seeds { first, count, taken: AtomicU64::new(0) })
    }

    pub fn first(&self) -> u64 {
        self.first
    }

    pub fn last(&self) -> u64 {
        self.first + (self.count - 1)
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The next seed to run, or `None` when every seed has been handed out.
    pub fn take(&self) -> Option<u64> {
        // Each call counts once, so even after the end the counter passes `count` by at most
        // the number of calls: 2^64 of them are out of reach.
        let taken = self.taken.fetch_add(1, Ordering::Relaxed);
        (taken < self.count).then(|| self.first + taken)
    }
}

/// Seeds in increasing order, written short: runs of consecutive seeds as `FIRST-LAST`
/// (`1-3, 5, 8-9`).
pub fn describe(seeds: &[u64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < seeds.len() {
        let start = seeds[i];
        let mut end = start;
        while i + 1 < seeds.len() && end.checked_add(1) == Some(seeds[i + 1]) {
            i += 1;
            end = seeds[i];
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_each_seed_once_in_order() {
        let seeds = Seeds::new(5, 3).unwrap();
        assert_eq!((seeds.first(), seeds.last(), seeds.count()), (5, 7, 3));
        let taken: Vec<Option<u64>> = (0..5).map(|_| seeds.take()).collect();
        assert_eq!(taken, [Some(5), Some(6), Some(7), None, None]);
    }

    #[test]
    fn shared_by_threads_every_seed_runs_once() {
        let seeds = Seeds::new(1, 1000).unwrap();
        let mut all: Vec<u64> = std::thread::scope(|s| {
            let workers: Vec<_> =
                (0..4).map(|_| s.spawn(|| std::iter::from_fn(|| seeds.take()).collect::<Vec<u64>>())).collect();
            workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
        });
        all.sort_unstable();
        assert_eq!(all, (1..=1000).collect::<Vec<u64>>());
    }

    #[test]
    fn the_range_must_fit() {
        assert!(Seeds::new(1, 0).is_err());
        assert_eq!(Seeds::new(u64::MAX, 1).unwrap().last(), u64::MAX);
        let err = Seeds::new(u64::MAX - 1, 3).err().unwrap().to_string();
        assert!(err.contains("do not fit"), "{err}");
    }

    #[test]
    fn describes_ranges_shortly() {
        assert_eq!(describe(&[1, 2, 3, 5, 8, 9]), "1-3, 5, 8-9");
        assert_eq!(describe(&[7]), "7");
        assert_eq!(describe(&[]), "");
        assert_eq!(describe(&[u64::MAX - 1, u64::MAX]), format!("{}-{}", u64::MAX - 1, u64::MAX));
    }
}

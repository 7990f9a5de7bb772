//! Delta debugging (Zeller and Hildebrandt, "Simplifying and Isolating Failure-Inducing Input",
//! 2002): `ddmin` reduces a failing list to a 1-minimal one, a list that still fails but passes
//! once any single item is taken out.
//!
//! The candidates of one round (the n chunks, then their complements) are tried `jobs` at a time
//! in parallel, and the first failing one in order wins, so the result does not depend on which
//! run finishes first.

/// Reduces `items` (which must fail) to a 1-minimal failing sub-list. `fails` runs one
/// candidate; it is called from up to `jobs` threads at once. `progress` hears of each step.
pub fn ddmin<T, F>(items: Vec<T>, jobs: usize, fails: F, mut progress: impl FnMut(usize, usize)) -> Vec<T>
where
    T: Clone + Send + Sync,
    F: Fn(&[T]) -> bool + Sync,
{
    let mut items = items;
    let mut n = 2;
    while items.len() >= 2 {
        n = n.min(items.len());
        let chunks = split(&items, n);
        progress(items.len(), n);
        if let Some(chunk) = first_failing(&chunks, jobs, &fails) {
            items = chunks[chunk].clone();
            n = 2;
            continue;
        }
        let complements: Vec<Vec<T>> = (0..chunks.len())
            .map(|skip| {
                chunks.iter().enumerate().filter(|(i, _)| *i != skip).flat_map(|(_, c)| c.iter().cloned()).collect()
            })
            .collect();
        // With two chunks the complements are the chunks again: already tried.
        if n > 2
            && let Some(complement) = first_failing(&complements, jobs, &fails)
        {
            items = complements[complement].clone();
            n = (n - 1).max(2);
            continue;
        }
        if n == items.len() {
            break;
        }
        n = (2 * n).min(items.len());
    }
    items
}

/// `items` in `n` chunks of nearly equal length, in order.
fn split<T: Clone>(items: &[T], n: usize) -> Vec<Vec<T>> {
    let mut chunks = Vec::with_capacity(n);
    let mut start = 0;
    for i in 0..n {
        let end = start + (items.len() - start) / (n - i);
        chunks.push(items[start..end].to_vec());
        start = end;
    }
    chunks
}

/// The index of the first candidate that fails, trying `jobs` at a time.
fn first_failing<T: Sync, F: Fn(&[T]) -> bool + Sync>(candidates: &[Vec<T>], jobs: usize, fails: &F) -> Option<usize> {
    for (batch_index, batch) in candidates.chunks(jobs.max(1)).enumerate() {
        let verdicts: Vec<bool> = std::thread::scope(|scope| {
            let runs: Vec<_> = batch.iter().map(|c| scope.spawn(move || fails(c))).collect();
            runs.into_iter().map(|r| r.join().unwrap_or(false)).collect()
        });
        if let Some(i) = verdicts.iter().position(|&failed| failed) {
            return Some(batch_index * jobs.max(1) + i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn finds_the_two_items_that_matter() {
        let items: Vec<u32> = (0..1000).collect();
        let runs = AtomicUsize::new(0);
        let fails = |c: &[u32]| {
            runs.fetch_add(1, Ordering::Relaxed);
            c.contains(&17) && c.contains(&733)
        };
        assert_eq!(ddmin(items, 2, fails, |_, _| {}), [17, 733]);
        // Far fewer runs than trying the 1,000 items one by one (with two jobs, a round may run one
        // candidate past the first that fails).
        assert!(runs.load(Ordering::Relaxed) < 200, "{} runs", runs.load(Ordering::Relaxed));
    }

    #[test]
    fn the_result_is_one_minimal() {
        // Fails when at least three of the multiples of 10 are present.
        let fails = |c: &[u32]| c.iter().filter(|&&x| x % 10 == 0).count() >= 3;
        let result = ddmin((0..200).collect(), 3, fails, |_, _| {});
        assert_eq!(result.len(), 3);
        for skip in 0..result.len() {
            let fewer: Vec<u32> = result.iter().enumerate().filter(|(i, _)| *i != skip).map(|(_, &x)| x).collect();
            assert!(!fails(&fewer));
        }
    }

    #[test]
    fn splits_evenly_in_order() {
        assert_eq!(split(&[1, 2, 3, 4, 5], 2), [vec![1, 2], vec![3, 4, 5]]);
        assert_eq!(split(&[1, 2, 3], 3), [vec![1], vec![2], vec![3]]);
    }
}

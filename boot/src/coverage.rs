//! Preemption-point coverage (`--coverage`): the kernel prints `cover RIP COUNT` for every
//! distinct address a preemption landed on (`kernel::sched::explore::replay`); the runner folds
//! them into functions and prints how many distinct functions were preempted inside, and the
//! ones preempted most.

use std::collections::HashMap;

use crate::symbols::Symbolizer;

/// Preemptions per function, most first (ties by name), from the `cover` lines of `transcript`.
pub fn by_function(transcript: &str, symbols: &Symbolizer) -> Vec<(String, u64)> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for line in transcript.lines() {
        let mut words = line.split_whitespace();
        let (Some("cover"), Some(rip), Some(count), None) = (words.next(), words.next(), words.next(), words.next())
        else {
            continue;
        };
        let (Some(rip), Ok(count)) =
            (rip.strip_prefix("0x").and_then(|r| u64::from_str_radix(r, 16).ok()), count.parse::<u64>())
        else {
            continue;
        };
        let function = symbols.locate(rip).map_or_else(|| format!("{rip:#x}"), |(f, _)| f);
        *counts.entry(function).or_default() += count;
    }
    let mut list: Vec<(String, u64)> = counts.into_iter().collect();
    list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    list
}

/// The coverage report: the count of distinct functions and the `top` most preempted.
pub fn report(functions: &[(String, u64)], top: usize) -> String {
    let total: u64 = functions.iter().map(|f| f.1).sum();
    let mut text = format!("coverage: {} distinct functions preempted inside ({total} preemptions)\n", functions.len());
    for (function, count) in functions.iter().take(top) {
        text.push_str(&format!("  {count:>9}  {function}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_addresses_and_sorts() {
        let transcript = "boot\ncover 0x10 5\ncover 0x20 7\ncover 0x10 1\ncover junk 3\ncoverage: 2 sites\n";
        let functions = by_function(transcript, &Symbolizer::none());
        assert_eq!(functions, [("0x20".to_string(), 7), ("0x10".to_string(), 6)]);
        let text = report(&functions, 1);
        assert!(text.starts_with("coverage: 2 distinct functions preempted inside (13 preemptions)\n"));
        assert_eq!(text.lines().count(), 2);
    }
}

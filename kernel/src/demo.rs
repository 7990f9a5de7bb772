//! The default run: Go's concurrent prime sieve, then scheduler statistics.
//!
//! A generator thread sends 2, 3, 4, ... into a channel; each prime found starts a filter
//! thread that passes on only the numbers its prime does not divide, so the threads form a
//! chain as long as the list of primes. Every number travels through unbuffered channels from
//! thread to thread: thousands of context switches to print a hundred primes.
//!
//! Unlike Go's original, the chain shuts down cleanly: closing `done` ends every thread (each
//! waits in `select!` on its work and on `done`), and all are joined.

use alloc::vec::Vec;

use crate::sched::{JoinHandle, spawn};
use crate::sync::{Chan, chan};

/// Sends 2, 3, 4, ... on `out` until `done` closes.
fn generate(out: Chan<u64>, done: Chan<()>) {
    let mut i = 2;
    loop {
        let stop = crate::select! {
            send(out, i) => false,
            recv(done) -> _ => true,
        };
        if stop {
            return;
        }
        i += 1;
    }
}

/// Passes on the numbers from `input` that `prime` does not divide, until `done` closes.
fn filter(prime: u64, input: Chan<u64>, out: Chan<u64>, done: Chan<()>) {
    loop {
        let n = crate::select! {
            recv(input) -> n => n,
            recv(done) -> _ => None,
        };
        let Some(n) = n else { return };
        if n % prime != 0 {
            let stop = crate::select! {
                send(out, n) => false,
                recv(done) -> _ => true,
            };
            if stop {
                return;
            }
        }
    }
}

/// The first `count` primes, computed by a chain of `count` filter threads.
pub fn sieve(count: usize) -> Vec<u64> {
    let done: Chan<()> = chan(0);
    let mut threads: Vec<JoinHandle<()>> = Vec::with_capacity(count + 1);
    let mut ch: Chan<u64> = chan(0);
    {
        let (out, done) = (ch.clone(), done.clone());
        threads.push(spawn("generate", move || generate(out, done)));
    }
    let mut primes = Vec::with_capacity(count);
    for _ in 0..count {
        let prime = ch.recv().expect("the sieve's channels are never closed");
        primes.push(prime);
        let next: Chan<u64> = chan(0);
        let (input, out, done) = (ch, next.clone(), done.clone());
        threads.push(spawn("filter", move || filter(prime, input, out, done)));
        ch = next;
    }
    done.close();
    for t in threads {
        t.join().expect("a sieve thread died");
    }
    primes
}

/// The demo: print the first primes and the statistics.
pub fn run() {
    const PRIMES: usize = 100;
    crate::println!("demo: Go's concurrent prime sieve, one thread per prime, linked by channels");
    let primes = sieve(PRIMES);
    for row in primes.chunks(10) {
        let mut line = alloc::string::String::new();
        for p in row {
            line.push_str(&alloc::format!("{p:>6}"));
        }
        crate::println!("{line}");
    }
    crate::println!("demo: the first {} primes, found by {} threads", primes.len(), primes.len() + 1);
    crate::stats::print();
}

//! The workers' operations: spawn and join children, channel round trips through an echo child,
//! `select!` with timeouts, the shared counter under a `Mutex`, sleeps, heap churn, deep
//! recursion, and call-free loops; each checks the values it gets back.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::hint::black_box;
use core::sync::atomic::{AtomicU64, Ordering};

use super::shared::{Kind, Rng, STREAM_WORKER, Shared, Slot, pick};
use crate::sched::{sleep, try_spawn, yield_now};
use crate::sync::after;
use crate::sync::{Chan, Once, WaitGroup, chan};
use crate::time::now;

/// Heap blocks a worker keeps alive at once.
pub(super) const HEAP_SLOTS: usize = 8;

/// A child's answer to `input`, checked by its parent.
pub(super) fn child_value(input: u64) -> u64 {
    (input ^ (input >> 31)).wrapping_mul(0xd6e8_feb8_6659_fd93).rotate_left(17)
}

/// What an echo child sends back for `v`.
pub(super) fn echo_of(v: u64) -> u64 {
    !v.rotate_left(7)
}

/// What a `Once` of `op_spawn` stores (any value its readers can tell from zero).
const ONCE_VALUE: u64 = 0x0ce0_0ce0;

/// The children of one `op_spawn`: a `WaitGroup` they are counted in, and a `Once` they all call.
struct Family {
    group: WaitGroup,
    done: AtomicU64,
    once: Once,
    value: AtomicU64,
}

/// Spawns 1-4 children that do a little (yield, sleep, recurse), each calling one shared `Once`
/// (which must have run its function when `call_once` returns) and counted in a `WaitGroup` (whose
/// `wait` must return only when all have called `done`); joins them and checks each value.
pub(super) fn op_spawn(shared: &Shared, rng: &mut Rng) -> Result<(), String> {
    let n = 1 + rng.below(4);
    let family = Arc::new(Family {
        group: WaitGroup::new(),
        done: AtomicU64::new(0),
        once: Once::new(),
        value: AtomicU64::new(0),
    });
    family.group.add(n as i64);
    let mut children = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let input = rng.next();
        let mut child_rng = rng.child();
        let recursion_max = shared.recursion_max;
        let family = family.clone();
        let handle = try_spawn("stress-child", move || {
            let work = match child_rng.below(4) {
                0 => {
                    yield_now();
                    Ok(())
                }
                1 => {
                    sleep(child_rng.micros(500));
                    Ok(())
                }
                2 => recurse_and_check(child_rng.below(recursion_max as u64 / 4 + 1) as usize, child_rng.next()),
                _ => Ok(()),
            };
            family.once.call_once(|| {
                yield_now();
                family.value.store(ONCE_VALUE, Ordering::Release);
            });
            let seen = family.value.load(Ordering::Acquire);
            family.done.fetch_add(1, Ordering::Release);
            family.group.done();
            work?;
            if seen != ONCE_VALUE {
                return Err(format!("spawn: Once::call_once returned before its function had run (read {seen:#x})"));
            }
            Ok::<u64, String>(child_value(input))
        })
        .map_err(|e| format!("spawn: {e}"))?;
        children.push((input, handle));
    }
    family.group.wait();
    let done = family.done.load(Ordering::Acquire);
    if done != n {
        return Err(format!("spawn: WaitGroup::wait returned when {done} of {n} children had called done"));
    }
    for (input, child) in children {
        let got = child.join().map_err(|death| format!("spawn: a child died: {death}"))??;
        if got != child_value(input) {
            return Err(format!("spawn: a child returned {got:#x}, expected {:#x}", child_value(input)));
        }
    }
    Ok(())
}

/// Round trips through an echo child over a pair of channels (unbuffered, or capacity 1 or
/// 4, with as many values in flight as fit): every echo must come back, once, in order.
pub(super) fn op_channel(rng: &mut Rng) -> Result<(), String> {
    let capacity = [0, 1, 4][rng.below(3) as usize];
    let n = 1 + rng.below(32);
    let (to_echo, from_echo): (Chan<u64>, Chan<u64>) = (chan(capacity), chan(capacity));
    let echo = {
        let (input, output) = (to_echo.clone(), from_echo.clone());
        try_spawn("stress-echo", move || {
            let mut echoed = 0u64;
            while let Some(v) = input.recv() {
                output.send(echo_of(v));
                echoed += 1;
            }
            echoed
        })
        .map_err(|e| format!("channel: spawn: {e}"))?
    };
    let base = rng.next();
    let window = capacity.max(1) as u64;
    let exchange = || -> Result<(), String> {
        let (mut sent, mut received) = (0, 0);
        while received < n {
            while sent < n && sent - received < window {
                to_echo.send(base.wrapping_add(sent));
                sent += 1;
            }
            let got = from_echo.recv().ok_or("channel: the echo channel was closed")?;
            let want = echo_of(base.wrapping_add(received));
            if got != want {
                return Err(format!(
                    "channel (capacity {capacity}): echo {received} of {n} is {got:#x}, expected {want:#x} \
                     (lost, duplicated or reordered)"
                ));
            }
            received += 1;
        }
        Ok(())
    };
    let result = exchange();
    to_echo.close();
    // On a failed exchange the echo may still hold a value for us: take it so it can finish.
    while result.is_err() && !echo.is_finished() {
        let _ = from_echo.try_recv();
        yield_now();
    }
    let echoed = echo.join().map_err(|death| format!("channel: the echo child died: {death}"))?;
    result?;
    if echoed != n {
        return Err(format!("channel (capacity {capacity}): the echo child echoed {echoed} values, {n} were sent"));
    }
    if from_echo.try_recv() != Err(()) {
        return Err(format!("channel (capacity {capacity}): a value beyond the {n} echoes"));
    }
    Ok(())
}

/// `select!` with a timeout: on a channel nobody sends on (the timeout must win, not early),
/// or racing a child that sends once after a random delay (whichever wins, the value arrives
/// exactly once); and `select!` with `default` on an empty, then a full channel.
pub(super) fn op_select(rng: &mut Rng) -> Result<(), String> {
    match rng.below(3) {
        0 => {
            let never: Chan<u64> = chan(rng.below(2) as usize);
            let timeout = rng.micros(2000);
            let start = now();
            let timed_out = crate::select! {
                recv(never) -> _ => false,
                recv(after(timeout)) -> _ => true,
            };
            let waited = now() - start;
            if !timed_out {
                return Err(String::from("select: received on a channel nobody sends on"));
            }
            if waited < timeout {
                return Err(format!("select: timed out after {waited:?}, before its timeout of {timeout:?}"));
            }
        }
        1 => {
            let capacity = rng.below(2) as usize;
            let ch: Chan<u64> = chan(capacity);
            let (value, delay, timeout) = (rng.next(), rng.micros(2000), rng.micros(2000));
            let sender = {
                let ch = ch.clone();
                try_spawn("stress-sender", move || {
                    sleep(delay);
                    ch.send(value);
                })
                .map_err(|e| format!("select: spawn: {e}"))?
            };
            let won = crate::select! {
                recv(ch) -> v => v,
                recv(after(timeout)) -> _ => None,
            };
            // Timed out: the value is still to come (the sender is waiting or about to send).
            let got = match won {
                Some(v) => Some(v),
                None => ch.recv(),
            };
            sender.join().map_err(|death| format!("select: the sender died: {death}"))?;
            if got != Some(value) {
                return Err(format!("select (capacity {capacity}): received {got:?}, expected {value:#x}"));
            }
            if ch.try_recv() != Err(()) {
                return Err(format!("select (capacity {capacity}): the value arrived twice"));
            }
        }
        _ => {
            let ch: Chan<u64> = chan(1);
            let empty = crate::select! {
                recv(ch) -> _ => false,
                default => true,
            };
            if !empty {
                return Err(String::from("select: received from an empty channel instead of the default"));
            }
            let value = rng.next();
            ch.send(value);
            let got = crate::select! {
                recv(ch) -> v => v,
                default => None,
            };
            if got != Some(value) {
                return Err(format!("select: took the default (or {got:?}) with {value:#x} ready"));
            }
        }
    }
    Ok(())
}

/// 1-16 increments of the shared counter; one in eight yields with the mutex held.
pub(super) fn op_mutex(shared: &Shared, rng: &mut Rng) {
    for _ in 0..1 + rng.below(16) {
        shared.increment(rng.one_in(8));
    }
}

/// Sleeps 0-2 ms; the sleep must not end early.
pub(super) fn op_sleep(rng: &mut Rng) -> Result<(), String> {
    let duration = rng.micros(2000);
    let start = now();
    sleep(duration);
    let slept = now() - start;
    if slept < duration {
        return Err(format!("sleep: woke after {slept:?}, asked for {duration:?}"));
    }
    Ok(())
}

/// A heap block whose bytes follow from its tag.
pub(super) struct Block {
    pub(super) bytes: Vec<u8>,
    pub(super) tag: u64,
}

pub(super) fn pattern(tag: u64, i: usize) -> u8 {
    (tag >> ((i & 7) * 8)) as u8 ^ (i >> 3) as u8
}

impl Block {
    pub(super) fn new(len: usize, tag: u64) -> Block {
        Block { bytes: (0..len).map(|i| pattern(tag, i)).collect(), tag }
    }

    /// Grows the block by `more` bytes (the allocator may move it).
    pub(super) fn grow(&mut self, more: usize) {
        let len = self.bytes.len();
        let tag = self.tag;
        self.bytes.extend((len..len + more).map(|i| pattern(tag, i)));
    }

    pub(super) fn check(&self) -> Result<(), String> {
        match self.bytes.iter().enumerate().find(|&(i, &b)| b != pattern(self.tag, i)) {
            None => Ok(()),
            Some((i, &b)) => Err(format!(
                "alloc: byte {i} of a {}-byte heap block at {:p} is {b:#04x}, expected {:#04x}",
                self.bytes.len(),
                self.bytes.as_ptr(),
                pattern(self.tag, i)
            )),
        }
    }
}

/// A random size: mostly small, sometimes a few pages, rarely up to 128 KiB.
pub(super) fn block_size(rng: &mut Rng) -> usize {
    (match rng.below(20) {
        0 => 8192 + rng.below(120 * 1024),
        1..=5 => 257 + rng.below(8192 - 257),
        _ => 1 + rng.below(256),
    }) as usize
}

/// Replaces, grows or frees one of the worker's heap blocks, checking its bytes first.
pub(super) fn op_alloc(blocks: &mut [Option<Block>; HEAP_SLOTS], rng: &mut Rng) -> Result<(), String> {
    let slot = &mut blocks[rng.below(HEAP_SLOTS as u64) as usize];
    if let Some(block) = slot.as_mut() {
        block.check()?;
        if rng.one_in(3) {
            block.grow(1 + rng.below(4096) as usize);
            return block.check();
        }
    }
    *slot = if rng.one_in(4) { None } else { Some(Block::new(block_size(rng), rng.next())) };
    Ok(())
}

/// Words of the local array in each recursion frame.
pub(super) const FRAME_WORDS: usize = 32;

pub(super) fn frame_word(salt: u64, depth: u64, i: usize) -> u64 {
    (salt ^ depth.wrapping_mul(0x9e37_79b9_7f4a_7c15)).rotate_left(i as u32) ^ i as u64
}

pub(super) fn frame_sum(salt: u64, depth: u64) -> u64 {
    (0..FRAME_WORDS).fold(0u64, |sum, i| sum.wrapping_add(frame_word(salt, depth, i)))
}

/// Fills a local array, recurses until the stack pointer is below `target`, then sums the
/// array as it is after the deeper calls returned: returns (deepest depth, sum of all frames).
#[inline(never)]
pub(super) fn descend(depth: u64, target: usize, salt: u64) -> (u64, u64) {
    let mut frame = [0u64; FRAME_WORDS];
    for (i, word) in frame.iter_mut().enumerate() {
        *word = frame_word(salt, depth, i);
    }
    // The array escapes: the compiler must keep it in this frame and read it back from there.
    black_box(&mut frame);
    let (deepest, below) =
        if crate::arch::cpu::read_rsp() > target { descend(depth + 1, target, salt) } else { (depth, 0) };
    let own = frame.iter().fold(0u64, |sum, &w| sum.wrapping_add(w));
    (deepest, below.wrapping_add(own))
}

/// Recurses `bytes` deeper than here and checks that every frame's array survived.
pub(super) fn recurse_and_check(bytes: usize, salt: u64) -> Result<(), String> {
    let target = crate::arch::cpu::read_rsp().saturating_sub(bytes);
    let (deepest, sum) = descend(0, target, salt);
    let expected = (0..=deepest).fold(0u64, |s, depth| s.wrapping_add(frame_sum(salt, depth)));
    if sum != expected {
        return Err(format!(
            "recurse: {deepest} frames over {bytes} bytes of stack: checksum {sum:#x}, expected {expected:#x} \
             (a stack frame changed under its function)"
        ));
    }
    Ok(())
}

/// Recursion to a random depth, in this thread or in a fresh child.
pub(super) fn op_recurse(shared: &Shared, rng: &mut Rng) -> Result<(), String> {
    let bytes = rng.below(shared.recursion_max as u64 + 1) as usize;
    let salt = rng.next();
    if rng.one_in(2) {
        return recurse_and_check(bytes, salt);
    }
    try_spawn("stress-deep", move || recurse_and_check(bytes, salt))
        .map_err(|e| format!("recurse: spawn: {e}"))?
        .join()
        .map_err(|death| format!("recurse: the recursing child died: {death}"))?
}

/// The linear congruential step that `op_spin` iterates (Knuth's MMIX constants).
pub(super) const LCG_MUL: u64 = 6_364_136_223_846_793_005;
pub(super) const LCG_ADD: u64 = 1_442_695_040_888_963_407;

/// `x` after `n` steps of the LCG, in O(log n): the step is an affine map, and its powers are
/// computed by squaring (`a x + c` twice is `a^2 x + (a + 1) c`).
pub(super) fn lcg_jump(x: u64, mut n: u64) -> u64 {
    let (mut mul, mut add) = (1u64, 0u64);
    let (mut a, mut c) = (LCG_MUL, LCG_ADD);
    while n > 0 {
        if n & 1 == 1 {
            mul = mul.wrapping_mul(a);
            add = add.wrapping_mul(a).wrapping_add(c);
        }
        c = c.wrapping_mul(a.wrapping_add(1));
        a = a.wrapping_mul(a);
        n >>= 1;
    }
    x.wrapping_mul(mul).wrapping_add(add)
}

/// A tight loop without a single call, up to 200 us, or one time in sixteen 20-30 ms (long
/// enough for the timer to preempt it asynchronously, in `preempt=async`). Its state lives in
/// registers; an asynchronous preemption that failed to restore one would change the result.
pub(super) fn op_spin(rng: &mut Rng) -> Result<(), String> {
    let micros = if rng.one_in(16) { 20_000 + rng.below(10_000) } else { rng.below(200) };
    let start = rng.next();
    let end = crate::arch::cpu::rdtsc() + micros * crate::time::tsc_hz() / 1_000_000;
    let (mut x, mut steps) = (start, 0u64);
    while crate::arch::cpu::rdtsc() < end {
        x = x.wrapping_mul(LCG_MUL).wrapping_add(LCG_ADD);
        steps += 1;
    }
    let expected = lcg_jump(start, steps);
    if x != expected {
        return Err(format!(
            "spin: {steps} steps over {micros} us gave {x:#x}, expected {expected:#x} (registers changed under a \
             preempted loop)"
        ));
    }
    Ok(())
}

pub(super) fn worker(shared: &Shared, index: usize, slot: &Slot, seed: u64) {
    let mut rng = Rng::new(seed, STREAM_WORKER + index as u64);
    let mut blocks: [Option<Block>; HEAP_SLOTS] = Default::default();
    while !shared.stopped() {
        let kind = pick(&mut rng);
        slot.set_doing(kind);
        let done = match kind {
            Kind::Spawn => op_spawn(shared, &mut rng),
            Kind::Channel => op_channel(&mut rng),
            Kind::Select => op_select(&mut rng),
            Kind::Mutex => {
                op_mutex(shared, &mut rng);
                Ok(())
            }
            Kind::Sleep => op_sleep(&mut rng),
            Kind::Alloc => op_alloc(&mut blocks, &mut rng),
            Kind::Recurse => op_recurse(shared, &mut rng),
            Kind::Spin => op_spin(&mut rng),
            Kind::Lane | Kind::Queue => unreachable!("not in the workers' mix"),
        };
        match done {
            Ok(()) => shared.count(kind),
            Err(reason) => shared.fail(format!("worker {index}: {reason}")),
        }
        slot.tick();
        // Let others run even without timer preemption (`preempt=off`).
        yield_now();
    }
    for block in blocks.iter().flatten() {
        if let Err(reason) = block.check() {
            shared.fail(format!("worker {index}: {reason}"));
        }
    }
}

//! Reading the kernel's trace: the bytes its `trace::dump` wrote to QEMU's debug console (the
//! format is described in `kernel/src/trace/dump.rs`). Every malformed input is an error that
//! says what was expected where; nothing is guessed.

use anyhow::{Context, Result, bail, ensure};

/// What an event records (the kernel's `trace::Kind`, by number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Create,
    Name,
    Start,
    Stop,
    Ready,
    Steal,
    AsyncInject,
    Deferred,
    StackGrow,
    Overflow,
    TimerFired,
    Idle,
    Death,
}

impl Kind {
    fn from_number(n: u8) -> Option<Kind> {
        Some(match n {
            1 => Kind::Create,
            2 => Kind::Name,
            3 => Kind::Start,
            4 => Kind::Stop,
            5 => Kind::Ready,
            6 => Kind::Steal,
            7 => Kind::AsyncInject,
            8 => Kind::Deferred,
            9 => Kind::StackGrow,
            10 => Kind::Overflow,
            11 => Kind::TimerFired,
            12 => Kind::Idle,
            13 => Kind::Death,
            _ => return None,
        })
    }
}

/// Why a thread stopped (the kernel's `trace::Stop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Yield,
    Park,
    PreemptCoop,
    PreemptAsync,
    Exit,
    PreemptForced,
}

impl Stop {
    pub fn from_number(n: u8) -> Option<Stop> {
        Some(match n {
            1 => Stop::Yield,
            2 => Stop::Park,
            3 => Stop::PreemptCoop,
            4 => Stop::PreemptAsync,
            5 => Stop::Exit,
            6 => Stop::PreemptForced,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stop::Yield => "yield",
            Stop::Park => "park",
            Stop::PreemptCoop => "preempted (cooperative)",
            Stop::PreemptAsync => "preempted (asynchronous)",
            Stop::Exit => "exit",
            Stop::PreemptForced => "preempted (forced point)",
        }
    }
}

/// The kernel's `WaitReason` names, by number (`records/g.rs`).
pub fn wait_reason(n: u64) -> &'static str {
    match n {
        1 => "chan send",
        2 => "chan receive",
        3 => "select",
        4 => "sleep",
        5 => "mutex lock",
        6 => "wait group",
        7 => "once",
        8 => "join",
        _ => "-",
    }
}

/// One event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub tsc: u64,
    pub cpu: u32,
    pub g: u32,
    pub kind: Kind,
    pub detail: u8,
    pub arg: u64,
    pub arg2: u64,
}

/// The kernel's own counters when the trace stopped, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub spawns: u64,
    pub switches: u64,
    pub preempt_coop: u64,
    pub preempt_async: u64,
    pub preempt_deferred: u64,
    pub steals: u64,
    pub stack_growths: u64,
    pub overflows: u64,
}

/// A whole trace.
#[derive(Debug, Clone)]
pub struct Trace {
    pub tsc_hz: u64,
    pub cpus: u32,
    pub counters: Counters,
    /// Events recorded, per CPU (the overwritten ones included).
    pub written: Vec<u64>,
    /// The events kept, all CPUs, in time order (ties: by CPU, then as recorded).
    pub events: Vec<Event>,
}

impl Trace {
    /// Events recorded but overwritten in a full ring before the dump.
    pub fn overwritten(&self) -> u64 {
        self.written.iter().sum::<u64>() - self.events.len() as u64
    }
}

const MAGIC: &[u8; 8] = b"PTRACE01";
const END: &[u8; 8] = b"PTRACEND";
const EVENT_SIZE: usize = 32;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        let end =
            self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).with_context(|| {
                format!("the trace ends at byte {} while reading {what} ({n} bytes)", self.bytes.len())
            })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into()?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into()?))
    }
}

/// Parses the bytes of a trace.
pub fn parse(bytes: &[u8]) -> Result<Trace> {
    ensure!(
        !bytes.is_empty(),
        "the trace is empty: the kernel wrote nothing to the debug console (was trace=on given?)"
    );
    let start = bytes
        .windows(MAGIC.len())
        .position(|w| w == MAGIC)
        .with_context(|| format!("no trace header ({:?}) in {} bytes", "PTRACE01", bytes.len()))?;
    let mut r = Reader { bytes, at: start + MAGIC.len() };
    let version = r.u32("the version")?;
    ensure!(version == 1, "trace format version {version}, this runner reads version 1");
    let cpus = r.u32("the CPU count")?;
    ensure!((1..=64).contains(&cpus), "a trace of {cpus} CPUs");
    let tsc_hz = r.u64("the TSC frequency")?;
    ensure!(tsc_hz > 0, "a TSC frequency of 0");
    let size = r.u32("the event size")? as usize;
    ensure!(size == EVENT_SIZE, "events of {size} bytes, expected {EVENT_SIZE}");
    let ncounters = r.u32("the counter count")?;
    ensure!(ncounters == 8, "{ncounters} counters in the header, expected 8");
    let mut c = [0u64; 8];
    for (i, v) in c.iter_mut().enumerate() {
        *v = r.u64(&format!("counter {i}"))?;
    }
    let counters = Counters {
        spawns: c[0],
        switches: c[1],
        preempt_coop: c[2],
        preempt_async: c[3],
        preempt_deferred: c[4],
        steals: c[5],
        stack_growths: c[6],
        overflows: c[7],
    };
    let mut written = Vec::new();
    let mut events = Vec::new();
    for expected in 0..cpus {
        let cpu = r.u32("a CPU's number")?;
        ensure!(cpu == expected, "CPU {cpu}'s events where CPU {expected}'s were expected");
        r.u32("padding")?;
        let total = r.u64("the events written")?;
        let kept = r.u64("the events kept")?;
        ensure!(kept <= total, "CPU {cpu} kept {kept} events of {total} written");
        written.push(total);
        let mut last = 0u64;
        for i in 0..kept {
            let e = r.take(EVENT_SIZE, "an event")?;
            let word = |at: usize| u64::from_le_bytes(e[at..at + 8].try_into().expect("8 bytes"));
            let kind =
                Kind::from_number(e[12]).with_context(|| format!("CPU {cpu}, event {i}: unknown kind {}", e[12]))?;
            let tsc = word(0);
            ensure!(tsc >= last, "CPU {cpu}, event {i}: time goes back ({tsc} after {last})");
            last = tsc;
            events.push(Event {
                tsc,
                cpu,
                g: u32::from_le_bytes(e[8..12].try_into()?),
                kind,
                detail: e[13],
                arg: word(16),
                arg2: word(24),
            });
        }
    }
    if r.take(END.len(), "the end marker")? != END {
        bail!("the trace does not end with its end marker: it was cut or garbled");
    }
    events.sort_by_key(|e| (e.tsc, e.cpu));
    Ok(Trace { tsc_hz, cpus, counters, written, events })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An event as a test writes it: (tsc, g, kind, detail, arg).
    pub(crate) type RawEvent = (u64, u32, u8, u8, u64);

    /// A trace in the kernel's format, with `cpus[i]` the events of CPU i.
    pub(crate) fn bytes(counters: [u64; 8], cpus: &[Vec<RawEvent>]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&(cpus.len() as u32).to_le_bytes());
        b.extend_from_slice(&1_000_000_000u64.to_le_bytes());
        b.extend_from_slice(&32u32.to_le_bytes());
        b.extend_from_slice(&8u32.to_le_bytes());
        for c in counters {
            b.extend_from_slice(&c.to_le_bytes());
        }
        for (cpu, events) in cpus.iter().enumerate() {
            b.extend_from_slice(&(cpu as u32).to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
            b.extend_from_slice(&(events.len() as u64).to_le_bytes());
            b.extend_from_slice(&(events.len() as u64).to_le_bytes());
            for &(tsc, g, kind, detail, arg) in events {
                b.extend_from_slice(&tsc.to_le_bytes());
                b.extend_from_slice(&g.to_le_bytes());
                b.extend_from_slice(&[kind, detail, 0, 0]);
                b.extend_from_slice(&arg.to_le_bytes());
                b.extend_from_slice(&0u64.to_le_bytes());
            }
        }
        b.extend_from_slice(END);
        b
    }

    #[test]
    fn parses_and_orders_events_of_all_cpus() {
        let t = parse(&bytes(
            [1, 2, 0, 0, 0, 0, 0, 0],
            &[vec![(10, 1, 3, 0, 0), (30, 1, 4, 1, 0)], vec![(20, 2, 3, 0, 0)]],
        ))
        .expect("a valid trace");
        assert_eq!(t.cpus, 2);
        assert_eq!(t.counters.switches, 2);
        let order: Vec<(u64, u32)> = t.events.iter().map(|e| (e.tsc, e.cpu)).collect();
        assert_eq!(order, [(10, 0), (20, 1), (30, 0)]);
        assert_eq!(t.overwritten(), 0);
    }

    #[test]
    fn rejects_cut_and_unknown_input() {
        let good = bytes([0; 8], &[vec![(10, 1, 3, 0, 0)]]);
        let cut = &good[..good.len() - 12];
        assert!(format!("{:#}", parse(cut).unwrap_err()).contains("ends at byte"), "a cut trace");
        let mut bad = good.clone();
        let kind_at = good.len() - 8 - 32 + 12;
        bad[kind_at] = 99;
        assert!(format!("{:#}", parse(&bad).unwrap_err()).contains("unknown kind 99"));
        assert!(format!("{:#}", parse(b"").unwrap_err()).contains("empty"));
    }
}

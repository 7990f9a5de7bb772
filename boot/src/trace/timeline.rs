//! From events to a timeline: what ran where and when (`Run`s and `Idle` spans per CPU), the
//! moments worth a mark (preemptions, steals, wake-ups...), and the wake-ups as flows from the
//! thread that readied to the thread readied, ending where it next starts. Both viewers (Chrome
//! JSON, SVG) draw this model.
//!
//! A wake-up done on the scheduler's stack on behalf of a thread (the joiner woken by a thread's
//! exit, the waiter released when a thread parks) is recorded with no readying thread; it is
//! credited to the thread that last stopped on that CPU, unless a timer fired in between (then
//! the timer woke it, and there is no flow).

use std::collections::{BTreeMap, HashMap};

use super::decode::{Event, Kind, Stop, Trace};

/// A thread running on a CPU from `start` to `end` (TSC).
#[derive(Debug, Clone)]
pub struct Run {
    pub cpu: u32,
    pub g: u32,
    pub start: u64,
    pub end: u64,
    /// How it ended (`None`: the trace ended while it ran, or its stop was overwritten).
    pub stop: Option<Stop>,
    /// The wait reason of a park (the kernel's number).
    pub wait_reason: u64,
}

/// A CPU halted for lack of work.
#[derive(Debug, Clone)]
pub struct Idle {
    pub cpu: u32,
    pub start: u64,
    pub end: u64,
}

/// Something that happened at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    Created { by: u32 },
    Readied { by: u32 },
    Stolen { from: u32 },
    PreemptedCoop,
    PreemptedAsync,
    AsyncInjected,
    Deferred { at_timer: bool },
    StackGrew { bytes: u64 },
    Overflow,
    Died { how: u8 },
    TimerFired,
}

/// A mark: `what` happened to thread `g` (0: none) on `cpu` at `at`.
#[derive(Debug, Clone)]
pub struct Mark {
    pub cpu: u32,
    pub g: u32,
    pub at: u64,
    pub what: What,
}

/// A wake-up: thread `from` readied thread `to` at `at`; `to` next started at `started` on
/// `to_cpu`. `from_at` is a moment inside a run of `from` (the ready itself, or the end of its
/// last run when it readied from the scheduler's stack).
#[derive(Debug, Clone)]
pub struct Flow {
    pub from: u32,
    pub from_at: u64,
    pub to: u32,
    pub started: u64,
    pub to_cpu: u32,
}

#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub cpus: u32,
    pub tsc_hz: u64,
    /// First and last event (TSC).
    pub t0: u64,
    pub t1: u64,
    pub names: BTreeMap<u32, String>,
    pub runs: Vec<Run>,
    pub idles: Vec<Idle>,
    pub marks: Vec<Mark>,
    pub flows: Vec<Flow>,
}

impl Timeline {
    /// The display name of thread `g`: `7 worker`.
    pub fn label(&self, g: u32) -> String {
        match self.names.get(&g) {
            Some(name) => format!("{g} {name}"),
            None => format!("{g}"),
        }
    }

    /// Microseconds since the first event.
    pub fn micros(&self, tsc: u64) -> f64 {
        tsc.saturating_sub(self.t0) as f64 * 1e6 / self.tsc_hz as f64
    }
}

/// Per CPU, while walking the events.
#[derive(Default)]
struct CpuState {
    running: Option<(u32, u64)>,
    idle_since: Option<u64>,
    /// The thread that last stopped here, and when, unless a timer fired since.
    last_stopped: Option<(u32, u64)>,
}

/// Builds the timeline of `trace`.
pub fn build(trace: &Trace) -> Timeline {
    let mut t = Timeline {
        cpus: trace.cpus,
        tsc_hz: trace.tsc_hz,
        t0: trace.events.first().map_or(0, |e| e.tsc),
        t1: trace.events.last().map_or(0, |e| e.tsc),
        ..Timeline::default()
    };
    let mut cpus: Vec<CpuState> = (0..trace.cpus).map(|_| CpuState::default()).collect();
    let mut name_parts: HashMap<u32, [Vec<u8>; 2]> = HashMap::new();
    // Readied threads not started yet: readier and the moment inside its run.
    let mut pending: HashMap<u32, (u32, u64)> = HashMap::new();
    for e in &trace.events {
        let cpu = &mut cpus[e.cpu as usize];
        match e.kind {
            Kind::Start => {
                end_idle(&mut t, e.cpu, cpu, e.tsc);
                if let Some((g, start)) = cpu.running.take() {
                    t.runs.push(Run { cpu: e.cpu, g, start, end: e.tsc, stop: None, wait_reason: 0 });
                }
                cpu.running = Some((e.g, e.tsc));
                if let Some((from, from_at)) = pending.remove(&e.g) {
                    t.flows.push(Flow { from, from_at, to: e.g, started: e.tsc, to_cpu: e.cpu });
                }
            }
            Kind::Stop => {
                let stop = Stop::from_number(e.detail);
                if let Some((g, start)) = cpu.running.take() {
                    t.runs.push(Run { cpu: e.cpu, g, start, end: e.tsc, stop, wait_reason: e.arg });
                }
                cpu.last_stopped = Some((e.g, e.tsc));
                match stop {
                    Some(Stop::PreemptCoop | Stop::PreemptForced) => mark(&mut t, e, What::PreemptedCoop),
                    Some(Stop::PreemptAsync) => mark(&mut t, e, What::PreemptedAsync),
                    _ => {}
                }
            }
            Kind::Idle => {
                if let Some((g, start)) = cpu.running.take() {
                    t.runs.push(Run { cpu: e.cpu, g, start, end: e.tsc, stop: None, wait_reason: 0 });
                }
                cpu.idle_since.get_or_insert(e.tsc);
            }
            Kind::Ready => {
                let by = if e.arg != 0 {
                    Some((e.arg as u32, e.tsc))
                } else {
                    // On the scheduler's stack: for the thread that just stopped here.
                    cpu.last_stopped.map(|(g, at)| (g, at.saturating_sub(1)))
                };
                mark(&mut t, e, What::Readied { by: by.map_or(0, |b| b.0) });
                if let Some(by) = by {
                    pending.insert(e.g, by);
                }
            }
            Kind::TimerFired => {
                cpu.last_stopped = None;
                mark(&mut t, e, What::TimerFired);
            }
            Kind::Create => mark(&mut t, e, What::Created { by: e.arg as u32 }),
            Kind::Name => {
                let mut bytes = e.arg.to_le_bytes().to_vec();
                bytes.extend_from_slice(&e.arg2.to_le_bytes());
                bytes.retain(|&b| b != 0);
                name_parts.entry(e.g).or_default()[usize::from(e.detail.min(1))] = bytes;
            }
            Kind::Steal => mark(&mut t, e, What::Stolen { from: e.arg as u32 }),
            Kind::AsyncInject => mark(&mut t, e, What::AsyncInjected),
            Kind::Deferred => mark(&mut t, e, What::Deferred { at_timer: e.detail != 0 }),
            Kind::StackGrow => mark(&mut t, e, What::StackGrew { bytes: e.arg }),
            Kind::Overflow => mark(&mut t, e, What::Overflow),
            Kind::Death => mark(&mut t, e, What::Died { how: e.detail }),
        }
    }
    let end = t.t1;
    for (id, cpu) in cpus.iter_mut().enumerate() {
        end_idle(&mut t, id as u32, cpu, end);
        if let Some((g, start)) = cpu.running.take() {
            t.runs.push(Run { cpu: id as u32, g, start, end, stop: None, wait_reason: 0 });
        }
    }
    for (g, [lo, hi]) in name_parts {
        let mut bytes = lo;
        bytes.extend_from_slice(&hi);
        t.names.insert(g, String::from_utf8_lossy(&bytes).into_owned());
    }
    t
}

fn end_idle(t: &mut Timeline, id: u32, cpu: &mut CpuState, at: u64) {
    if let Some(start) = cpu.idle_since.take() {
        t.idles.push(Idle { cpu: id, start, end: at });
    }
}

fn mark(t: &mut Timeline, e: &Event, what: What) {
    t.marks.push(Mark { cpu: e.cpu, g: e.g, at: e.tsc, what });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::decode::{parse, tests::bytes};

    #[test]
    fn runs_marks_and_flows() {
        // CPU 0: thread 1 runs 10..30, readies 2 at 20, is preempted at 30; thread 2 runs from 40.
        // CPU 1: idle from 5, steals thread 3 at 50, which runs to the end (60).
        let trace = parse(&bytes(
            [0; 8],
            &[
                vec![(10, 1, 3, 0, 0), (20, 2, 5, 0, 1), (30, 1, 4, 3, 0), (40, 2, 3, 1, 0)],
                vec![(5, 0, 12, 0, 0), (50, 3, 6, 0, 0), (50, 3, 3, 0, 0), (60, 3, 9, 0, 8192)],
            ],
        ))
        .unwrap();
        let t = build(&trace);
        let runs: Vec<(u32, u32, u64, u64)> = t.runs.iter().map(|r| (r.cpu, r.g, r.start, r.end)).collect();
        assert_eq!(runs, [(0, 1, 10, 30), (0, 2, 40, 60), (1, 3, 50, 60)]);
        assert_eq!(t.runs[0].stop, Some(Stop::PreemptCoop));
        assert_eq!(t.idles.len(), 1);
        assert_eq!((t.idles[0].start, t.idles[0].end), (5, 50));
        assert_eq!(t.flows.len(), 1);
        assert_eq!((t.flows[0].from, t.flows[0].to, t.flows[0].started), (1, 2, 40));
        assert!(t.marks.iter().any(|m| m.what == What::Stolen { from: 0 } && m.g == 3));
        assert!(t.marks.iter().any(|m| m.what == What::PreemptedCoop && m.g == 1));
    }
}

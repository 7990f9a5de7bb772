//! The timeline as a Chrome JSON trace (the Trace Event Format, which ui.perfetto.dev and
//! chrome://tracing open). Chosen over ftrace text because it says directly what we have --
//! slices on named tracks, instants, and flows between slices -- without pretending to be Linux
//! (ftrace's `sched_switch` lines need Linux pids and prev/next states to mean anything).
//!
//! Layout: process 0 "CPUs" has one track per CPU (a slice per thread run, named after the
//! thread, and "idle" slices); process 1 "Threads" has one track per thread (a slice per run,
//! named after the CPU), with instants (`ph: "i"`, thread scope) for wake-ups, steals,
//! preemptions and the rest, and flows (`ph: "s"` in the readier's run, `ph: "f"` with
//! `bp: "e"` in the readied thread's next run) from each readier to the thread it readied.
//! Timestamps are microseconds (`ts`, `dur`, fractional); `otherData` carries the kernel's own
//! counters, so that a reader (and the runner's test) can check the events against them.

use serde_json::{Value, json};

use super::decode::{Trace, wait_reason};
use super::timeline::{Timeline, What};

/// Process ids of the two groups of tracks.
pub const CPUS_PID: u32 = 0;
pub const THREADS_PID: u32 = 1;

/// The name of an instant, as the viewer shows it.
pub fn instant_name(t: &Timeline, what: &What) -> String {
    match what {
        What::Created { by: 0 } => "created".into(),
        What::Created { by } => format!("created by {}", t.label(*by)),
        What::Readied { by: 0 } => "readied by the scheduler".into(),
        What::Readied { by } => format!("readied by {}", t.label(*by)),
        What::Stolen { from } => format!("stolen from CPU {from}"),
        What::PreemptedCoop => "preempted (cooperative)".into(),
        What::PreemptedAsync => "preempted (asynchronous)".into(),
        What::AsyncInjected => "async preemption injected".into(),
        What::Deferred { at_timer: false } => "preemption deferred (at a prologue)".into(),
        What::Deferred { at_timer: true } => "preemption deferred (at the timer)".into(),
        What::StackGrew { bytes } => format!("stack grew to {} KiB", bytes / 1024),
        What::Overflow => "stack overflow".into(),
        What::Died { how: 0 } => "died: panic".into(),
        What::Died { how: 1 } => "died: CPU exception".into(),
        What::Died { .. } => "died: stack overflow".into(),
        What::TimerFired => "timer fired".into(),
    }
}

/// The Chrome JSON document of `timeline` (made from `trace`).
pub fn document(trace: &Trace, t: &Timeline) -> Value {
    let mut events: Vec<Value> = Vec::new();
    let meta = |pid: u32, tid: Option<u32>, name: &str, value: Value| {
        let mut e = json!({"ph": "M", "pid": pid, "name": name, "args": value});
        if let Some(tid) = tid {
            e["tid"] = json!(tid);
        }
        e
    };
    events.push(meta(CPUS_PID, None, "process_name", json!({"name": "CPUs"})));
    events.push(meta(CPUS_PID, None, "process_sort_index", json!({"sort_index": 0})));
    events.push(meta(THREADS_PID, None, "process_name", json!({"name": "Threads"})));
    events.push(meta(THREADS_PID, None, "process_sort_index", json!({"sort_index": 1})));
    for cpu in 0..t.cpus {
        events.push(meta(CPUS_PID, Some(cpu), "thread_name", json!({"name": format!("CPU {cpu}")})));
        events.push(meta(CPUS_PID, Some(cpu), "thread_sort_index", json!({"sort_index": cpu})));
    }
    let mut threads: Vec<u32> = t.runs.iter().map(|r| r.g).chain(t.marks.iter().map(|m| m.g)).collect();
    threads.sort_unstable();
    threads.dedup();
    threads.retain(|&g| g != 0);
    for &g in &threads {
        events.push(meta(THREADS_PID, Some(g), "thread_name", json!({"name": t.label(g)})));
        events.push(meta(THREADS_PID, Some(g), "thread_sort_index", json!({"sort_index": g})));
    }
    for r in &t.runs {
        let stopped = match r.stop {
            Some(super::decode::Stop::Park) => format!("park ({})", wait_reason(r.wait_reason)),
            Some(stop) => stop.as_str().to_string(),
            None => "still running when the trace ended".into(),
        };
        let (ts, dur) = (t.micros(r.start), t.micros(r.end) - t.micros(r.start));
        events.push(json!({"ph": "X", "cat": "run", "name": t.label(r.g), "pid": CPUS_PID, "tid": r.cpu,
            "ts": ts, "dur": dur, "args": {"thread": r.g, "stopped": stopped}}));
        events.push(json!({"ph": "X", "cat": "run", "name": format!("CPU {}", r.cpu), "pid": THREADS_PID,
            "tid": r.g, "ts": ts, "dur": dur, "args": {"cpu": r.cpu, "stopped": stopped}}));
    }
    for i in &t.idles {
        let (ts, dur) = (t.micros(i.start), t.micros(i.end) - t.micros(i.start));
        events.push(json!({"ph": "X", "cat": "idle", "name": "idle", "pid": CPUS_PID, "tid": i.cpu,
            "ts": ts, "dur": dur}));
    }
    for m in &t.marks {
        let name = instant_name(t, &m.what);
        let ts = t.micros(m.at);
        if m.g != 0 {
            events.push(json!({"ph": "i", "s": "t", "cat": "mark", "name": name, "pid": THREADS_PID, "tid": m.g,
                "ts": ts, "args": {"cpu": m.cpu}}));
        }
        // Steals and preemptions also on the CPU's track, where they happen.
        if matches!(m.what, What::Stolen { .. } | What::PreemptedCoop | What::PreemptedAsync | What::TimerFired) {
            events.push(json!({"ph": "i", "s": "t", "cat": "cpu-mark", "name": name, "pid": CPUS_PID,
                "tid": m.cpu, "ts": ts, "args": {"thread": m.g}}));
        }
    }
    for (id, f) in t.flows.iter().enumerate() {
        events.push(json!({"ph": "s", "cat": "wakeup", "name": "wake-up", "id": id, "pid": THREADS_PID,
            "tid": f.from, "ts": t.micros(f.from_at)}));
        events.push(json!({"ph": "f", "bp": "e", "cat": "wakeup", "name": "wake-up", "id": id,
            "pid": THREADS_PID, "tid": f.to, "ts": t.micros(f.started)}));
    }
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ns",
        "otherData": {
            "source": "Prologue scheduler trace",
            "tsc_hz": trace.tsc_hz,
            "cpus": trace.cpus,
            "events_kept": trace.events.len(),
            "events_overwritten": trace.overwritten(),
            "kernel_counters": trace.counters,
        }
    })
}

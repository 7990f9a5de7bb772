//! The runner's side of the scheduler trace (`cargo run -- trace [run|test ...|stress ...] --out
//! DIR`): the kernel runs with `trace=on` and QEMU writes its debug console to `DIR/trace.bin`
//! (a channel of its own: the console's output never mixes with it); when QEMU has exited, the
//! trace is decoded (`decode`), turned into a timeline (`timeline`) and written as a Chrome JSON
//! trace for ui.perfetto.dev (`chrome`, `DIR/trace.json`) and as an SVG picture (`svg`,
//! `DIR/timeline.svg`). docs/tracing.md says how to read them.

pub mod chrome;
pub mod decode;
pub mod svg;
pub mod timeline;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// What `write_views` wrote.
#[derive(Debug)]
pub struct Written {
    pub json: PathBuf,
    pub svg: PathBuf,
    pub events: usize,
    pub overwritten: u64,
    pub threads: usize,
    pub cpus: u32,
    /// The traced span in microseconds of the guest's clock.
    pub span_us: f64,
}

/// The file QEMU writes the debug console to, in `dir`.
pub fn raw_path(dir: &Path) -> PathBuf {
    dir.join("trace.bin")
}

/// Reads `DIR/trace.bin` and writes `DIR/trace.json` and `DIR/timeline.svg`, titled `title`.
pub fn write_views(dir: &Path, title: &str) -> Result<Written> {
    let raw = raw_path(dir);
    let bytes = std::fs::read(&raw).with_context(|| format!("reading the trace {}", raw.display()))?;
    let trace = decode::parse(&bytes).with_context(|| format!("decoding the trace {}", raw.display()))?;
    let timeline = timeline::build(&trace);
    let json = dir.join("trace.json");
    let text = serde_json::to_string(&chrome::document(&trace, &timeline))?;
    std::fs::write(&json, text).with_context(|| format!("writing {}", json.display()))?;
    let svg = dir.join("timeline.svg");
    std::fs::write(&svg, svg::document(&timeline, title)).with_context(|| format!("writing {}", svg.display()))?;
    Ok(Written {
        json,
        svg,
        events: trace.events.len(),
        overwritten: trace.overwritten(),
        threads: timeline.names.len(),
        cpus: trace.cpus,
        span_us: timeline.micros(timeline.t1),
    })
}

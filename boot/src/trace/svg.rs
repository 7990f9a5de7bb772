//! The timeline as a self-contained SVG picture (no script, no fonts or styles fetched): one lane
//! per CPU, each thread's runs as bars in the thread's own colour, marks for preemptions (red
//! triangles above the lane: filled for cooperative, hollow for asynchronous) and steals (blue
//! diamonds below it), an axis in microseconds or milliseconds of the guest's clock, and a
//! legend of the threads that ran longest. Any browser shows it.

use std::collections::HashMap;
use std::fmt::Write;

use super::timeline::{Timeline, What};

const WIDTH: f64 = 1600.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const LANE: f64 = 36.0;
const GAP: f64 = 14.0;
/// Runs narrower than this (pixels) are not drawn (they are counted in a note).
const MIN_WIDTH: f64 = 0.1;
/// Threads named in the legend.
const LEGEND: usize = 16;

/// A thread's colour: hues spread by the golden angle, so neighbouring ids differ.
pub fn colour(g: u32) -> String {
    format!("hsl({}, 65%, 52%)", (u64::from(g) * 137) % 360)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A round step for about `n` ticks over `span` microseconds.
fn tick_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(1e-3);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude)
}

fn time_label(us: f64, step: f64) -> String {
    if step >= 1000.0 { format!("{} ms", us / 1000.0) } else { format!("{us} µs") }
}

/// The SVG document of `t`, titled `title`.
pub fn document(t: &Timeline, title: &str) -> String {
    let plot = WIDTH - LEFT - RIGHT;
    let span_us = t.micros(t.t1).max(1e-3);
    let x = |tsc: u64| LEFT + t.micros(tsc) / span_us * plot;
    let lane_y = |cpu: u32| TOP + f64::from(cpu) * (LANE + GAP);
    let axis_y = lane_y(t.cpus) + 4.0;

    // The legend: threads by time run.
    let mut run_time: HashMap<u32, u64> = HashMap::new();
    for r in &t.runs {
        *run_time.entry(r.g).or_default() += r.end - r.start;
    }
    let mut by_time: Vec<(u32, u64)> = run_time.into_iter().collect();
    by_time.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let busy: u64 = by_time.iter().map(|(_, d)| d).sum::<u64>().max(1);
    let legend_rows = by_time.len().min(LEGEND).div_ceil(4);
    let height = axis_y + 40.0 + legend_rows as f64 * 20.0 + 40.0;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{LEFT}" y="24" font-size="16">{}</text>"#, escape(title));
    let mut hidden = 0usize;
    for cpu in 0..t.cpus {
        let y = lane_y(cpu);
        let _ = writeln!(s, r#"<g class="lane" data-cpu="{cpu}">"#);
        let _ = writeln!(s, r##"<rect x="{LEFT}" y="{y}" width="{plot}" height="{LANE}" fill="#f2f2f2"/>"##);
        let _ = writeln!(s, r#"<text x="8" y="{}">CPU {cpu}</text>"#, y + LANE / 2.0 + 4.0);
        for r in t.runs.iter().filter(|r| r.cpu == cpu) {
            let (x0, x1) = (x(r.start), x(r.end));
            let w = x1 - x0;
            if w < MIN_WIDTH {
                hidden += 1;
                continue;
            }
            let _ = write!(s, r#"<rect x="{x0:.2}" y="{y}" width="{w:.2}" height="{LANE}" fill="{}">"#, colour(r.g));
            if w >= 1.5 {
                let _ = write!(
                    s,
                    "<title>{} on CPU {cpu}: {:.1} µs from {:.1} µs</title>",
                    escape(&t.label(r.g)),
                    t.micros(r.end) - t.micros(r.start),
                    t.micros(r.start)
                );
            }
            s.push_str("</rect>\n");
        }
        for m in t.marks.iter().filter(|m| m.cpu == cpu) {
            let mx = x(m.at);
            match m.what {
                What::PreemptedCoop | What::PreemptedAsync => {
                    let fill = if m.what == What::PreemptedCoop { "#d62728" } else { "none" };
                    let _ = writeln!(
                        s,
                        r##"<path class="preempt" d="M{:.2},{:.1} l-3,-6 h6 z" fill="{fill}" stroke="#d62728"/>"##,
                        mx,
                        y - 1.0
                    );
                }
                What::Stolen { .. } => {
                    let _ = writeln!(
                        s,
                        r##"<path class="steal" d="M{:.2},{:.1} l3,4 l-3,4 l-3,-4 z" fill="#1f77b4"/>"##,
                        mx,
                        y + LANE + 1.0
                    );
                }
                _ => {}
            }
        }
        s.push_str("</g>\n");
    }
    // The axis.
    let step = tick_step(span_us, 10.0);
    let _ = writeln!(
        s,
        r#"<g class="axis"><line x1="{LEFT}" y1="{axis_y}" x2="{}" y2="{axis_y}" stroke="black"/>"#,
        LEFT + plot
    );
    let mut at = 0.0;
    while at <= span_us + 1e-9 {
        let tx = LEFT + at / span_us * plot;
        let _ = writeln!(
            s,
            r#"<line x1="{tx:.2}" y1="{axis_y}" x2="{tx:.2}" y2="{}" stroke="black"/><text x="{tx:.2}" y="{}" text-anchor="middle">{}</text>"#,
            axis_y + 5.0,
            axis_y + 18.0,
            time_label((at * 1000.0).round() / 1000.0, step)
        );
        at += step;
    }
    s.push_str("</g>\n");
    // The legend.
    let legend_y = axis_y + 40.0;
    let _ = writeln!(s, r#"<g class="legend">"#);
    for (i, (g, d)) in by_time.iter().take(LEGEND).enumerate() {
        let lx = LEFT + (i % 4) as f64 * 370.0;
        let ly = legend_y + (i / 4) as f64 * 20.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{ly}">{} ({:.1}% of the time run)</text>"#,
            ly - 10.0,
            colour(*g),
            lx + 18.0,
            escape(&t.label(*g)),
            *d as f64 * 100.0 / busy as f64
        );
    }
    let note_y = legend_y + legend_rows as f64 * 20.0 + 10.0;
    let mut note = String::from("▼ preempted (filled: cooperative, hollow: asynchronous)   ◆ stolen");
    if hidden > 0 {
        let _ = write!(note, "   ({hidden} runs narrower than {MIN_WIDTH} px not drawn)");
    }
    let _ = writeln!(s, r#"<text x="{LEFT}" y="{note_y}">{}</text>"#, escape(&note));
    s.push_str("</g>\n</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(1000.0, 10.0), 100.0);
        assert_eq!(tick_step(1300.0, 10.0), 200.0);
        assert_eq!(tick_step(45.0, 10.0), 5.0);
        assert_eq!(time_label(2000.0, 1000.0), "2 ms");
        assert_eq!(time_label(50.0, 10.0), "50 µs");
    }

    #[test]
    fn names_are_escaped() {
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}

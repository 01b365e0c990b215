//! A hand-written SVG of the run: throughput per system (both workloads) and the
//! telephony workload's tail latency per operation, each on a log scale.

use std::fmt::Write as _;

use crate::report::{Report, Run, fmt_rate};

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 460.0;
const COLOURS: [&str; 5] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#7f7f7f"];

/// A horizontal log-scale bar chart: `groups` of (label, values by series), drawn in the
/// box at (`x`, `y`) of `w` × `h`.
struct Chart<'a> {
    title: &'a str,
    unit: &'a str,
    series: &'a [&'a str],
    groups: Vec<(String, Vec<f64>)>,
}

fn decades(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| *v > 0.0).fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi { (0.0, 1.0) } else { (lo.log10().floor(), hi.log10().ceil().max(lo.log10().floor() + 1.0)) }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

impl Chart<'_> {
    fn draw(&self, svg: &mut String, x: f64, y: f64, w: f64, h: f64) {
        let label_w = 90.0;
        let (lo, hi) = decades(self.groups.iter().flat_map(|g| g.1.iter().copied()));
        let plot_x = x + label_w;
        let plot_w = w - label_w - 10.0;
        let scale = |v: f64| plot_x + plot_w * ((v.max(10f64.powf(lo)).log10() - lo) / (hi - lo));
        let _ = writeln!(svg, r#"<text x="{x}" y="{}" font-weight="bold">{}</text>"#, y + 14.0, escape(self.title));
        let top = y + 30.0;
        let bottom = y + h - 40.0;
        let mut d = lo;
        while d <= hi {
            let gx = scale(10f64.powf(d));
            let _ = writeln!(
                svg,
                r##"<line x1="{gx:.1}" y1="{top}" x2="{gx:.1}" y2="{bottom}" stroke="#ddd"/><text x="{gx:.1}" y="{}" font-size="10" text-anchor="middle">{}</text>"##,
                bottom + 12.0,
                fmt_rate(10f64.powf(d))
            );
            d += 1.0;
        }
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" font-size="10" text-anchor="middle">{} (log scale)</text>"#,
            plot_x + plot_w / 2.0,
            bottom + 26.0,
            escape(self.unit)
        );
        let per_group = (bottom - top) / self.groups.len().max(1) as f64;
        let bar = (per_group - 6.0) / self.series.len().max(1) as f64;
        for (g, (label, values)) in self.groups.iter().enumerate() {
            let gy = top + g as f64 * per_group;
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"#,
                plot_x - 6.0,
                gy + per_group / 2.0 + 4.0,
                escape(label)
            );
            for (i, v) in values.iter().enumerate() {
                if *v <= 0.0 {
                    continue;
                }
                let by = gy + 3.0 + i as f64 * bar;
                let _ = writeln!(
                    svg,
                    r#"<rect x="{plot_x}" y="{by:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                    (scale(*v) - plot_x).max(1.0),
                    (bar - 1.0).max(1.0),
                    COLOURS[i % COLOURS.len()],
                    escape(self.series[i]),
                    fmt_rate(*v)
                );
            }
        }
    }
}

fn find<'a>(runs: &'a [Run], workload: &str, system: &str) -> Option<&'a Run> {
    runs.iter().find(|r| r.workload == workload && r.system == system)
}

pub fn svg(report: &Report) -> String {
    let systems: Vec<&str> = {
        let mut s: Vec<&str> = Vec::new();
        for r in &report.runs {
            if !s.contains(&r.system) {
                s.push(r.system);
            }
        }
        s
    };
    let throughput = Chart {
        title: "Throughput (ops/s, higher is better)",
        unit: "operations per second",
        series: &systems,
        groups: ["insert", "telephony"]
            .iter()
            .map(|w| {
                (
                    (*w).to_owned(),
                    systems.iter().map(|s| find(&report.runs, w, s).map_or(0.0, |r| r.ops_per_s)).collect(),
                )
            })
            .collect(),
    };
    let latency = Chart {
        title: "Telephony p99.9 latency (µs, lower is better)",
        unit: "microseconds",
        series: &systems,
        groups: ["insert", "get", "update", "delete"]
            .iter()
            .map(|op| {
                (
                    (*op).to_owned(),
                    systems
                        .iter()
                        .map(|s| find(&report.runs, "telephony", s).and_then(|r| r.p999(op)).unwrap_or(0.0))
                        .collect(),
                )
            })
            .collect(),
    };
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    throughput.draw(&mut svg, 10.0, 10.0, WIDTH / 2.0 - 20.0, HEIGHT - 70.0);
    latency.draw(&mut svg, WIDTH / 2.0 + 10.0, 10.0, WIDTH / 2.0 - 20.0, HEIGHT - 70.0);
    // The legend, one swatch per system.
    let mut lx = 20.0;
    for (i, s) in systems.iter().enumerate() {
        let _ = writeln!(
            svg,
            r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}" font-size="11">{}</text>"#,
            HEIGHT - 40.0,
            COLOURS[i % COLOURS.len()],
            lx + 16.0,
            HEIGHT - 30.0,
            escape(s)
        );
        lx += 16.0 + 7.0 * s.len() as f64 + 14.0;
    }
    let _ = writeln!(
        svg,
        r##"<text x="20" y="{}" font-size="10" fill="#555">{} run, commit {}, load average {} → {}, {} tasks</text>"##,
        HEIGHT - 10.0,
        report.meta.mode,
        report.meta.git,
        escape(&report.meta.loadavg_start),
        escape(&report.meta.loadavg_end),
        report.meta.tasks
    );
    svg.push_str("</svg>\n");
    svg
}

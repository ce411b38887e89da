//! The SVG plots.

use std::fmt::Write as _;

use super::{fmt_ns, fmt_num, Cell, Report, Row, IMPLS};

const COLORS: [&str; 3] = ["#1b9e77", "#d95f02", "#7570b3"];

pub const PLOTS: [(&str, &str); 3] = [
    (
        "throughput_vs_threads.svg",
        "derive + cancel + drop from one shared parent: total throughput vs threads",
    ),
    (
        "is_done_vs_threads.svg",
        "is_done() on a live context: ns per call vs threads (log scale)",
    ),
    (
        "ns_per_op.svg",
        "time per operation by scenario (log scale)",
    ),
];

/// Axis ticks: whole numbers without decimals.
fn fmt_tick(v: f64) -> String {
    if v == v.round() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        fmt_num(v)
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" upper bound: 1, 2 or 5 times a power of ten.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

struct Series<'a> {
    name: &'a str,
    color: &'a str,
    values: Vec<Option<f64>>,
}

/// A line chart over categorical x positions (thread counts).
fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    xs: &[String],
    series: &[Series<'_>],
    log_y: bool,
) -> String {
    let (w, h) = (760.0, 440.0);
    let (l, r, t, b) = (80.0, 170.0, 50.0, 60.0);
    let (pw, ph) = (w - l - r, h - t - b);
    let all: Vec<f64> = series
        .iter()
        .flat_map(|s| s.values.iter().flatten().copied())
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let mut svg = svg_open(w, h, title);
    if all.is_empty() || xs.is_empty() {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">no data</text>"#,
            w / 2.0,
            h / 2.0
        );
        svg.push_str("</svg>\n");
        return svg;
    }
    let max = all.iter().copied().fold(f64::MIN, f64::max);
    let min = all.iter().copied().fold(f64::MAX, f64::min);
    // y mapping and ticks.
    let (lo, hi) = if log_y {
        (
            10f64.powf(min.log10().floor()),
            10f64.powf(max.log10().ceil().max(min.log10().floor() + 1.0)),
        )
    } else {
        (0.0, nice_max(max * 1.05))
    };
    let y_of = |v: f64| -> f64 {
        let f = if log_y {
            (v.log10() - lo.log10()) / (hi.log10() - lo.log10())
        } else {
            (v - lo) / (hi - lo)
        };
        t + ph - f * ph
    };
    let ticks: Vec<f64> = if log_y {
        let (a, z) = (lo.log10().round() as i32, hi.log10().round() as i32);
        (a..=z).map(|e| 10f64.powi(e)).collect()
    } else {
        (0..=5).map(|i| lo + (hi - lo) * i as f64 / 5.0).collect()
    };
    for tick in ticks {
        let y = y_of(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{l}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end" font-size="12">{}</text>"##,
            l + pw,
            l - 8.0,
            y + 4.0,
            fmt_tick(tick)
        );
    }
    let x_of = |i: usize| -> f64 {
        if xs.len() == 1 {
            l + pw / 2.0
        } else {
            l + 20.0 + (pw - 40.0) * i as f64 / (xs.len() - 1) as f64
        }
    };
    for (i, x_text) in xs.iter().enumerate() {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle" font-size="12">{}</text>"#,
            x_of(i),
            t + ph + 18.0,
            xml(x_text)
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{l}" y="{t}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>
<text x="{:.1}" y="{}" text-anchor="middle" font-size="13">{}</text>
<text x="18" y="{:.1}" text-anchor="middle" font-size="13" transform="rotate(-90 18 {:.1})">{}</text>"##,
        l + pw / 2.0,
        h - 15.0,
        xml(x_label),
        t + ph / 2.0,
        t + ph / 2.0,
        xml(y_label)
    );
    for (k, s) in series.iter().enumerate() {
        let points: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                v.filter(|v| *v > 0.0)
                    .map(|v| format!("{:.1},{:.1}", x_of(i), y_of(v)))
            })
            .collect();
        if points.len() > 1 {
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2.5"/>"#,
                points.join(" "),
                s.color
            );
        }
        for p in &points {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(
                svg,
                r#"<circle cx="{x}" cy="{y}" r="4" fill="{}"/>"#,
                s.color
            );
        }
        let ly = t + 10.0 + k as f64 * 22.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{}" y="{:.1}" width="14" height="14" fill="{}"/><text x="{}" y="{:.1}" font-size="13">{}</text>"#,
            l + pw + 15.0,
            ly,
            s.color,
            l + pw + 35.0,
            ly + 12.0,
            xml(s.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn svg_open(w: f64, h: f64, title: &str) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="28" text-anchor="middle" font-size="16" font-weight="bold">{}</text>
"#,
        w / 2.0,
        xml(title)
    )
}

/// Horizontal grouped bars, log-scale x axis in nanoseconds.
fn bar_chart(title: &str, groups: &[(String, Vec<Option<f64>>)]) -> String {
    let bar = 11.0;
    let gap = 10.0;
    let (l, r, t, b) = (380.0, 80.0, 50.0, 70.0);
    let w = 1050.0;
    let group_h = bar * IMPLS.len() as f64 + gap;
    let ph = group_h * groups.len().max(1) as f64;
    let h = t + ph + b;
    let pw = w - l - r;
    let mut svg = svg_open(w, h, title);
    let all: Vec<f64> = groups
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().copied())
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    if all.is_empty() {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">no data</text>"#,
            w / 2.0,
            h / 2.0
        );
        svg.push_str("</svg>\n");
        return svg;
    }
    let lo = all.iter().copied().fold(f64::MAX, f64::min).log10().floor();
    let hi = all
        .iter()
        .copied()
        .fold(f64::MIN, f64::max)
        .log10()
        .ceil()
        .max(lo + 1.0);
    let x_of = |v: f64| l + (v.log10() - lo) / (hi - lo) * pw;
    for e in (lo as i32)..=(hi as i32) {
        let x = x_of(10f64.powi(e));
        let label = match e {
            e if e < 3 => format!("{} ns", fmt_tick(10f64.powi(e))),
            e if e < 6 => format!("{} µs", fmt_tick(10f64.powi(e - 3))),
            e if e < 9 => format!("{} ms", fmt_tick(10f64.powi(e - 6))),
            e => format!("{} s", fmt_tick(10f64.powi(e - 9))),
        };
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{t}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" font-size="12">{label}</text>"##,
            t + ph,
            t + ph + 16.0
        );
    }
    for (g, (label, values)) in groups.iter().enumerate() {
        let gy = t + g as f64 * group_h + gap / 2.0;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{:.1}" text-anchor="end" font-size="12">{}</text>"#,
            l - 8.0,
            gy + group_h / 2.0,
            xml(label)
        );
        for (i, v) in values.iter().enumerate() {
            let y = gy + i as f64 * bar;
            match v.filter(|v| *v > 0.0) {
                Some(v) => {
                    let x = x_of(v);
                    let _ = writeln!(
                        svg,
                        r#"<rect x="{l}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="10">{}</text>"#,
                        (x - l).max(1.0),
                        bar - 1.0,
                        COLORS[i],
                        x + 3.0,
                        y + bar - 2.0,
                        fmt_ns(v)
                    );
                }
                None => {
                    let _ = writeln!(
                        svg,
                        r##"<text x="{}" y="{:.1}" font-size="10" fill="#888">n/a</text>"##,
                        l + 3.0,
                        y + bar - 2.0
                    );
                }
            }
        }
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{l}" y="{t}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>"##
    );
    for (i, name) in IMPLS.iter().enumerate() {
        let x = l + i as f64 * 150.0;
        let y = t + ph + 36.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{x}" y="{y}" width="14" height="14" fill="{}"/><text x="{}" y="{}" font-size="13">{}</text>"#,
            COLORS[i],
            x + 20.0,
            y + 12.0,
            name
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn thread_series(report: &Report, scenario: &str) -> (Vec<String>, Vec<Series<'static>>) {
    let rows: Vec<&Row> = report
        .rows
        .iter()
        .filter(|r| r.scenario == scenario && r.case.starts_with("threads="))
        .collect();
    let xs = rows
        .iter()
        .map(|r| r.case.trim_start_matches("threads=").to_string())
        .collect();
    let series = IMPLS
        .iter()
        .zip(COLORS)
        .enumerate()
        .map(|(i, (name, color))| Series {
            name,
            color,
            values: rows
                .iter()
                .map(|r| r.cells.get(i).and_then(Cell::median))
                .collect(),
        })
        .collect();
    (xs, series)
}

/// The plots, as (file name, SVG text).
pub fn plots(report: &Report) -> Vec<(&'static str, String)> {
    let (xs, series) = thread_series(report, "shared");
    let throughput = line_chart(
        "derive + cancel + drop from one shared parent",
        "threads",
        "total throughput, M ops/s (higher is better)",
        &xs,
        &series,
        false,
    );
    let (xs, series) = thread_series(report, "is_done");
    let is_done = line_chart(
        "is_done() on a live context",
        "threads",
        "ns per call (log; lower is better)",
        &xs,
        &series,
        true,
    );
    let groups: Vec<(String, Vec<Option<f64>>)> = report
        .rows
        .iter()
        .filter_map(|row| {
            row.unit.to_ns(1.0)?;
            let values: Vec<Option<f64>> = row
                .cells
                .iter()
                .map(|c| c.median().and_then(|v| row.unit.to_ns(v)))
                .collect();
            values
                .iter()
                .any(Option::is_some)
                .then(|| (row.label.clone(), values))
        })
        .collect();
    let bars = bar_chart(
        "time per operation by scenario (log scale, lower is better)",
        &groups,
    );
    vec![
        (PLOTS[0].0, throughput),
        (PLOTS[1].0, is_done),
        (PLOTS[2].0, bars),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_read_well() {
        assert_eq!(fmt_tick(8.0), "8");
        assert_eq!(fmt_tick(0.5), "0.500");
    }
}

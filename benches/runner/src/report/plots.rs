//! The SVG plots, drawn with plotters' SVG backend: throughput and is_done()
//! against threads, and time per operation by scenario. Every point and bar
//! is the median, with an error bar from the min to the max sample.

use std::error::Error;
use std::io;

use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{fmt_num, Cell, Report, Row, IMPLS};
use crate::measure::Stats;

/// Indexed like [`IMPLS`] (colorblind-safe, from ColorBrewer's Dark2).
const COLORS: [RGBColor; 3] = [
    RGBColor(0x1b, 0x9e, 0x77),
    RGBColor(0xd9, 0x5f, 0x02),
    RGBColor(0x75, 0x70, 0xb3),
];
const FONT: &str = "sans-serif";
// Font sizes below are plotters' points; the SVG shows them at 1/1.24 (16
// comes out as 13 px).
const GRID: RGBColor = RGBColor(0xdd, 0xdd, 0xdd);
const MUTED: RGBColor = RGBColor(0x88, 0x88, 0x88);
/// Room on the right for the legend.
const LEGEND_W: u32 = 150;

/// The plots' file names and captions (report.md shows each).
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

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Drawn = Result<(), Box<dyn Error>>;

/// Renders one SVG of `size` pixels into a string.
fn render(size: (u32, u32), draw: impl FnOnce(&Area) -> Drawn) -> io::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        let drawn = root
            .fill(&WHITE)
            .map_err(Box::from)
            .and_then(|()| draw(&root))
            .and_then(|()| root.present().map_err(Box::from));
        drawn.map_err(|e| io::Error::other(e.to_string()))?;
    }
    Ok(svg)
}

fn text_style(size: u32, h: HPos) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).pos(Pos::new(h, VPos::Center))
}

fn no_data(root: &Area, title: &str) -> Drawn {
    let area = root.titled(title, (FONT, 22))?;
    let (w, h) = area.dim_in_pixel();
    let centre = (w as i32 / 2, h as i32 / 2);
    area.draw(&Text::new("no data", centre, text_style(20, HPos::Center)))?;
    Ok(())
}

/// A colour square and the name of each implementation, one under the other.
fn legend(area: &Area) -> Drawn {
    for (i, (name, color)) in IMPLS.iter().zip(COLORS).enumerate() {
        let y = 70 + 24 * i as i32;
        area.draw(&Rectangle::new([(10, y - 7), (24, y + 7)], color.filled()))?;
        area.draw(&Text::new(*name, (32, y), text_style(16, HPos::Left)))?;
    }
    Ok(())
}

/// The cells with statistics a log axis can show (min > 0, finite max),
/// each with its position in `cells`.
fn values<'a>(cells: impl Iterator<Item = &'a Cell>) -> impl Iterator<Item = (usize, &'a Stats)> {
    cells.enumerate().filter_map(|(k, c)| match c {
        Cell::Value(s) if s.min > 0.0 && s.max.is_finite() => Some((k, s)),
        _ => None,
    })
}

/// The smallest min and largest max over `stats`, if any.
fn bounds<'a>(stats: impl Iterator<Item = &'a Stats>) -> Option<(f64, f64)> {
    stats.fold(None, |acc, s| match acc {
        None => Some((s.min, s.max)),
        Some((lo, hi)) => Some((s.min.min(lo), s.max.max(hi))),
    })
}

/// The powers of ten around `lo..hi`, for a log axis of whole decades.
fn decades(lo: f64, hi: f64) -> (f64, f64) {
    let (a, b) = (lo.log10().floor(), hi.log10().ceil());
    (10f64.powf(a), 10f64.powf(b.max(a + 1.0)))
}

/// Axis labels: whole numbers without decimals, others without trailing
/// zeros ("0.1", "2.5").
fn fmt_tick(v: f64) -> String {
    if v == v.round() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.abs() >= 1e-3 {
        format!("{}", (v * 1e3).round() / 1e3)
    } else {
        fmt_num(v)
    }
}

/// A power of ten of nanoseconds in the unit that reads best: "100 ns", "1 µs".
fn ns_tick(ns: f64) -> String {
    let e = ns.log10().round() as i32;
    let (scale, unit) = match e {
        e if e < 3 => (0, "ns"),
        e if e < 6 => (3, "µs"),
        e if e < 9 => (6, "ms"),
        _ => (9, "s"),
    };
    format!("{} {unit}", fmt_tick(10f64.powi(e - scale)))
}

/// The rows of `scenario` measured at each thread count, and the counts.
fn thread_rows<'a>(report: &'a Report, scenario: &str) -> (Vec<String>, Vec<&'a Row>) {
    let rows: Vec<&Row> = report
        .rows
        .iter()
        .filter(|r| r.scenario == scenario && r.case.starts_with("threads="))
        .collect();
    let xs = rows
        .iter()
        .map(|r| r.case.trim_start_matches("threads=").to_string())
        .collect();
    (xs, rows)
}

/// What a line chart shows.
struct Lines<'a> {
    title: &'a str,
    y_label: &'a str,
    xs: Vec<String>,
    rows: Vec<&'a Row>,
}

/// Medians joined by lines, one per implementation, over categorical thread
/// counts; a linear y axis from 0, or a log one.
fn line_chart(root: &Area, lines: &Lines, log_y: bool) -> Drawn {
    let all = lines.rows.iter().flat_map(|r| values(r.cells.iter()));
    let Some((lo, hi)) = bounds(all.map(|(_, s)| s)) else {
        return no_data(root, lines.title);
    };
    let (plot, side) = root.split_horizontally(root.dim_in_pixel().0 - LEGEND_W);
    legend(&side)?;
    let mut builder = ChartBuilder::on(&plot);
    builder
        .caption(lines.title, (FONT, 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70);
    // Thread counts are categories: index k sits at x = k, labelled with its count.
    let x = -0.5..lines.xs.len() as f64 - 0.5;
    if log_y {
        let (lo, hi) = decades(lo, hi);
        // Just below the lowest decade, so that its tick is drawn (plotters
        // starts at the first power of ten it finds inside the range).
        let y = (lo * 0.99..hi).log_scale();
        // A label per power of ten, none between (they crowd).
        let ticks = (hi / lo).log10().round() as usize + 1;
        draw_lines(builder.build_cartesian_2d(x, y)?, lines, ticks)
    } else {
        draw_lines(builder.build_cartesian_2d(x, 0.0..hi * 1.1)?, lines, 10)
    }
}

type ThreadChart<'a, 'b, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, Y>>;

fn draw_lines<Y>(mut chart: ThreadChart<'_, '_, Y>, lines: &Lines, y_ticks: usize) -> Drawn
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    // Ticks fall on whole numbers with one tick per category at most.
    let x_text = |v: &f64| match lines.xs.get(v.round() as usize) {
        Some(x) if (v - v.round()).abs() < 1e-6 => x.clone(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .bold_line_style(GRID)
        .max_light_lines(0)
        .x_desc("threads")
        .y_desc(lines.y_label)
        .x_labels(lines.xs.len())
        .x_label_formatter(&x_text)
        .y_labels(y_ticks)
        .y_label_formatter(&|v| fmt_tick(*v))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .draw()?;
    for (i, color) in COLORS.iter().enumerate() {
        // Side by side within a category, so the error bars do not overlap.
        let shift = (i as f64 - 1.0) * 0.05;
        let points: Vec<(f64, &Stats)> = values(lines.rows.iter().filter_map(|r| r.cells.get(i)))
            .map(|(k, s)| (k as f64 + shift, s))
            .collect();
        let medians = points.iter().map(|(x, s)| (*x, s.median));
        chart.draw_series(LineSeries::new(medians, color.stroke_width(2)).point_size(4))?;
        chart.draw_series(points.iter().map(|(x, s)| {
            ErrorBar::new_vertical(*x, s.min, s.median, s.max, color.stroke_width(2), 10)
        }))?;
    }
    Ok(())
}

/// One bar group: a scenario's label and each implementation's statistics,
/// in ns.
type Group = (String, Vec<Option<Stats>>);

/// Every time-unit row, converted to ns.
fn time_groups(report: &Report) -> Vec<Group> {
    let in_ns = |row: &Row, s: &Stats| -> Option<Stats> {
        let ns = |v: f64| row.unit.to_ns(v);
        Some(Stats {
            median: ns(s.median)?,
            min: ns(s.min)?,
            max: ns(s.max)?,
            q1: ns(s.q1)?,
            q3: ns(s.q3)?,
            samples: Vec::new(),
        })
    };
    report
        .rows
        .iter()
        .filter(|row| row.unit.to_ns(1.0).is_some())
        .filter_map(|row| {
            let mut stats = vec![None; row.cells.len()];
            for (i, s) in values(row.cells.iter()) {
                stats[i] = in_ns(row, s);
            }
            stats
                .iter()
                .any(Option::is_some)
                .then(|| (row.label.clone(), stats))
        })
        .collect()
}

const BAR_ROW_PX: u32 = 36;
const BAR_LABELS_PX: u32 = 470;

/// Horizontal bars (median, min–max whisker) grouped by scenario, on a log
/// axis in ns, first row at the top.
fn bar_chart(root: &Area, title: &str, groups: &[Group]) -> Drawn {
    let all = groups.iter().flat_map(|(_, s)| s.iter().flatten());
    let Some((lo, hi)) = bounds(all) else {
        return no_data(root, title);
    };
    let (plot, side) = root.split_horizontally(root.dim_in_pixel().0 - LEGEND_W);
    legend(&side)?;
    let n = groups.len();
    let (x_lo, x_hi) = decades(lo, hi);
    // Room after the longest whisker for its label.
    let x_hi = x_hi * 4.0;
    let ticks = (x_hi / x_lo).log10().floor() as usize + 1;
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(BAR_LABELS_PX)
        .build_cartesian_2d((x_lo * 0.99..x_hi).log_scale(), -0.5..n as f64 - 0.5)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .bold_line_style(GRID)
        .max_light_lines(0)
        .x_labels(ticks)
        .x_label_formatter(&|v| ns_tick(*v))
        .label_style((FONT, 15))
        .draw()?;
    for (g, (label, stats)) in groups.iter().enumerate() {
        let centre = (n - 1 - g) as f64;
        let (px, py) = chart.backend_coord(&(x_lo, centre));
        root.draw(&Text::new(
            label.clone(),
            (px - 8, py),
            text_style(15, HPos::Right),
        ))?;
        for (i, s) in stats.iter().enumerate().take(COLORS.len()) {
            let y = centre + 0.28 - 0.28 * i as f64;
            draw_bar(&mut chart, (x_lo, y), s.as_ref(), COLORS[i])?;
        }
    }
    Ok(())
}

type BarChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<LogCoord<f64>, RangedCoordf64>>;

/// One bar at height `y` from the axis at `x0`, its whisker and its value;
/// "n/a" without statistics.
fn draw_bar(
    chart: &mut BarChart,
    (x0, y): (f64, f64),
    s: Option<&Stats>,
    color: RGBColor,
) -> Drawn {
    let Some(s) = s else {
        let na = Text::new(
            "n/a",
            (x0 * 1.1, y),
            text_style(13, HPos::Left).color(&MUTED),
        );
        chart.draw_series([na])?;
        return Ok(());
    };
    let half = 0.12;
    let bar = Rectangle::new([(x0, y - half), (s.median, y + half)], color.filled());
    chart.draw_series([bar])?;
    let whisker = ErrorBar::new_horizontal(y, s.min, s.median, s.max, BLACK.mix(0.6), 6);
    chart.draw_series([whisker])?;
    let value = Text::new(
        super::fmt_ns(s.median),
        (s.max * 1.15, y),
        text_style(13, HPos::Left),
    );
    chart.draw_series([value])?;
    Ok(())
}

/// The plots, as (file name, SVG text).
pub fn plots(report: &Report) -> io::Result<Vec<(&'static str, String)>> {
    let (xs, rows) = thread_rows(report, "shared");
    let throughput = Lines {
        title: "derive + cancel + drop from one shared parent",
        y_label: "total throughput, M ops/s (higher is better)",
        xs,
        rows,
    };
    let (xs, rows) = thread_rows(report, "is_done");
    let is_done = Lines {
        title: "is_done() on a live context",
        y_label: "ns per call (log; lower is better)",
        xs,
        rows,
    };
    let groups = time_groups(report);
    let bars_h = 110 + BAR_ROW_PX * groups.len().max(4) as u32;
    let bars_title = "time per operation by scenario (log scale, lower is better)";
    Ok(vec![
        (
            PLOTS[0].0,
            render((820, 460), |a| line_chart(a, &throughput, false))?,
        ),
        (
            PLOTS[1].0,
            render((820, 460), |a| line_chart(a, &is_done, true))?,
        ),
        (
            PLOTS[2].0,
            render((1320, bars_h), |a| bar_chart(a, bars_title, &groups))?,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::super::tiny;
    use super::*;

    #[test]
    fn ticks_read_well() {
        assert_eq!(fmt_tick(8.0), "8");
        assert_eq!(fmt_tick(0.5), "0.5");
        assert_eq!(fmt_tick(0.1), "0.1");
        assert_eq!(fmt_tick(2.5), "2.5");
        assert_eq!(ns_tick(100.0), "100 ns");
        assert_eq!(ns_tick(1e3), "1 µs");
        assert_eq!(ns_tick(1e7), "10 ms");
        assert_eq!(decades(0.5, 12.0), (0.1, 100.0));
        assert_eq!(decades(20.0, 20.0), (10.0, 100.0));
    }

    #[test]
    fn plots_show_every_series_with_error_bars() {
        let plots = plots(&tiny()).unwrap();
        assert_eq!(plots.len(), PLOTS.len());
        for (name, svg) in &plots {
            assert!(svg.starts_with("<svg"), "{name}");
            assert!(svg.trim_end().ends_with("</svg>"), "{name}");
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{name}");
            for impl_name in IMPLS {
                assert!(svg.contains(impl_name), "{name}: legend lacks {impl_name}");
            }
        }
        let throughput = &plots[0].1;
        // For a look at the plots: CTXTREE_BENCH_DUMP_PLOTS=DIR cargo test ...
        if let Some(dir) = std::env::var_os("CTXTREE_BENCH_DUMP_PLOTS") {
            for (name, svg) in &plots {
                std::fs::write(std::path::Path::new(&dir).join(name), svg).unwrap();
            }
        }
        // One line per implementation, in its colour.
        for c in COLORS {
            let stroke = format!("stroke=\"#{:02X}{:02X}{:02X}\"", c.0, c.1, c.2);
            assert!(throughput.contains(&stroke), "{stroke}");
        }
        assert!(throughput.matches("<polyline").count() >= 3);
        assert!(throughput.contains("\nthreads\n"));
        let bars = &plots[2].1;
        assert!(bars.contains("derive + cancel + drop, 1 thread"));
        assert!(bars.contains("n/a"), "tokio-util has no timeout row value");
        assert!(!bars.contains("live bytes"), "memory rows are not times");
    }
}

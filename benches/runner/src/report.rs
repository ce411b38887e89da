//! Results, ratios against ctxtree, the issue's targets, and the outputs: a
//! console table, report.md, results.json / results.csv and hand-written SVG
//! plots.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::machine::Machine;
use crate::measure::Stats;
use crate::tree::{CtxTree, MutexTree, TokioTree, Tree};

/// The implementations, in column order; ctxtree first (the reference).
pub const IMPLS: [&str; 3] = [CtxTree::NAME, MutexTree::NAME, TokioTree::NAME];
const COLORS: [&str; 3] = ["#1b9e77", "#d95f02", "#7570b3"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Ns,
    Us,
    Ms,
    Mops,
    MiB,
    Bytes,
    Allocs,
}

impl Unit {
    pub fn symbol(self) -> &'static str {
        match self {
            Unit::Ns => "ns",
            Unit::Us => "µs",
            Unit::Ms => "ms",
            Unit::Mops => "M ops/s",
            Unit::MiB => "MiB",
            Unit::Bytes => "B",
            Unit::Allocs => "allocs",
        }
    }

    /// ASCII id for JSON and CSV.
    pub fn id(self) -> &'static str {
        match self {
            Unit::Us => "us",
            Unit::Mops => "Mops/s",
            u => u.symbol(),
        }
    }

    pub fn higher_is_better(self) -> bool {
        self == Unit::Mops
    }

    fn is_memory(self) -> bool {
        matches!(self, Unit::MiB | Unit::Bytes | Unit::Allocs)
    }

    /// Nanoseconds, for time units.
    fn to_ns(self, v: f64) -> Option<f64> {
        match self {
            Unit::Ns => Some(v),
            Unit::Us => Some(v * 1e3),
            Unit::Ms => Some(v * 1e6),
            _ => None,
        }
    }
}

/// One implementation's result in a row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Value(Stats),
    /// Not applicable or failed, with the reason shown in its place.
    Na(String),
}

impl Cell {
    pub fn median(&self) -> Option<f64> {
        match self {
            Cell::Value(s) => Some(s.median),
            Cell::Na(_) => None,
        }
    }
}

/// One line of the table: a scenario case, measured for each implementation.
#[derive(Clone, Debug)]
pub struct Row {
    pub scenario: String,
    pub case: String,
    pub label: String,
    pub unit: Unit,
    /// Indexed like [`IMPLS`].
    pub cells: Vec<Cell>,
    pub note: Option<String>,
}

impl Row {
    pub fn new(scenario: &str, case: &str, label: &str, unit: Unit, cells: Vec<Cell>) -> Row {
        Row {
            scenario: scenario.into(),
            case: case.into(),
            label: label.into(),
            unit,
            cells,
            note: None,
        }
    }

    /// How much better ctxtree is than implementation `i` (> 1: ctxtree
    /// faster / smaller). `None` without two positive medians.
    pub fn ratio(&self, i: usize) -> Option<f64> {
        let ctx = self.cells.first()?.median()?;
        let peer = self.cells.get(i)?.median()?;
        if ctx <= 0.0 || peer <= 0.0 || !ctx.is_finite() || !peer.is_finite() {
            return None;
        }
        Some(if self.unit.higher_is_better() {
            ctx / peer
        } else {
            peer / ctx
        })
    }

    /// "4.8× slower", "1.3× faster", "2.0× more", "—".
    pub fn ratio_text(&self, i: usize) -> String {
        let Some(r) = self.ratio(i) else {
            return "—".into();
        };
        let (worse, better) = if self.unit.is_memory() {
            ("more", "less")
        } else {
            ("slower", "faster")
        };
        if r >= 1.0 {
            format!("{}× {worse}", fmt_ratio(r))
        } else {
            format!("{}× {better}", fmt_ratio(1.0 / r))
        }
    }
}

pub fn fmt_ratio(r: f64) -> String {
    if r < 10.0 {
        format!("{r:.2}")
    } else if r < 100.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.0}")
    }
}

/// Three significant digits or so, never an exponent.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Like [`fmt_num`], with four decimals for allocation counts (1.0005 is not 1).
pub fn fmt_val(v: f64, unit: Unit) -> String {
    if unit == Unit::Allocs {
        format!("{v:.4}")
    } else {
        fmt_num(v)
    }
}

/// A duration in ns with a readable unit: "69.4 ns", "2.46 µs", "331 ms".
pub fn fmt_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{} ns", fmt_num(ns))
    } else if ns < 1e6 {
        format!("{} µs", fmt_num(ns / 1e3))
    } else if ns < 1e9 {
        format!("{} ms", fmt_num(ns / 1e6))
    } else {
        format!("{} s", fmt_num(ns / 1e9))
    }
}

/// Axis ticks: whole numbers without decimals.
fn fmt_tick(v: f64) -> String {
    if v == v.round() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        fmt_num(v)
    }
}

fn fmt_stats(s: &Stats, unit: Unit) -> String {
    if s.samples.len() == 1 {
        fmt_val(s.median, unit)
    } else {
        format!(
            "{} ({}–{})",
            fmt_val(s.median, unit),
            fmt_val(s.min, unit),
            fmt_val(s.max, unit)
        )
    }
}

/// Everything a run produced.
#[derive(Clone, Debug)]
pub struct Report {
    pub machine: Machine,
    /// Human description of samples, durations and thread list.
    pub settings: String,
    pub threads: Vec<usize>,
    pub rows: Vec<Row>,
}

// ---------------------------------------------------------------------------
// Targets

#[derive(Clone, Debug, PartialEq)]
pub enum Goal {
    AtMost(f64),
    AtLeast(f64),
}

#[derive(Clone, Debug)]
pub struct Target {
    pub what: String,
    pub goal: Goal,
    /// Unit of the goal and the measurement ("ns", "×", ...).
    pub unit: &'static str,
    pub measured: Option<f64>,
    /// Issue 6's target (true) or an anchor goal from shared/anchors.md.
    pub issue: bool,
}

impl Target {
    pub fn met(&self) -> Option<bool> {
        let v = self.measured?;
        Some(match self.goal {
            Goal::AtMost(g) => v <= g,
            Goal::AtLeast(g) => v >= g,
        })
    }

    pub fn goal_text(&self) -> String {
        match self.goal {
            Goal::AtMost(g) => format!("≤ {}{}", fmt_num(g), self.unit_sep()),
            Goal::AtLeast(g) => format!("≥ {}{}", fmt_num(g), self.unit_sep()),
        }
    }

    fn unit_sep(&self) -> String {
        if self.unit == "×" {
            "×".into()
        } else {
            format!(" {}", self.unit)
        }
    }

    fn fmt(&self, v: f64) -> String {
        if self.unit == "allocs" {
            format!("{v:.4}")
        } else {
            fmt_num(v)
        }
    }

    pub fn measured_text(&self) -> String {
        match self.measured {
            Some(v) => format!("{}{}", self.fmt(v), self.unit_sep()),
            None => "not measured".into(),
        }
    }

    /// "met", or "missed: 1.37× over the goal", or "not measured".
    pub fn verdict(&self) -> String {
        let Some(v) = self.measured else {
            return "not measured in this run".into();
        };
        match (self.met(), &self.goal) {
            (Some(true), _) => "met".into(),
            (_, Goal::AtMost(g)) if v / g < 1.1 => {
                format!("missed by {}{}", self.fmt(v - g), self.unit_sep())
            }
            (_, Goal::AtMost(g)) => format!("missed: {}× the goal", fmt_ratio(v / g)),
            (_, Goal::AtLeast(g)) => format!(
                "missed: {}% short of the goal",
                fmt_num((1.0 - v / g) * 100.0)
            ),
        }
    }
}

fn find<'a>(rows: &'a [Row], scenario: &str, case: &str) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.scenario == scenario && r.case == case)
}

fn med(rows: &[Row], scenario: &str, case: &str, i: usize) -> Option<f64> {
    find(rows, scenario, case)?.cells.get(i)?.median()
}

fn ratio(rows: &[Row], scenario: &str, case: &str, i: usize) -> Option<f64> {
    find(rows, scenario, case)?.ratio(i)
}

/// Issue 6's targets and shared/anchors.md's goals, checked against `rows`.
pub fn targets(rows: &[Row]) -> Vec<Target> {
    let t = |what: &str, goal, unit, measured, issue| Target {
        what: what.into(),
        goal,
        unit,
        measured,
        issue,
    };
    let own_scaling = match (
        med(rows, "shared", "threads=2", 0),
        med(rows, "shared", "threads=1", 0),
    ) {
        (Some(two), Some(one)) if one > 0.0 => Some(two / one),
        _ => None,
    };
    vec![
        t(
            "derive + cancel + drop, 1 thread",
            Goal::AtMost(30.0),
            "ns",
            med(rows, "derive", "1", 0),
            true,
        ),
        t(
            "  … faster than tokio-util",
            Goal::AtLeast(4.0),
            "×",
            ratio(rows, "derive", "1", 2),
            true,
        ),
        t(
            "  … faster than the mutex tree",
            Goal::AtLeast(2.5),
            "×",
            ratio(rows, "derive", "1", 1),
            true,
        ),
        t(
            "shared parent, 2 threads: vs ctxtree's own 1-thread rate",
            Goal::AtLeast(1.5),
            "×",
            own_scaling,
            true,
        ),
        t(
            "shared parent, 2 threads: vs tokio-util at 2 threads",
            Goal::AtLeast(10.0),
            "×",
            ratio(rows, "shared", "threads=2", 2),
            true,
        ),
        t(
            "cancel fan-out, 10^5 children, per child",
            Goal::AtMost(10.0),
            "ns",
            med(rows, "fanout", "children=100000", 0),
            true,
        ),
        t(
            "  … faster than the mutex tree",
            Goal::AtLeast(3.0),
            "×",
            ratio(rows, "fanout", "children=100000", 1),
            true,
        ),
        t(
            "is_done(), 1 thread",
            Goal::AtMost(1.0),
            "ns",
            med(rows, "is_done", "threads=1", 0),
            true,
        ),
        t(
            "is_done(), 2 threads",
            Goal::AtMost(1.0),
            "ns",
            med(rows, "is_done", "threads=2", 0),
            true,
        ),
        t(
            "10^6-deep chain build + cancel + drop",
            Goal::AtMost(60.0),
            "ms",
            med(rows, "deep", "time", 0),
            true,
        ),
        t(
            "live bytes per with_cancel child",
            Goal::AtMost(64.0),
            "B",
            med(rows, "memory", "bytes", 0),
            true,
        ),
        t(
            "allocations per with_cancel child",
            Goal::AtMost(1.0),
            "allocs",
            med(rows, "memory", "allocs", 0),
            true,
        ),
        t(
            "chain of 1000: build + cancel + drop",
            Goal::AtMost(40.0),
            "µs",
            med(rows, "chain", "depth=1000", 0),
            false,
        ),
        t(
            "10^6-deep chain peak RSS growth",
            Goal::AtMost(80.0),
            "MiB",
            med(rows, "deep", "peak_rss", 0),
            false,
        ),
        t(
            "wake 64 blocked threads",
            Goal::AtMost(400.0),
            "µs",
            med(rows, "wake", "threads=64", 0),
            false,
        ),
        t(
            "with_timeout + cancel + drop",
            Goal::AtMost(60.0),
            "ns",
            med(rows, "timeout", "1", 0),
            false,
        ),
        t(
            "value lookup through 100 layers",
            Goal::AtMost(30.0),
            "ns",
            med(rows, "value", "depth=100", 0),
            false,
        ),
    ]
}

// ---------------------------------------------------------------------------
// Console table

pub fn console_table(report: &Report) -> String {
    let mut lines: Vec<[String; 4]> = vec![[
        "scenario".into(),
        IMPLS[0].into(),
        format!("{} (vs ctxtree)", IMPLS[1]),
        format!("{} (vs ctxtree)", IMPLS[2]),
    ]];
    for row in &report.rows {
        let mut cols = [
            format!("{} [{}]", row.label, row.unit.symbol()),
            String::new(),
            String::new(),
            String::new(),
        ];
        for (i, cell) in row.cells.iter().enumerate().take(3) {
            cols[i + 1] = match cell {
                Cell::Value(s) if i == 0 => fmt_stats(s, row.unit),
                Cell::Value(s) => format!("{}  {}", fmt_stats(s, row.unit), row.ratio_text(i)),
                Cell::Na(why) => why.clone(),
            };
        }
        lines.push(cols);
    }
    let width = |c: usize| {
        lines
            .iter()
            .map(|l| l[c].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2), width(3)];
    let mut out = String::new();
    for (n, l) in lines.iter().enumerate() {
        let mut line = String::new();
        for (c, text) in l.iter().enumerate() {
            let pad = widths[c] - text.chars().count();
            if c == 0 {
                line.push_str(text);
                line.push_str(&" ".repeat(pad));
            } else {
                line.push_str(" │ ");
                line.push_str(&" ".repeat(pad));
                line.push_str(text);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if n == 0 {
            let total: usize = widths.iter().sum::<usize>() + 9;
            out.push_str(&"─".repeat(total));
            out.push('\n');
        }
    }
    out.push_str("\nmedian (min–max) over the samples; ratios compare medians with ctxtree's.\n");
    out
}

pub fn console_targets(report: &Report) -> String {
    let mut out = String::from("Targets (issue 6 first, then goals from shared/anchors.md):\n");
    for t in targets(&report.rows) {
        let mark = match t.met() {
            Some(true) => "MET   ",
            Some(false) => "MISSED",
            None => "  -   ",
        };
        let _ = writeln!(
            out,
            "  {mark} {}{}: {} (goal {}){}",
            t.what.trim_start_matches("  "),
            if t.issue { "" } else { " [anchor]" },
            t.measured_text(),
            t.goal_text(),
            match t.met() {
                Some(false) => format!(" — {}", t.verdict()),
                _ => String::new(),
            }
        );
    }
    out
}

// ---------------------------------------------------------------------------
// Markdown

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

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The results table in markdown (also used by docs/benchmarks.md).
pub fn markdown_table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| scenario | unit | {} | {} | vs ctxtree | {} | vs ctxtree |",
        IMPLS[0], IMPLS[1], IMPLS[2]
    );
    out.push_str("|---|---|---:|---:|---:|---:|---:|\n");
    for row in rows {
        let cell = |i: usize| match &row.cells[i] {
            Cell::Value(s) if s.samples.len() == 1 => fmt_val(s.median, row.unit),
            Cell::Value(s) => format!(
                "**{}** ({}–{})",
                fmt_val(s.median, row.unit),
                fmt_val(s.min, row.unit),
                fmt_val(s.max, row.unit)
            ),
            Cell::Na(why) => md_escape(why),
        };
        let label = match &row.note {
            Some(n) => format!("{} {}", row.label, note_mark(rows, n)),
            None => row.label.clone(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            md_escape(&label),
            row.unit.symbol(),
            cell(0),
            cell(1),
            row.ratio_text(1),
            cell(2),
            row.ratio_text(2)
        );
    }
    let notes = distinct_notes(rows);
    if !notes.is_empty() {
        out.push('\n');
        for (i, n) in notes.iter().enumerate() {
            let _ = writeln!(out, "{}: {}  ", sup(i + 1), n);
        }
    }
    out
}

fn distinct_notes(rows: &[Row]) -> Vec<String> {
    let mut notes: Vec<String> = Vec::new();
    for n in rows.iter().filter_map(|r| r.note.clone()) {
        if !notes.contains(&n) {
            notes.push(n);
        }
    }
    notes
}

fn note_mark(rows: &[Row], note: &str) -> String {
    let idx = distinct_notes(rows)
        .iter()
        .position(|n| n == note)
        .unwrap_or(0);
    sup(idx + 1)
}

fn sup(n: usize) -> String {
    const DIGITS: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    n.to_string()
        .chars()
        .map(|c| DIGITS[c.to_digit(10).unwrap_or(0) as usize])
        .collect()
}

pub fn markdown_targets(rows: &[Row]) -> String {
    let mut out =
        String::from("| target | source | goal | measured | verdict |\n|---|---|---:|---:|---|\n");
    for t in targets(rows) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            md_escape(t.what.trim_start_matches("  ")),
            if t.issue { "issue 6" } else { "anchors.md" },
            t.goal_text(),
            t.measured_text(),
            t.verdict()
        );
    }
    out
}

pub fn markdown(report: &Report) -> String {
    let m = &report.machine;
    let mut out = String::new();
    out.push_str("# ctxtree comparison benchmark\n\n");
    out.push_str(
        "ctxtree against a Go-style mutex tree (written for this runner, `benches/runner/src/mutex_tree.rs`) \
         and tokio-util's `CancellationToken`, measured side by side in one run.\n\n",
    );
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| date | {} |", m.date);
    let _ = writeln!(out, "| command | `{}` |", m.command);
    let _ = writeln!(out, "| CPU | {} |", md_escape(&m.cpu));
    let _ = writeln!(out, "| cores | {} |", m.cores);
    let _ = writeln!(out, "| memory | {} |", m.memory);
    let _ = writeln!(out, "| OS | {} |", m.os);
    let _ = writeln!(out, "| rustc | {} |", m.rustc);
    let _ = writeln!(out, "| ctxtree revision | {} |", m.revision);
    let _ = writeln!(
        out,
        "| load average (1/5/15 min) | before: {} · after: {} |",
        m.load_before, m.load_after
    );
    let _ = writeln!(out, "| sampling | {} |", md_escape(&report.settings));
    out.push_str("\n## Results\n\n");
    out.push_str(
        "Median over the samples in **bold**, (min–max) after it. \"vs ctxtree\" compares medians: \
         \"4.80× slower\" means ctxtree's median is 4.8 times better.\n\n",
    );
    out.push_str(&markdown_table(&report.rows));
    out.push_str("\n## Targets\n\n");
    out.push_str(&markdown_targets(&report.rows));
    out.push_str("\n## Plots\n\n");
    for (file, caption) in PLOTS {
        let _ = writeln!(out, "![{caption}]({file})\n");
    }
    out.push_str("## How each scenario is measured\n\n");
    out.push_str(METHODS);
    out
}

pub const METHODS: &str = "\
- Every scenario runs the same generic code for the three implementations (the `Tree` trait in \
`benches/runner/src/tree.rs`). Contexts are derived from a live cancelable parent, never from a \
background root. tokio-util's handle is a second token that cancels on drop (what \
`clone().drop_guard()` gives); its cheapest form, one token and no handle, has its own row. \
tokio-util has no blocking wait: it blocks on `futures::executor::block_on(cancelled())`.
- ctxtree and tokio-util are called across a crate boundary without LTO, as a user's program \
calls them; the mutex tree is compiled inside the runner, so its entry points are \
`#[inline(never)]` to put it on the same footing.
- Samples of the three implementations are interleaved (one of each in turn), so drifting \
machine noise spreads over all of them. The table shows the median and (min–max).
- Single-thread timings: the iteration count is calibrated so one sample lasts at least the \
sample time; calibration runs are the warm-up. Fan-out times only the parent's `cancel()` \
(building and dropping the children are not timed).
- Multi-thread scenarios: the threads start at a barrier and run for a fixed time; throughput is \
total operations over the time until the last thread stops. The same samples also give the \
CPU time per operation (`CLOCK_THREAD_CPUTIME_ID` of the benchmark threads). `is_done()` is \
reported as CPU time per call, which stays flat when surplus threads or other processes only \
time-slice.
- Waking: threads block in `wait()`; the clock starts just before `cancel()` and stops at the \
latest wake-up time any thread recorded. Tasks: 10⁴ tasks on a tokio current_thread runtime \
each await a `done()` future; the clock runs from `cancel()` until all are joined.
- Memory: a counting global allocator (on only during this scenario, and only for the measuring \
thread) counts bytes and allocation calls while 10⁴ live children are derived from one parent; \
the parent's own growth (a child vector for the peers) is included. \
The 10⁶-deep chain runs in a fresh child process per sample (peak RSS from VmHWM, less the \
RSS before the chain; the chain's 10⁶ handles sit in a vector, 8 MB, for everyone), and the RSS \
scenario in a fresh child process per implementation (/proc/self/statm).
";

// ---------------------------------------------------------------------------
// JSON and CSV

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

fn json_opt(v: Option<f64>) -> String {
    v.map_or("null".into(), json_num)
}

pub fn json(report: &Report) -> String {
    let m = &report.machine;
    let mut out = String::from("{\n");
    let _ = writeln!(out, "  \"tool\": \"ctxtree-bench\",");
    let _ = writeln!(
        out,
        "  \"machine\": {{\"date\": {}, \"command\": {}, \"cpu\": {}, \"cores\": {}, \"memory\": {}, \"os\": {}, \"rustc\": {}, \"ctxtree_revision\": {}, \"load_before\": {}, \"load_after\": {}}},",
        json_str(&m.date),
        json_str(&m.command),
        json_str(&m.cpu),
        m.cores,
        json_str(&m.memory),
        json_str(&m.os),
        json_str(&m.rustc),
        json_str(&m.revision),
        json_str(&m.load_before),
        json_str(&m.load_after)
    );
    let _ = writeln!(out, "  \"settings\": {},", json_str(&report.settings));
    let threads: Vec<String> = report.threads.iter().map(usize::to_string).collect();
    let _ = writeln!(out, "  \"threads\": [{}],", threads.join(", "));
    let impls: Vec<String> = IMPLS.iter().map(|s| json_str(s)).collect();
    let _ = writeln!(out, "  \"implementations\": [{}],", impls.join(", "));
    out.push_str("  \"rows\": [\n");
    for (n, row) in report.rows.iter().enumerate() {
        let results: Vec<String> = row
            .cells
            .iter()
            .zip(IMPLS)
            .map(|(cell, name)| {
                let body = match cell {
                    Cell::Value(s) => {
                        let samples: Vec<String> = s.samples.iter().map(|v| json_num(*v)).collect();
                        format!(
                            "{{\"median\": {}, \"min\": {}, \"max\": {}, \"q1\": {}, \"q3\": {}, \"samples\": [{}]}}",
                            json_num(s.median),
                            json_num(s.min),
                            json_num(s.max),
                            json_num(s.q1),
                            json_num(s.q3),
                            samples.join(", ")
                        )
                    }
                    Cell::Na(why) => format!("{{\"na\": {}}}", json_str(why)),
                };
                format!("{}: {body}", json_str(name))
            })
            .collect();
        let ratios: Vec<String> = (1..IMPLS.len())
            .map(|i| format!("{}: {}", json_str(IMPLS[i]), json_opt(row.ratio(i))))
            .collect();
        let _ = write!(
            out,
            "    {{\"scenario\": {}, \"case\": {}, \"label\": {}, \"unit\": {}, \"higher_is_better\": {}, \"note\": {}, \"results\": {{{}}}, \"ctxtree_advantage\": {{{}}}}}",
            json_str(&row.scenario),
            json_str(&row.case),
            json_str(&row.label),
            json_str(row.unit.id()),
            row.unit.higher_is_better(),
            row.note.as_deref().map_or("null".into(), json_str),
            results.join(", "),
            ratios.join(", ")
        );
        out.push_str(if n + 1 < report.rows.len() {
            ",\n"
        } else {
            "\n"
        });
    }
    out.push_str("  ],\n  \"targets\": [\n");
    let targets = targets(&report.rows);
    for (n, t) in targets.iter().enumerate() {
        let _ = write!(
            out,
            "    {{\"target\": {}, \"source\": {}, \"goal\": {}, \"measured\": {}, \"met\": {}, \"verdict\": {}}}",
            json_str(t.what.trim_start_matches("  ")),
            json_str(if t.issue { "issue 6" } else { "anchors.md" }),
            json_str(&t.goal_text()),
            json_opt(t.measured),
            t.met().map_or("null".into(), |b| b.to_string()),
            json_str(&t.verdict())
        );
        out.push_str(if n + 1 < targets.len() { ",\n" } else { "\n" });
    }
    out.push_str("  ]\n}\n");
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn csv(report: &Report) -> String {
    let mut out =
        String::from("scenario,case,label,unit,implementation,median,min,max,q1,q3,samples,ctxtree_advantage,na\n");
    for row in &report.rows {
        for (i, (cell, name)) in row.cells.iter().zip(IMPLS).enumerate() {
            let ratio = if i == 0 {
                String::new()
            } else {
                row.ratio(i).map_or(String::new(), |r| format!("{r}"))
            };
            let (stats, na) = match cell {
                Cell::Value(s) => (
                    format!(
                        "{},{},{},{},{},{}",
                        s.median,
                        s.min,
                        s.max,
                        s.q1,
                        s.q3,
                        s.samples.len()
                    ),
                    String::new(),
                ),
                Cell::Na(why) => (",,,,,".into(), csv_field(why)),
            };
            let _ = writeln!(
                out,
                "{},{},{},{},{},{stats},{ratio},{na}",
                csv_field(&row.scenario),
                csv_field(&row.case),
                csv_field(&row.label),
                row.unit.id(),
                name
            );
        }
    }
    out
}

// ---------------------------------------------------------------------------
// SVG

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

// ---------------------------------------------------------------------------
// Writing the folder

/// Which machine-readable files to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Formats {
    pub json: bool,
    pub csv: bool,
}

/// Writes report.md, the machine-readable files and the plots into `dir`
/// (created if missing); returns the paths written.
pub fn write_all(report: &Report, dir: &Path, formats: Formats) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut put = |name: &str, text: &str| -> io::Result<()> {
        let path = dir.join(name);
        fs::write(&path, text)?;
        written.push(path);
        Ok(())
    };
    put("report.md", &markdown(report))?;
    if formats.json {
        put("results.json", &json(report))?;
    }
    if formats.csv {
        put("results.csv", &csv(report))?;
    }
    for (name, svg) in plots(report) {
        put(name, &svg)?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Report {
        let s = |v: &[f64]| Cell::Value(Stats::from_samples(v.to_vec()));
        let mut rows = vec![
            Row::new(
                "derive",
                "1",
                "derive + cancel + drop, 1 thread",
                Unit::Ns,
                vec![s(&[20.0, 21.0, 22.0]), s(&[90.0, 91.0]), s(&[160.0])],
            ),
            Row::new(
                "shared",
                "threads=1",
                "shared parent, 1 thread, total",
                Unit::Mops,
                vec![s(&[40.0]), s(&[10.0]), s(&[6.0])],
            ),
            Row::new(
                "shared",
                "threads=2",
                "shared parent, 2 threads, total",
                Unit::Mops,
                vec![s(&[70.0]), s(&[5.0]), s(&[2.0])],
            ),
            Row::new(
                "is_done",
                "threads=1",
                "is_done(), 1 thread",
                Unit::Ns,
                vec![s(&[0.5]), s(&[0.6]), s(&[12.0])],
            ),
            Row::new(
                "timeout",
                "1",
                "with_timeout + cancel | drop",
                Unit::Ns,
                vec![
                    s(&[50.0]),
                    s(&[200.0]),
                    Cell::Na("n/a (no deadlines)".into()),
                ],
            ),
            Row::new(
                "memory",
                "bytes",
                "live bytes",
                Unit::Bytes,
                vec![s(&[64.0]), s(&[128.0]), s(&[32.0])],
            ),
        ];
        rows[4].note = Some("a \"quoted\" note, with a comma".into());
        Report {
            machine: Machine {
                cpu: "Test CPU".into(),
                cores: 2,
                command: "ctxtree-bench --quick --only derive".into(),
                ..Machine::default()
            },
            settings: "3 samples".into(),
            threads: vec![1, 2],
            rows,
        }
    }

    #[test]
    fn ratios_read_the_right_way() {
        let r = tiny();
        assert_eq!(r.rows[0].ratio_text(1), "4.31× slower");
        assert_eq!(r.rows[0].ratio_text(2), "7.62× slower");
        assert_eq!(r.rows[2].ratio_text(2), "35.0× slower");
        assert_eq!(r.rows[5].ratio_text(1), "2.00× more");
        assert_eq!(r.rows[5].ratio_text(2), "2.00× less");
        assert_eq!(r.rows[4].ratio_text(2), "—");
    }

    #[test]
    fn targets_are_checked() {
        let ts = targets(&tiny().rows);
        let get = |w: &str| ts.iter().find(|t| t.what.trim() == w).unwrap();
        assert_eq!(get("derive + cancel + drop, 1 thread").met(), Some(true));
        let own = get("shared parent, 2 threads: vs ctxtree's own 1-thread rate");
        assert_eq!(own.measured, Some(1.75));
        assert_eq!(own.met(), Some(true));
        assert_eq!(get("live bytes per with_cancel child").met(), Some(true));
        assert_eq!(get("with_timeout + cancel + drop").met(), Some(true));
        assert_eq!(get("value lookup through 100 layers").met(), None);
        let t = Target {
            what: "x".into(),
            goal: Goal::AtMost(30.0),
            unit: "ns",
            measured: Some(45.0),
            issue: true,
        };
        assert_eq!(t.verdict(), "missed: 1.50× the goal");
        let close = Target {
            measured: Some(1.0005),
            unit: "allocs",
            goal: Goal::AtMost(1.0),
            ..t.clone()
        };
        assert_eq!(close.verdict(), "missed by 0.0005 allocs");
        let t = Target {
            goal: Goal::AtLeast(4.0),
            unit: "×",
            measured: Some(3.0),
            ..t
        };
        assert_eq!(t.verdict(), "missed: 25.0% short of the goal");
        assert_eq!(t.goal_text(), "≥ 4.00×");
    }

    /// The report writer on a tiny result set: every file is written and
    /// well-formed enough to be read back.
    #[test]
    fn writes_a_report_folder() {
        let dir = std::env::temp_dir().join(format!("ctxtree-bench-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let report = tiny();
        let written = write_all(
            &report,
            &dir,
            Formats {
                json: true,
                csv: true,
            },
        )
        .unwrap();
        assert_eq!(written.len(), 6);
        let md = fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(md.contains("| derive + cancel + drop, 1 thread | ns | **21.0** (20.0–22.0) | **90.5** (90.0–91.0) | 4.31× slower | 160 | 7.62× slower |"), "{md}");
        assert!(md.contains("with_timeout + cancel \\| drop"));
        assert!(md.contains("Test CPU"));
        assert!(md.contains("throughput_vs_threads.svg"));
        let json = fs::read_to_string(dir.join("results.json")).unwrap();
        assert!(json.contains("\"na\": \"n/a (no deadlines)\""));
        assert!(json.contains("\"note\": \"a \\\"quoted\\\" note, with a comma\""));
        assert_eq!(json.matches('{').count(), json.matches('}').count());
        assert_eq!(json.matches('[').count(), json.matches(']').count());
        let csv = fs::read_to_string(dir.join("results.csv")).unwrap();
        assert_eq!(csv.lines().count(), 1 + 6 * 3);
        assert!(csv.contains(
            "timeout,1,with_timeout + cancel | drop,ns,tokio-util,,,,,,,,n/a (no deadlines)"
        ));
        for (name, _) in PLOTS {
            let svg = fs::read_to_string(dir.join(name)).unwrap();
            assert!(
                svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
                "{name}"
            );
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{name}");
        }
        let svg = fs::read_to_string(dir.join("throughput_vs_threads.svg")).unwrap();
        assert_eq!(svg.matches("<polyline").count(), 3);
        let table = console_table(&report);
        assert!(table.contains("4.31× slower"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_ns(69.42), "69.4 ns");
        assert_eq!(fmt_ns(2456.0), "2.46 µs");
        assert_eq!(fmt_ns(331_179_990.0), "331 ms");
        assert_eq!(fmt_tick(8.0), "8");
        assert_eq!(fmt_tick(0.5), "0.500");
        assert_eq!(fmt_val(1.0005, Unit::Allocs), "1.0005");
        assert_eq!(fmt_num(0.0), "0");
    }

    #[test]
    fn empty_report_still_renders() {
        let report = Report {
            rows: Vec::new(),
            ..tiny()
        };
        for (_, svg) in plots(&report) {
            assert!(svg.contains("no data"));
        }
        assert!(markdown(&report).contains("## Targets"));
    }
}

//! The human-readable outputs: the console table and target check, and
//! report.md.

use std::fmt::Write as _;

use super::plots::PLOTS;
use super::targets::targets;
use super::{fmt_stats, fmt_val, Cell, Report, Row, IMPLS};

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
latest wake-up time any thread recorded. Beside the largest thread count, the same threads \
woken with no tree at all (`Thread::unpark` on each; on Linux also one `FUTEX_WAKE` on one \
word), sampled interleaved with the trees: the kernel's floor in the same run. Tasks: 10⁴ tasks on a tokio current_thread runtime \
each await a `done()` future; the clock runs from `cancel()` until all are joined.
- Memory: a counting global allocator (on only during this scenario, and only for the measuring \
thread) counts bytes and allocation calls while 10⁴ live children are derived from one parent; \
the parent's own growth (a child vector for the peers) is included. \
The 10⁶-deep chain runs in a fresh child process per sample (peak RSS from VmHWM, less the \
RSS before the chain; the chain's 10⁶ handles sit in a vector, 8 MB, for everyone), and the RSS \
scenario in a fresh child process per implementation (/proc/self/statm).
";

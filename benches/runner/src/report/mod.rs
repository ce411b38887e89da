//! Results, ratios against ctxtree, and the outputs, one module per
//! mechanism: the targets ([`targets`]), the console and markdown
//! tables ([`table`]), results.json / results.csv ([`data`]) and the SVG
//! plots ([`plots`]).

mod data;
mod plots;
mod table;
mod targets;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::machine::Machine;
use crate::measure::Stats;
use crate::tree::{CtxTree, MutexTree, TokioTree, Tree};

pub use table::{console_table, console_targets};

/// The implementations, in column order; ctxtree first (the reference).
pub const IMPLS: [&str; 3] = [CtxTree::NAME, MutexTree::NAME, TokioTree::NAME];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Ns,
    Us,
    Ms,
    Mops,
    /// Requests per second (the server rows).
    Rps,
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
            Unit::Rps => "req/s",
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
        matches!(self, Unit::Mops | Unit::Rps)
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
    put("report.md", &table::markdown(report))?;
    if formats.json {
        put("results.json", &data::json(report)?)?;
    }
    if formats.csv {
        put("results.csv", &data::csv(report)?)?;
    }
    for (name, svg) in plots::plots(report)? {
        put(name, &svg)?;
    }
    Ok(written)
}

/// A small result set for the tests of every output.
#[cfg(test)]
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

#[cfg(test)]
mod tests {
    use super::plots::{plots, PLOTS};
    use super::table::markdown;
    use super::*;

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
        serde_json::from_str::<data::Results>(&json).unwrap();
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
        let table = console_table(&report);
        assert!(table.contains("4.31× slower"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_ns(69.42), "69.4 ns");
        assert_eq!(fmt_ns(2456.0), "2.46 µs");
        assert_eq!(fmt_ns(331_179_990.0), "331 ms");
        assert_eq!(fmt_val(1.0005, Unit::Allocs), "1.0005");
        assert_eq!(fmt_num(0.0), "0");
    }

    #[test]
    fn empty_report_still_renders() {
        let report = Report {
            rows: Vec::new(),
            ..tiny()
        };
        for (_, svg) in plots(&report).unwrap() {
            assert!(svg.contains("no data"));
        }
        assert!(markdown(&report).contains("## Targets"));
    }
}

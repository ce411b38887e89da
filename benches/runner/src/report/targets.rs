//! Issue 6's targets and the goals of shared/anchors.md, checked against a
//! run's rows.

use super::{fmt_num, fmt_ratio, Row};

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

#[cfg(test)]
mod tests {
    use super::super::tiny;
    use super::*;

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
}

//! The rows about tails (issue 25): churned trees and timer storms, their
//! samplers in `churn.rs`.

use crate::measure::{interleave, Stats};
use crate::progress::Progress;
use crate::report::{Cell, Row, Unit, IMPLS};
use crate::tree::{CtxTree, MutexTree, TokioTree};

use super::{pow10, sized_case, Config};

/// The churned-tree rows (`churn.rs`).
pub(super) fn churn_rows(id: &str, cfg: &Config, p: &mut Progress) -> Vec<Row> {
    use crate::churn::{self, cancel_grid, derive_after_drops};
    let samples = cfg.deep_samples;
    let cells = |stats: Vec<Option<Stats>>| -> Vec<Cell> {
        stats
            .into_iter()
            .map(|s| s.map_or_else(|| Cell::Na("n/a".into()), Cell::Value))
            .collect()
    };
    let grid = format!("{} x {}", pow10(churn::MIDS), pow10(churn::LEAVES));
    let label = format!("cancel a fresh {grid} tree, per leaf");
    p.step(&label);
    let fresh = interleave(
        samples,
        vec![
            cancel_grid::<CtxTree>(false),
            cancel_grid::<MutexTree>(false),
            cancel_grid::<TokioTree>(false),
        ],
    );
    let mut rows = vec![Row::new(
        id,
        "fresh",
        &label,
        Unit::Ns,
        cells(fresh.clone()),
    )];
    let label = format!("cancel the {grid} tree after churn under it, per leaf");
    p.step(&label);
    let churned = interleave(
        samples,
        vec![
            cancel_grid::<CtxTree>(true),
            cancel_grid::<MutexTree>(true),
            cancel_grid::<TokioTree>(true),
        ],
    );
    let label_floor = format!(
        "pointer chase over {} scattered nodes, per node",
        pow10(churn::MIDS * churn::LEAVES)
    );
    p.step(&label_floor);
    let floor = interleave(samples, vec![Some(churn::pointer_chase())]).remove(0);
    let floor_median = floor.as_ref().map_or(f64::NAN, |s| s.median);
    let mut r = Row::new(id, "churned", &label, Unit::Ns, cells(churned.clone()));
    r.note = Some(churn::memory_note(&fresh, &churned, floor_median));
    rows.push(r);
    let mut floor_cells = vec![floor.map_or_else(|| Cell::Na("n/a".into()), Cell::Value)];
    floor_cells.extend((1..IMPLS.len()).map(|_| Cell::Na("(the floor)".into())));
    let mut r = Row::new(id, "floor", &label_floor, Unit::Ns, floor_cells);
    r.note = Some(
        "the memory-latency floor of the walks above: one dependent load per 64-byte node, in \
         shuffled order; the same for every implementation"
            .into(),
    );
    rows.push(r);
    for (case, pct, what) in [("p999", 99.9, "p99.9"), ("max", 100.0, "max")] {
        let label = format!(
            "single derives after {} children dropped in random order: {what}",
            pow10(churn::DROPPED)
        );
        p.step(&label);
        let stats = interleave(
            samples,
            vec![
                derive_after_drops::<CtxTree>(pct),
                derive_after_drops::<MutexTree>(pct),
                derive_after_drops::<TokioTree>(pct),
            ],
        );
        let mut r = Row::new(id, case, &label, Unit::Ns, cells(stats));
        r.note = Some(format!(
            "{} derives under the parent, each timed alone (about 20 ns of it is the clock); per \
             sample the {what}, then the median over samples",
            2 * churn::DROPPED
        ));
        rows.push(r);
    }
    rows
}

/// The storm rows (`churn.rs`): a 1 ms timeout armed as the storm falls
/// due, and a timeout armed before the storm and due 5 ms after it.
pub(super) fn storm_rows(id: &str, cfg: &Config, p: &mut Progress) -> Vec<Row> {
    use crate::churn::{storm_lateness, Later, STORM};
    let n = cfg.storm;
    let variants = [
        (
            Later::ArmedAtTheStorm,
            "a 1 ms timeout armed as",
            "lateness",
        ),
        (
            Later::ArmedBefore,
            "a timeout due 5 ms after",
            "lateness_before",
        ),
    ];
    let mut rows = Vec::new();
    for (later, what, case) in variants {
        let label = format!("{what} {} deadlines fall due: lateness", pow10(n));
        p.step(&label);
        let stats = interleave(
            cfg.deep_samples.min(3),
            vec![
                storm_lateness::<CtxTree>(n, later),
                storm_lateness::<MutexTree>(n, later),
                storm_lateness::<TokioTree>(n, later),
            ],
        );
        let cells = stats
            .into_iter()
            .map(|s| s.map_or_else(|| Cell::Na("n/a (no deadlines)".into()), Cell::Value))
            .collect();
        let case = sized_case(case, "deadlines", n, STORM);
        let mut r = Row::new(id, &case, &label, Unit::Ms, cells);
        r.note = Some(match later {
            Later::ArmedAtTheStorm => "from the timeout's deadline until a thread blocked on it \
                 wakes; idle, the same timeout is about 0.1 ms late"
                .into(),
            Later::ArmedBefore => "armed before the storm's instant, so it waits in the timer's \
                 heap with the storm; from its deadline until a thread blocked on it wakes"
                .into(),
        });
        rows.push(r);
    }
    rows
}

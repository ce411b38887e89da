//! The rows beyond one parent (`compose.rs`): merge + cancel + drop, and a
//! group of tasks stopped by its first error.

use crate::compose::{self, GroupRun, TaskFailed};
use crate::measure::{interleave, per_op, per_op_rounds, Sampler};
use crate::ops::live_parent;
use crate::progress::Progress;
use crate::report::{Cell, Row, Unit};
use crate::tree::{CtxTree, MutexTree, TokioTree, Tree};

use super::{pow10, Config};

fn cells(stats: Vec<Option<crate::measure::Stats>>) -> Vec<Cell> {
    stats
        .into_iter()
        .map(|s| s.map_or_else(|| Cell::Na("n/a".into()), Cell::Value))
        .collect()
}

/// ns per merge + cancel + drop, batches run in one `block_on` of a
/// current_thread runtime (where tokio-util's link task runs).
fn merge<T: Tree>(cfg: &Config) -> Option<Sampler> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("build a tokio current_thread runtime");
    let (a, a_handle) = live_parent::<T>();
    let (parent, parent_handle) = live_parent::<T>();
    Some(per_op(cfg.sampling.target, move |n| {
        let _keep = (&a_handle, &parent_handle);
        rt.block_on(async {
            for _ in 0..n {
                let done = compose::merge_cancel_drop::<T>(&a, &parent).await;
                assert!(done, "{}: the merged context was not canceled", T::NAME);
            }
        });
    }))
}

/// µs per group; `one` runs one group on the runtime. Every run is checked:
/// the first error came back and every other task saw the cancel.
fn group(
    cfg: &Config,
    mut one: impl FnMut(&tokio::runtime::Runtime) -> GroupRun + 'static,
) -> Option<Sampler> {
    let rt = compose::group_runtime();
    let n = cfg.group_tasks;
    let mut ns = per_op_rounds(cfg.sampling.target, move || {
        let run = one(&rt);
        assert_eq!(run.first_error, Some(TaskFailed(n - 1)));
        assert_eq!(run.observed, n - 1, "a task missed the cancel");
        (run.elapsed, 1)
    });
    Some(Box::new(move || ns() / 1e3))
}

fn ctxtree_group(cfg: &Config) -> Option<Sampler> {
    let (parent, handle) = live_parent::<CtxTree>();
    let n = cfg.group_tasks;
    group(cfg, move |rt| {
        let _keep = &handle;
        rt.block_on(compose::ctxtree_group(&parent, n))
    })
}

fn joinset_group<T: Tree>(cfg: &Config) -> Option<Sampler> {
    let (parent, handle) = live_parent::<T>();
    let n = cfg.group_tasks;
    group(cfg, move |rt| {
        let _keep = &handle;
        rt.block_on(compose::joinset_group::<T>(&parent, n))
    })
}

pub(super) fn merge_rows(id: &str, cfg: &Config, p: &mut Progress) -> Vec<Row> {
    let label = "merge + cancel + drop, 1 thread";
    p.step(label);
    let stats = interleave(
        cfg.sampling.samples,
        vec![
            merge::<CtxTree>(cfg),
            merge::<MutexTree>(cfg),
            merge::<TokioTree>(cfg),
        ],
    );
    let mut r = Row::new(id, "1", label, Unit::Ns, cells(stats));
    r.note = Some(
        "per op: derive b under a live parent, merge a long-lived live a with b, cancel b, wait \
         until the merged context is done, drop everything. ctxtree: a.merge(&b). No peer has a \
         merge; the mutex tree uses Go's documented AfterFunc recipe (a child of a, a callback \
         on b that cancels it, run inline where Go starts a goroutine); tokio-util cannot run \
         code when a token is canceled, so its users spawn a task per merge (a child token of a, \
         a select on both cancelled() futures), here on a current_thread runtime, and the \
         merged token ends when that task has run"
            .into(),
    );
    vec![r]
}

pub(super) fn group_rows(id: &str, cfg: &Config, p: &mut Progress) -> Vec<Row> {
    let n = cfg.group_tasks;
    let label = format!("group of {} tasks: spawn, first error, wait", pow10(n));
    p.step(&label);
    // ctxtree also in the peers' hand-written group, interleaved with the
    // rest: what the group costs beyond the tree's own operations.
    let mut stats = interleave(
        cfg.sampling.samples,
        vec![
            ctxtree_group(cfg),
            joinset_group::<MutexTree>(cfg),
            joinset_group::<TokioTree>(cfg),
            joinset_group::<CtxTree>(cfg),
        ],
    );
    let by_hand = stats.pop().expect("four samplers");
    let mut r = Row::new(id, &format!("tasks={n}"), &label, Unit::Us, cells(stats));
    r.note = Some(
        "tokio multi-thread runtime with 2 workers; the last task spawned returns Err, the others \
         await their context's end; from the first spawn until wait() returns. ctxtree: \
         ctxtree::tokio::TaskGroup; the peers have no group: a JoinSet, a child context per task, \
         the failing task cancels the group's context (errgroup's rule) and the joining loop \
         keeps the first error"
            .into(),
    );
    let mut hand = cells(vec![by_hand]);
    hand.extend([
        Cell::Na("(see above)".into()),
        Cell::Na("(see above)".into()),
    ]);
    let mut h = Row::new(
        id,
        &format!("by_hand,tasks={n}"),
        &format!("{label}, ctxtree in the hand-written JoinSet group"),
        Unit::Us,
        hand,
    );
    h.note = Some(
        "the peers' hand-written group above with ctxtree's contexts, sampled with that row: \
         against ctxtree's TaskGroup it shows what the group adds (panic catching, the tracker, \
         a context per task it cancels when the task ends)"
            .into(),
    );
    vec![r, h]
}

//! Operations beyond one parent: a merged context canceled through its
//! second input, and a group of tasks stopped by the first error. ctxtree
//! has both (`Context::merge`, `ctxtree::tokio::TaskGroup`); for the peers
//! these are what a user writes by hand, described where they are built
//! (`Tree::merge` in `tree.rs`, [`joinset_group`] here).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::tree::Tree;

/// Derive `b` under `parent`, merge `primary` with it, cancel `b`, wait
/// until the merged context is done, drop everything. The wait is a check
/// for the trees whose merge cancels inline; tokio-util's merge is a task,
/// which runs at that `.await`. Returns whether the merged context ended.
pub async fn merge_cancel_drop<T: Tree>(primary: &T::Ctx, parent: &T::Ctx) -> bool {
    let (b, b_handle) = T::derive(parent);
    let (merged, merged_handle) = T::merge(primary, &b);
    T::cancel(&b_handle);
    if !T::is_done(&merged) {
        let _ = T::done(&merged).await;
    }
    let done = T::is_done(&merged);
    drop(merged_handle);
    drop(merged);
    drop(b_handle);
    drop(b);
    done
}

/// The error of the one failing task of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskFailed(pub usize);

impl std::fmt::Display for TaskFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "task {} failed", self.0)
    }
}

impl std::error::Error for TaskFailed {}

/// One run of a group: how long from the first spawn until `wait`
/// returned, what it returned, and how many tasks saw their context end.
#[derive(Debug)]
pub struct GroupRun {
    pub elapsed: Duration,
    pub first_error: Option<TaskFailed>,
    pub observed: usize,
}

/// `n` tasks in a `ctxtree::tokio::TaskGroup` under `parent`: the last one
/// spawned returns `Err`, the others wait for their context to end.
pub async fn ctxtree_group(parent: &ctxtree::Context, n: usize) -> GroupRun {
    let observed = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut group = ctxtree::tokio::TaskGroup::new(parent);
    for i in 0..n {
        let observed = Arc::clone(&observed);
        group
            .spawn(move |ctx| async move {
                if i == n - 1 {
                    return Err(TaskFailed(i));
                }
                ctx.done().await;
                observed.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
            .await;
    }
    let result = group.wait().await;
    let elapsed = start.elapsed();
    GroupRun {
        elapsed,
        first_error: result
            .err()
            .map(|cause| *cause.downcast_ref::<TaskFailed>().expect("a TaskFailed")),
        observed: observed.load(Ordering::Relaxed),
    }
}

/// The same group written by hand, as users of a tree without groups do:
/// a `JoinSet`, a group context under `parent` and a child of it per task;
/// a failing task cancels the group context itself (errgroup's rule, so
/// the siblings stop at once, not when the joining loop gets to it); the
/// joining loop keeps the first error.
pub async fn joinset_group<T: Tree>(parent: &T::Ctx, n: usize) -> GroupRun {
    let observed = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let (group, cancel) = T::derive(parent);
    let cancel = Arc::new(cancel);
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (ctx, handle) = T::derive(&group);
        let (cancel, observed) = (Arc::clone(&cancel), Arc::clone(&observed));
        tasks.spawn(async move {
            let _ends_with_the_task = handle;
            if i == n - 1 {
                T::cancel(&cancel);
                return Err(TaskFailed(i));
            }
            let _ = T::done(&ctx).await;
            observed.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined.expect("a group task panicked") {
            first_error.get_or_insert(e);
        }
    }
    T::cancel(&cancel);
    let elapsed = start.elapsed();
    GroupRun {
        elapsed,
        first_error,
        observed: observed.load(Ordering::Relaxed),
    }
}

/// The multi-thread runtime the group rows run on: 2 workers.
pub fn group_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("build a tokio multi-thread runtime")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::live_parent;
    use crate::tree::{CtxTree, MutexTree, TokioTree};

    fn current_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    /// The merged context ends through the second input, not before, and
    /// not through a sibling; the first input stays live.
    fn merge_cancels_through_the_second<T: Tree>() {
        current_thread().block_on(async {
            let (a, _ha) = live_parent::<T>();
            let (p, _hp) = live_parent::<T>();
            let (b, hb) = T::derive(&p);
            let (merged, _mh) = T::merge(&a, &b);
            let (unrelated, _uh) = T::derive(&p);
            tokio::task::yield_now().await; // let a link task start
            assert!(!T::is_done(&merged), "{}", T::NAME);
            T::cancel(&hb);
            let _ = T::done(&merged).await;
            assert!(T::is_done(&merged), "{}", T::NAME);
            assert!(!T::is_done(&a) && !T::is_done(&unrelated), "{}", T::NAME);
            // The timed operation does the same.
            assert!(merge_cancel_drop::<T>(&a, &p).await, "{}", T::NAME);
            // Canceling the primary ends a merge too.
            let (b2, _hb2) = T::derive(&p);
            let (a2, ha2) = T::derive(&a);
            let (merged2, _mh2) = T::merge(&a2, &b2);
            T::cancel(&ha2);
            assert!(T::is_done(&merged2), "{}", T::NAME);
        });
    }

    #[test]
    fn ctxtree_merge_cancels_through_the_second_input() {
        merge_cancels_through_the_second::<CtxTree>();
    }

    #[test]
    fn mutex_tree_merge_cancels_through_the_second_input() {
        merge_cancels_through_the_second::<MutexTree>();
    }

    #[test]
    fn tokio_merge_cancels_through_the_second_input() {
        merge_cancels_through_the_second::<TokioTree>();
    }

    /// Merges dropped early are canceled by their handle, and a later
    /// merge with the same second input still works (its registrations
    /// were removed, not left to fire).
    #[test]
    fn mutex_tree_merge_dropped_early_unregisters() {
        let (a, _ha) = live_parent::<MutexTree>();
        let (b, hb) = live_parent::<MutexTree>();
        for _ in 0..1000 {
            let (merged, mh) = MutexTree::merge(&a, &b);
            drop(mh);
            assert!(MutexTree::is_done(&merged));
        }
        let (merged, _mh) = MutexTree::merge(&a, &b);
        MutexTree::cancel(&hb);
        assert!(MutexTree::is_done(&merged));
        assert!(!MutexTree::is_done(&a));
    }

    fn check(run: GroupRun, n: usize) {
        assert_eq!(run.first_error, Some(TaskFailed(n - 1)));
        assert_eq!(run.observed, n - 1, "every other task saw the cancel");
        assert!(run.elapsed > Duration::ZERO);
    }

    #[test]
    fn groups_cancel_on_the_first_error_and_wait_for_all() {
        let rt = group_runtime();
        let n = 1000;
        rt.block_on(async {
            let (parent, _h) = live_parent::<CtxTree>();
            check(ctxtree_group(&parent, n).await, n);
            assert!(!parent.is_done());
            let (parent, _h) = live_parent::<MutexTree>();
            check(joinset_group::<MutexTree>(&parent, n).await, n);
            assert!(!parent.is_done());
            let (parent, _h) = live_parent::<TokioTree>();
            check(joinset_group::<TokioTree>(&parent, n).await, n);
            assert!(!parent.is_cancelled());
            let (parent, _h) = live_parent::<CtxTree>();
            check(joinset_group::<CtxTree>(&parent, 3).await, 3);
        });
    }
}

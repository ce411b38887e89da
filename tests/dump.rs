//! `Context::tree`: the live subtree, bounded, read while other threads
//! derive, cancel and drop in it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ctxtree::{Cause, Context, Error, TreeLimits};

#[test]
fn a_dump_shows_names_deadlines_waiters_and_ends() {
    let (server, _s) = Context::background().named("server").with_cancel();
    let (request, _r) = server.named("GET /a").with_timeout(Duration::from_secs(60));
    let (job, cancel_job) = request.named("job").with_cancel();
    let (_step, _st) = job.with_cancel();
    let waiter = request.after_func(|| {});
    let tree = server.tree();
    let kinds: Vec<_> = tree.nodes.iter().map(|n| (n.depth, n.kind)).collect();
    assert_eq!(
        kinds,
        [
            (0, "WithCancel"),
            (1, "WithDeadline"),
            (2, "WithCancel"),
            (3, "WithCancel")
        ]
    );
    assert_eq!(tree.nodes[1].waiters.callbacks, 1);
    assert_eq!(tree.nodes[0].waiters.total(), 0);
    assert!(tree.nodes[0].age.is_some() && tree.nodes[3].age.is_none());
    let left = tree.nodes[1].deadline_in.unwrap();
    assert!(left > Duration::from_secs(59) && left <= Duration::from_secs(60));
    assert_eq!(tree.not_shown, 0);

    // A canceled job leaves its parent's list once its subtree is canceled;
    // dumped directly it shows its end and its origin.
    cancel_job.cancel_with_cause(Cause::msg("no longer needed"));
    let gone = job.tree();
    assert_eq!(
        gone.nodes.len(),
        1,
        "a canceled context's children are released"
    );
    let line = gone.to_string();
    assert!(line.starts_with("WithCancel(\"job\") in "), "{line}");
    assert!(
        line.contains(
            "· context canceled: no longer needed \
             (context.Background.WithCancel(\"server\").WithDeadline(\"GET /a\", ["
        ),
        "{line}"
    );
    assert!(
        line.ends_with("]).WithCancel(\"job\") was canceled by its handle)\n"),
        "{line}"
    );
    assert_eq!(gone.nodes[0].err, Some(Error::Canceled));
    assert_eq!(
        server.tree().nodes.len(),
        2,
        "the job left the server's tree"
    );
    drop(waiter);
    assert_eq!(
        Context::background().tree().to_string(),
        "context.Background\n"
    );
}

#[test]
fn limits_cut_width_depth_and_total_and_count_what_they_cut() {
    let (root, _h) = Context::background().with_cancel();
    let mut keep = Vec::new();
    for _ in 0..50 {
        let (mid, h) = root.with_cancel();
        for _ in 0..20 {
            keep.push(mid.with_cancel());
        }
        keep.push((mid, h));
    }
    let limits = TreeLimits {
        max_depth: 1,
        max_children: 10,
        max_nodes: 1000,
        count_cap: 10_000,
    };
    let tree = root.tree_with(&limits);
    assert_eq!(tree.nodes.len(), 11);
    assert_eq!(tree.nodes[0].children, 10);
    assert_eq!(tree.nodes[0].children_not_shown, 40);
    assert!(tree.nodes[1..]
        .iter()
        .all(|n| n.children == 0 && n.children_not_shown == 20));
    assert_eq!(tree.not_shown, 40 + 10 * 20);
    let text = tree.to_string();
    assert!(text.contains("· 50 children (40 not shown)"), "{text}");
    assert!(text.ends_with("(240 contexts not shown)\n"), "{text}");

    let tree = root.tree_with(&TreeLimits {
        max_nodes: 25,
        count_cap: 5,
        ..TreeLimits::default()
    });
    assert_eq!(tree.nodes.len(), 25);
    assert!(
        tree.nodes[0].children_not_shown <= 5,
        "counts stop at the cap"
    );
}

/// A dump of a million-context tree stays within its bounds while other
/// threads derive, cancel and drop in it.
#[test]
fn a_million_node_tree_dumps_within_bounds_under_churn() {
    let (mids, leaves) = if cfg!(debug_assertions) {
        (300, 300)
    } else {
        (1000, 1000)
    };
    let (root, cancel_root) = Context::background().with_cancel();
    let mut tree = Vec::with_capacity(mids);
    for _ in 0..mids {
        let (mid, h) = root.with_cancel();
        let kids: Vec<_> = (0..leaves).map(|_| mid.with_cancel()).collect();
        tree.push((mid, h, kids));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mids_ctx: Arc<Vec<Context>> = Arc::new(tree.iter().map(|(m, _, _)| m.clone()).collect());
    let churners: Vec<_> = (0..2)
        .map(|t| {
            let (stop, mids) = (stop.clone(), mids_ctx.clone());
            thread::spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let mid = &mids[i % mids.len()];
                    let (a, ha) = mid.with_cancel();
                    let (_b, hb) = a.with_timeout(Duration::from_secs(60));
                    drop(hb);
                    drop(ha);
                    i = i.wrapping_mul(31).wrapping_add(7);
                }
            })
        })
        .collect();
    let limits = TreeLimits::default();
    for round in 0..20 {
        if round == 10 {
            // Cancel a tenth of the mids while dumps run.
            for (_, h, _) in tree.iter().step_by(10) {
                h.cancel();
            }
        }
        let dump = root.tree_with(&limits);
        assert!(dump.nodes.len() <= limits.max_nodes);
        assert!(dump.nodes.iter().all(|n| n.children <= limits.max_children));
        assert!(dump
            .nodes
            .iter()
            .all(|n| n.children_not_shown <= limits.count_cap));
        assert!(dump.to_string().lines().count() <= limits.max_nodes + 1);
    }
    stop.store(true, Ordering::Relaxed);
    for c in churners {
        c.join().unwrap();
    }
    cancel_root.cancel();
    assert_eq!(root.tree().nodes.len(), 1);
}

/// Merged contexts show as such; named ones show their age; waiters are
/// counted by kind, those that gave up not at all (the count collects
/// them); and a cut count says so.
#[test]
fn a_dump_shows_merges_ages_and_who_waits() {
    use std::future::Future;
    use std::task::{Context as TaskContext, Waker};

    let (server, _s) = Context::background().named("server").with_cancel();
    let (other, _o) = Context::background().with_cancel();
    let (merged, _m) = server.merge(&other);
    thread::sleep(Duration::from_millis(20));
    let (request, _r) = server.named("request").with_cancel();

    // Two tasks (one gives up), a thread, a function.
    let mut tasks: Vec<_> = (0..2).map(|_| Box::pin(request.done())).collect();
    for task in &mut tasks {
        let mut cx = TaskContext::from_waker(Waker::noop());
        assert!(task.as_mut().poll(&mut cx).is_pending());
    }
    drop(tasks.pop());
    let _f = request.after_func(|| {});
    let blocked = {
        let request = request.clone();
        thread::spawn(move || request.wait())
    };
    let tree = loop {
        let tree = request.tree();
        if tree.nodes[0].waiters.threads == 1 {
            break tree;
        }
        thread::sleep(Duration::from_millis(1));
    };
    let waiters = tree.nodes[0].waiters;
    assert_eq!(
        (
            waiters.threads,
            waiters.tasks,
            waiters.callbacks,
            waiters.more
        ),
        (1, 1, 1, false)
    );
    let line = tree.to_string();
    assert!(
        line.contains("· 3 waiting (1 thread, 1 task, 1 after_func)"),
        "{line}"
    );

    let tree = server.tree();
    let kinds: Vec<_> = tree.nodes.iter().map(|n| n.kind).collect();
    assert_eq!(kinds, ["WithCancel", "WithCancel", "Merged"]);
    let (server_age, request_age) = (tree.nodes[0].age.unwrap(), tree.nodes[1].age.unwrap());
    assert!(server_age >= Duration::from_millis(20), "{server_age:?}");
    assert!(request_age < server_age);
    assert!(tree.to_string().contains("· age "));
    // The merged context's registration on `other` is a function there.
    assert_eq!(other.tree().nodes[0].waiters.callbacks, 1);
    drop(merged);

    // Counting stops at `count_cap`: the rest is still counted as more.
    let registrations: Vec<_> = (0..10).map(|_| request.after_func(|| {})).collect();
    let limits = TreeLimits {
        count_cap: 4,
        ..TreeLimits::default()
    };
    let waiters = request.tree_with(&limits).nodes[0].waiters;
    assert!(waiters.more && waiters.total() == 4, "{waiters:?}");
    // The rest went to the collector and comes back: nothing is lost.
    drop(registrations);
    _r.cancel();
    assert_eq!(blocked.join().unwrap(), Error::Canceled);
    assert!(tasks[0]
        .as_mut()
        .poll(&mut TaskContext::from_waker(Waker::noop()))
        .is_ready());
}

/// The dump's data serializes (feature `serde`) for an admin endpoint.
#[cfg(feature = "serde")]
#[test]
fn a_dump_serializes_to_json() {
    let (server, _s) = Context::background().named("server").with_cancel();
    let (_request, _r) = server.named("GET /a").with_timeout(Duration::from_secs(60));
    let json = serde_json::to_value(server.tree()).unwrap();
    let nodes = json["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[1]["kind"], "WithDeadline");
    assert_eq!(nodes[1]["name"], "GET /a");
    let left = nodes[1]["deadline_in"].as_f64().unwrap();
    assert!(left > 59.0 && left <= 60.0, "{left}");
    assert_eq!(nodes[1]["err"], serde_json::Value::Null);
    assert_eq!(nodes[0]["waiters"]["tasks"], 0);
    _r.cancel();
    let json = serde_json::to_value(server.tree_with(&TreeLimits::default())).unwrap();
    assert_eq!(json["nodes"].as_array().unwrap().len(), 1);
}

/// The counters' snapshot serializes too (features `serde` and `stats`).
#[cfg(all(feature = "serde", feature = "stats"))]
#[test]
fn a_stats_snapshot_serializes_to_json() {
    let (_ctx, _h) = Context::background().with_cancel();
    let json = serde_json::to_value(ctxtree::stats::snapshot()).unwrap();
    assert!(json["derived"].as_u64().unwrap() >= 1, "{json}");
}

/// The dumped context's first line summarizes its value layers (the only
/// ones a dump can see: layers are not nodes of the tree).
#[test]
fn a_dump_shows_the_dumped_contexts_values() {
    struct RequestId(#[allow(dead_code)] u64);
    let (server, _s) = Context::background().with_cancel();
    let ctx = server.with_value(RequestId(7)).with_value(5u32);
    let tree = ctx.tree();
    assert_eq!(tree.nodes[0].values.len(), 2);
    assert_eq!(tree.nodes[0].values[0], "u32");
    assert!(tree.nodes[0].values[1].ends_with("RequestId"));
    assert!(tree.to_string().contains(" · values u32, "), "{tree}");
    let (_child, _c) = ctx.with_cancel();
    let tree = ctx.tree();
    assert!(tree.nodes[1].values.is_empty());
    assert_eq!(
        Context::background().with_value(1u8).tree().nodes[0].values,
        ["u8"]
    );
}

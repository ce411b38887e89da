//! `Context::origin`: which context a cancellation started at, and how,
//! for every way a context can end.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use ctxtree::{Cause, Context, Error, OriginKind};

#[test]
fn each_kind_of_cancel_is_reported_at_the_context_it_started_from() {
    let (a, h) = Context::background().with_cancel();
    h.cancel_with_cause(Cause::msg("stop"));
    let o = a.origin().unwrap();
    assert_eq!((o.kind(), o.depth()), (OriginKind::Cancel, 0));
    assert!(o.is(&a));

    let (b, h) = Context::background().with_cancel();
    drop(h);
    assert_eq!(b.origin().unwrap().kind(), OriginKind::HandleDropped);

    // Fired by the timer thread.
    let (c, _h) = Context::background().with_timeout(Duration::from_millis(5));
    assert_eq!(c.wait(), Error::DeadlineExceeded);
    let o = c.origin().unwrap();
    assert_eq!((o.kind(), o.depth()), (OriginKind::Deadline, 0));

    // Born expired.
    let (d, _h) = Context::background().with_timeout(Duration::ZERO);
    assert_eq!(d.origin().unwrap().kind(), OriginKind::Deadline);

    // A live context and the roots have none.
    let (live, _h) = Context::background().with_cancel();
    assert!(live.origin().is_none());
    assert!(Context::background().origin().is_none());
    assert!(a.without_cancel().origin().is_none());
}

#[test]
fn a_cancel_from_above_names_the_ancestor_and_the_distance() {
    let (server, shutdown) = Context::background().with_cancel();
    let request = server.with_value("req-7");
    let (call, _c) = request.with_timeout(Duration::from_secs(60));
    let (step, _s) = call.with_value(3u8).with_cancel();
    // Born after the cancel: inherits it too.
    shutdown.cancel();
    let (late, _l) = step.with_cancel();
    for (ctx, depth) in [(&call, 1), (&step, 2), (&late, 3)] {
        let o = ctx.origin().unwrap();
        assert_eq!((o.kind(), o.depth()), (OriginKind::Cancel, depth));
        assert!(o.is(&server) && o.is(&request) && !o.is(ctx));
    }
    assert_eq!(
        step.origin().unwrap().to_string(),
        "context.Background.WithCancel was canceled by its handle"
    );
    let debug = format!("{step:?}");
    assert!(
        debug
            .contains("origin: Some(\"context.Background.WithCancel was canceled by its handle\")"),
        "{debug}"
    );
}

#[test]
fn a_deadline_above_is_the_origin_of_everything_below() {
    let (outer, _o) = Context::background().with_timeout(Duration::from_millis(5));
    let (inner, _i) = outer.with_cancel();
    assert_eq!(inner.wait(), Error::DeadlineExceeded);
    let o = inner.origin().unwrap();
    assert_eq!((o.kind(), o.depth()), (OriginKind::Deadline, 1));
    assert!(o.to_string().ends_with(" passed its deadline"), "{o}");
}

#[test]
fn a_merged_parent_other_than_the_primary_is_reported_as_a_merge() {
    let (request, _r) = Context::background().with_cancel();
    let (server, shutdown) = Context::background().with_cancel();
    let (merged, _m) = request.merge(&server);
    let (below, _b) = merged.with_cancel();
    shutdown.cancel();
    let o = below.origin().unwrap();
    assert_eq!((o.kind(), o.depth()), (OriginKind::Merged, 1));
    assert!(o.is(&merged));

    // The primary's cancel is inherited like any parent's.
    let (primary, cancel_primary) = Context::background().with_cancel();
    let (merged, _m) = primary.merge(&server.without_cancel());
    cancel_primary.cancel();
    let o = merged.origin().unwrap();
    assert_eq!((o.kind(), o.depth()), (OriginKind::Cancel, 1));

    // Merged with a context that is already done: born done, by a merge.
    let (born, _b) = Context::background().merge(&server);
    assert_eq!(born.origin().unwrap().kind(), OriginKind::Merged);
}

#[test]
fn a_task_group_failure_names_the_group_context() {
    let (request, _r) = Context::background().with_cancel();
    let origin = Arc::new(std::sync::Mutex::new(None));
    let o = origin.clone();
    let result = ctxtree::group::scope(&request, |group| {
        group.spawn(|_ctx| Err::<(), _>(Cause::msg("boom")));
        let o = o.clone();
        group.spawn(move |ctx| {
            ctx.wait();
            *o.lock().unwrap() = ctx.origin().map(|o| (o.kind(), o.depth()));
            Ok::<(), Cause>(())
        });
    });
    assert_eq!(result.unwrap_err().to_string(), "boom");
    // The task's context is a child of the group's.
    assert_eq!(*origin.lock().unwrap(), Some((OriginKind::TaskGroup, 1)));
    assert!(
        request.origin().is_none(),
        "the group's failure stays in the group"
    );
}

/// A parent's cancel racing the child's own: whichever claim won, the
/// child's cause and origin agree (S4: both written by the same claim).
#[test]
fn racing_cancels_give_an_origin_consistent_with_the_cause() {
    for _ in 0..2_000 {
        let (parent, cancel_parent) = Context::background().with_cancel();
        let (child, cancel_child) = parent.with_cancel();
        let start = Arc::new(Barrier::new(2));
        let s = start.clone();
        let t = thread::spawn(move || {
            s.wait();
            cancel_parent.cancel_with_cause(Cause::msg("parent"));
        });
        start.wait();
        cancel_child.cancel_with_cause(Cause::msg("child"));
        t.join().unwrap();
        let o = child.origin().unwrap();
        let cause = child.cause().unwrap().to_string();
        match cause.as_str() {
            "parent" => assert!(o.depth() == 1 && o.is(&parent)),
            "child" => assert!(o.depth() == 0 && o.is(&child)),
            other => panic!("unexpected cause {other}"),
        }
        assert_eq!(o.kind(), OriginKind::Cancel);
    }
}

/// The chain walk is a loop: a million-deep chain on a small stack.
#[test]
fn the_origin_of_a_deep_chain_is_found_iteratively() {
    thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let (root, cancel) = Context::background().with_cancel();
            let mut chain = vec![];
            let mut ctx = root.clone();
            for _ in 0..1_000_000 {
                let (child, handle) = ctx.with_cancel();
                chain.push(handle);
                ctx = child;
            }
            cancel.cancel();
            let o = ctx.origin().unwrap();
            assert_eq!((o.kind(), o.depth()), (OriginKind::Cancel, 1_000_000));
            assert!(o.is(&root));
            drop(ctx);
            while chain.pop().is_some() {}
        })
        .unwrap()
        .join()
        .unwrap();
}

#[cfg(feature = "tokio")]
#[test]
fn a_bridged_token_is_reported_as_the_bridge() {
    let token = tokio_util::sync::CancellationToken::new();
    let (ctx, _h) = Context::background().with_cancellation_token(&token);
    token.cancel();
    assert_eq!(ctx.origin().unwrap().kind(), OriginKind::TokenBridge);
}

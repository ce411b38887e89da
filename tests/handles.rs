//! `CancelHandle::disarm` and `Canceler`: cancel-on-drop given up, a
//! handle shared by clones.

mod common;

use std::thread;
use std::time::Duration;

use common::alloc::thread_live;
use ctxtree::{Cause, Context, Error, OriginKind};

#[global_allocator]
static GLOBAL: common::alloc::Counting = common::alloc::Counting;

#[test]
fn a_disarmed_handle_cancels_only_when_asked() {
    let (ctx, handle) = Context::background().with_cancel();
    let canceler = handle.disarm();
    assert!(!ctx.is_done(), "disarm does not cancel");
    let clones: Vec<_> = (0..8).map(|_| canceler.clone()).collect();
    drop(clones);
    assert!(!ctx.is_done(), "dropping clones cancels nothing");
    assert!(!canceler.is_canceled());
    canceler.cancel_with_cause(Cause::msg("done"));
    assert!(canceler.is_canceled());
    assert_eq!(ctx.cause().unwrap().to_string(), "done");
    assert_eq!(ctx.origin().unwrap().kind(), OriginKind::Cancel);
    assert_eq!(format!("{canceler:?}"), "Canceler { canceled: true }");
}

#[test]
fn a_canceler_shared_by_threads_cancels_once_first_writer_wins() {
    let (ctx, handle) = Context::background().with_cancel();
    let (below, _b) = ctx.with_cancel();
    let canceler = handle.disarm();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let c = canceler.clone();
            thread::spawn(move || c.cancel_with_cause(Cause::msg(format!("t{i}"))))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let cause = below.cause().unwrap().to_string();
    assert!(cause.starts_with('t'), "{cause}");
    assert_eq!(ctx.cause().unwrap().to_string(), cause);
}

#[test]
fn a_disarmed_context_still_ends_with_its_parent_and_its_deadline() {
    let (parent, cancel_parent) = Context::background().with_cancel();
    let (child, handle) = parent.with_cancel();
    drop(handle.disarm()); // nobody can cancel the child itself now
    assert!(!child.is_done());
    cancel_parent.cancel();
    assert!(child.is_done());
    assert_eq!(child.origin().unwrap().depth(), 1);

    let (timed, handle) = Context::background().with_timeout(Duration::from_millis(5));
    drop(handle.disarm());
    assert_eq!(timed.wait(), Error::DeadlineExceeded);
    assert_eq!(timed.origin().unwrap().kind(), OriginKind::Deadline);
}

#[test]
fn a_drop_guard_cancels_when_dropped() {
    let (ctx, handle) = Context::background().with_cancel();
    let canceler = handle.disarm();
    let guard = canceler.clone().drop_guard();
    assert!(!ctx.is_done());
    drop(guard);
    assert!(ctx.is_done() && canceler.is_canceled());
    assert_eq!(ctx.origin().unwrap().kind(), OriginKind::HandleDropped);
}

/// A canceler outliving every context of its node still cancels (and
/// frees) it; many disarmed children whose cancelers are dropped are all
/// released when the parent ends.
#[test]
fn cancelers_outlive_their_contexts_and_disarmed_children_go_with_the_parent() {
    let (ctx, handle) = Context::background().with_cancel();
    let canceler = handle.disarm();
    let (below, _b) = ctx.with_cancel();
    drop(ctx);
    canceler.cancel();
    assert!(below.is_done());

    let (parent, cancel_parent) = Context::background().with_cancel();
    let before = thread_live();
    for _ in 0..10_000 {
        let (child, handle) = parent.with_cancel();
        drop(handle.disarm());
        drop(child);
    }
    let held = thread_live() - before;
    assert!(
        held >= 10_000 * 56,
        "live until the parent ends: {held} bytes"
    );
    cancel_parent.cancel(); // walks and releases the 10,000 live children
    assert!(parent.is_done());
    let after = thread_live() - before;
    // Freed blocks go to this thread's node cache (at most 1,024 of 64 bytes).
    assert!(after <= 1024 * 64 + 4096, "{after} bytes still held");
}

//! Go `context` semantics of the public API, single-threaded where possible:
//! roots, `Display`/`Debug`, synchronous propagation, first-cause-wins,
//! born-canceled children, the `err`/`is_done`/`done()` agreement, the
//! futures and the blocking waits.

mod common;

use std::collections::HashSet;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::{mpsc, Arc};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use common::tree::Tree;
use common::waker::{poll_noop, poll_with, CountingWaker};
use ctxtree::{Cause, Context, Error};
use futures::executor::block_on;

/// `err().is_some()` ⇔ `is_done()` ⇔ `done()` ready ⇔ `cause().is_some()`.
#[track_caller]
fn assert_consistent(ctx: &Context) {
    let err = ctx.err();
    assert_eq!(err.is_some(), ctx.is_done(), "err vs is_done for {ctx:?}");
    assert_eq!(err.is_some(), ctx.cause().is_some(), "err vs cause");
    let mut done = ctx.done();
    match poll_noop(&mut done) {
        Poll::Ready(e) => assert_eq!(Some(e), err, "done() ready with another err"),
        Poll::Pending => assert_eq!(err, None, "err set but done() pending"),
    }
}

#[track_caller]
fn assert_active(ctx: &Context) {
    assert_eq!(ctx.err(), None, "{ctx:?} should be active");
    assert_consistent(ctx);
}

#[track_caller]
fn assert_canceled_with(ctx: &Context, cause: &Cause) {
    assert_eq!(
        ctx.err(),
        Some(Error::Canceled),
        "{ctx:?} should be canceled"
    );
    assert_eq!(
        ctx.cause().as_ref(),
        Some(cause),
        "{ctx:?} has the wrong cause"
    );
    assert_consistent(ctx);
}

fn plain_cancel_cause() -> Cause {
    Cause::from(Error::Canceled)
}

#[derive(Debug)]
struct ShuttingDown;

impl fmt::Display for ShuttingDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("server shutting down")
    }
}

impl StdError for ShuttingDown {}

// ---------------------------------------------------------------- roots

#[test]
fn roots_are_never_done() {
    for root in [Context::background(), Context::todo(), Context::default()] {
        assert_active(&root);
        assert_eq!(root.err(), None);
        assert!(root.cause().is_none());
        assert_eq!(root.wait_timeout(Duration::from_millis(1)), None);
        assert_eq!(root.wait_timeout(Duration::ZERO), None);
        let mut owned = root.done_owned();
        assert!(poll_noop(&mut owned).is_pending());
        assert!(owned.context().same(&root));
    }
}

#[test]
fn roots_survive_canceled_descendants() {
    let bg = Context::background();
    let (child, handle) = bg.with_cancel();
    handle.cancel();
    assert!(child.is_done());
    assert_active(&bg);
    let todo = Context::todo();
    let (child, handle) = todo.with_cancel();
    drop(handle);
    assert!(child.is_done());
    assert_active(&todo);
}

#[test]
fn static_background_is_usable() {
    static ROOT: Context = Context::background();
    let (child, handle) = ROOT.with_cancel();
    assert_active(&child);
    handle.cancel();
    assert!(child.is_done());
    assert_active(&ROOT);
}

// ---------------------------------------------------------------- Display / Debug

#[test]
fn display_is_the_go_derivation_path() {
    assert_eq!(Context::background().to_string(), "context.Background");
    assert_eq!(Context::todo().to_string(), "context.TODO");
    let (a, _ha) = Context::background().with_cancel();
    assert_eq!(a.to_string(), "context.Background.WithCancel");
    let (b, _hb) = a.with_cancel();
    assert_eq!(b.to_string(), "context.Background.WithCancel.WithCancel");
    let (t, _ht) = Context::todo().with_cancel();
    let (t2, _ht2) = t.with_cancel();
    let (t3, _ht3) = t2.with_cancel();
    assert_eq!(
        t3.to_string(),
        "context.TODO.WithCancel.WithCancel.WithCancel"
    );
    // The path does not change when the context is canceled.
    drop(_hb);
    assert_eq!(b.to_string(), "context.Background.WithCancel.WithCancel");
    // A child born canceled still has its full path.
    let (c, _hc) = b.with_cancel();
    assert_eq!(
        c.to_string(),
        "context.Background.WithCancel.WithCancel.WithCancel"
    );
}

#[test]
fn debug_contains_the_path_and_err() {
    let (a, ha) = Context::background().with_cancel();
    let (b, _hb) = a.with_cancel();
    let dbg = format!("{b:?}");
    assert!(
        dbg.contains("context.Background.WithCancel.WithCancel"),
        "{dbg}"
    );
    assert!(dbg.contains("None"), "{dbg}");
    assert!(format!("{:?}", Context::todo()).contains("context.TODO"));
    assert!(format!("{:?}", ha).contains("false"));
    ha.cancel();
    let dbg = format!("{b:?}");
    assert!(dbg.contains("Canceled"), "{dbg}");
    assert!(format!("{:?}", ha).contains("true"));
    // The futures' Debug names their context.
    assert!(format!("{:?}", b.done()).contains("context.Background.WithCancel"));
    assert!(format!("{:?}", b.done_owned()).contains("context.Background.WithCancel"));
}

// ---------------------------------------------------------------- propagation

#[test]
fn cancel_propagates_synchronously_to_every_descendant() {
    let depth = if cfg!(miri) { 3 } else { 5 };
    let tree = Tree::under(&Context::background(), 3, depth);
    let n = tree.ctxs.len();
    let target = 2; // a node at level 1, with a whole subtree below
    let cause = Cause::msg("subtree");
    tree.handles[target].cancel_with_cause(cause.clone());
    // Right after cancel returns: the subtree is done, nothing else is.
    for i in 0..n {
        if tree.is_ancestor_or_self(target, i) {
            assert_canceled_with(&tree.ctxs[i], &cause);
            assert!(tree.handles[i].is_canceled());
        } else {
            assert_active(&tree.ctxs[i]);
            assert!(!tree.handles[i].is_canceled());
        }
    }
    // Now the root: everything is done; the subtree keeps its first cause.
    let root_cause = Cause::msg("root");
    tree.handles[0].cancel_with_cause(root_cause.clone());
    for i in 0..n {
        let expected = if tree.is_ancestor_or_self(target, i) {
            &cause
        } else {
            &root_cause
        };
        assert_canceled_with(&tree.ctxs[i], expected);
    }
}

#[test]
fn cancel_of_a_leaf_affects_neither_siblings_nor_ancestors() {
    let (root, root_h) = Context::background().with_cancel();
    let (mid, _mid_h) = root.with_cancel();
    let (leaf_a, leaf_a_h) = mid.with_cancel();
    let (leaf_b, _leaf_b_h) = mid.with_cancel();
    let (uncle, _uncle_h) = root.with_cancel();
    leaf_a_h.cancel();
    assert_canceled_with(&leaf_a, &plain_cancel_cause());
    for ctx in [&root, &mid, &leaf_b, &uncle] {
        assert_active(ctx);
    }
    // The parent still derives live children and still propagates to them.
    let (late, _late_h) = mid.with_cancel();
    assert_active(&late);
    drop(root_h);
    for ctx in [&root, &mid, &leaf_a, &leaf_b, &uncle, &late] {
        assert!(ctx.is_done());
        assert_consistent(ctx);
    }
}

#[test]
fn middle_cancel_reaches_grandchildren_not_parent() {
    let (a, _ha) = Context::background().with_cancel();
    let (b, hb) = a.with_cancel();
    let (c, _hc) = b.with_cancel();
    let (d, _hd) = c.with_cancel();
    hb.cancel();
    assert_active(&a);
    for ctx in [&b, &c, &d] {
        assert_canceled_with(ctx, &plain_cancel_cause());
    }
}

#[test]
fn clones_share_one_context() {
    let (ctx, handle) = Context::background().with_cancel();
    let clone = ctx.clone();
    assert!(clone.same(&ctx));
    let (child_of_clone, _h) = clone.with_cancel();
    handle.cancel();
    assert!(clone.is_done());
    assert!(child_of_clone.is_done());
}

// ---------------------------------------------------------------- causes

#[test]
fn plain_cancel_records_canceled_as_cause() {
    let (ctx, handle) = Context::background().with_cancel();
    assert!(ctx.cause().is_none());
    handle.cancel();
    let cause = ctx.cause().unwrap();
    assert_eq!(cause.downcast_ref::<Error>(), Some(&Error::Canceled));
    assert_eq!(cause.as_context_error(), Some(Error::Canceled));
    assert_eq!(cause, Cause::from(Error::Canceled));
    assert_ne!(cause, Cause::from(Error::DeadlineExceeded));
    assert_eq!(cause.to_string(), "context canceled");
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

#[test]
fn first_cause_wins() {
    let (ctx, handle) = Context::background().with_cancel();
    let (child, _child_h) = ctx.with_cancel();
    let first = Cause::msg("first");
    handle.cancel_with_cause(first.clone());
    handle.cancel_with_cause(Cause::msg("second"));
    handle.cancel();
    handle.cancel_with_cause(ShuttingDown);
    drop(handle);
    assert_canceled_with(&ctx, &first);
    assert_canceled_with(&child, &first);
    assert_eq!(ctx.cause().unwrap().to_string(), "first");
}

#[test]
fn plain_cancel_then_cause_keeps_canceled() {
    let (ctx, handle) = Context::background().with_cancel();
    handle.cancel();
    handle.cancel_with_cause(Cause::msg("too late"));
    assert_canceled_with(&ctx, &plain_cancel_cause());
}

#[test]
fn child_canceled_first_keeps_its_own_cause() {
    let (parent, parent_h) = Context::background().with_cancel();
    let (early, early_h) = parent.with_cancel();
    let (early_kid, _early_kid_h) = early.with_cancel();
    let (late, _late_h) = parent.with_cancel();
    let (late_kid, _late_kid_h) = late.with_cancel();
    let own = Cause::msg("child went first");
    early_h.cancel_with_cause(own.clone());
    let parents = Cause::msg("parent");
    parent_h.cancel_with_cause(parents.clone());
    assert_canceled_with(&parent, &parents);
    assert_canceled_with(&early, &own);
    assert_canceled_with(&early_kid, &own);
    assert_canceled_with(&late, &parents);
    assert_canceled_with(&late_kid, &parents);
    // A later cancel of an inheriting child changes nothing.
    drop(_late_h);
    assert_canceled_with(&late, &parents);
}

#[test]
fn custom_error_causes_downcast() {
    let (ctx, handle) = Context::background().with_cancel();
    let (child, _ch) = ctx.with_cancel();
    handle.cancel_with_cause(ShuttingDown);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    let cause = child.cause().unwrap();
    assert!(cause.downcast_ref::<ShuttingDown>().is_some());
    assert!(cause.downcast_ref::<Error>().is_none());
    assert_eq!(cause.as_context_error(), None);
    assert_eq!(cause.to_string(), "server shutting down");
    assert_eq!(format!("{cause:?}"), "ShuttingDown");
    assert_eq!(cause.as_error().to_string(), "server shutting down");
    // Parent and child report the very same cause.
    assert_eq!(ctx.cause().unwrap(), cause);
}

#[test]
fn deadline_exceeded_as_a_manual_cause_keeps_err_canceled() {
    let (ctx, handle) = Context::background().with_cancel();
    let (child, _ch) = ctx.with_cancel();
    handle.cancel_with_cause(Error::DeadlineExceeded);
    for c in [&ctx, &child] {
        assert_eq!(c.err(), Some(Error::Canceled));
        let cause = c.cause().unwrap();
        assert_eq!(cause.as_context_error(), Some(Error::DeadlineExceeded));
        assert_eq!(
            cause.downcast_ref::<Error>(),
            Some(&Error::DeadlineExceeded)
        );
        assert_eq!(cause, Cause::from(Error::DeadlineExceeded));
        assert_eq!(cause.to_string(), "context deadline exceeded");
    }
}

#[test]
fn boxed_causes() {
    let boxed: Box<dyn StdError + Send + Sync> = Box::new(ShuttingDown);
    let cause = Cause::from_boxed(boxed);
    let (ctx, handle) = Context::background().with_cancel();
    handle.cancel_with_cause(cause.clone());
    assert_eq!(ctx.cause(), Some(cause.clone()));
    assert!(cause.downcast_ref::<ShuttingDown>().is_some());
    // A cause travels as a boxed error, keeping its message.
    let back: Box<dyn StdError + Send + Sync> = ctx.cause().unwrap().into();
    assert_eq!(back.to_string(), "server shutting down");
    fn question_mark(ctx: &Context) -> Result<(), Box<dyn StdError + Send + Sync>> {
        match ctx.cause() {
            Some(c) => Err(c)?,
            None => Ok(()),
        }
    }
    assert_eq!(
        question_mark(&ctx).unwrap_err().to_string(),
        "server shutting down"
    );
}

#[test]
fn cause_equality_is_identity_for_custom_causes() {
    let a = Cause::msg("same text");
    let b = Cause::msg("same text");
    assert_eq!(a, a.clone(), "same allocation is equal");
    assert_ne!(a, b, "distinct allocations differ, even with equal text");
    assert_eq!(Cause::from(Error::Canceled), Cause::from(Error::Canceled));
    assert_ne!(
        Cause::from(Error::Canceled),
        Cause::from(Error::DeadlineExceeded)
    );
    assert_ne!(Cause::msg("context canceled"), Cause::from(Error::Canceled));
    // A cause read back from a context is the one given.
    let (ctx, handle) = Context::background().with_cancel();
    handle.cancel_with_cause(a.clone());
    assert_eq!(ctx.cause().unwrap(), a);
    assert_ne!(ctx.cause().unwrap(), b);
    // The plain-cancel cause equals Cause::from(Error::Canceled).
    let (plain, plain_h) = Context::background().with_cancel();
    drop(plain_h);
    assert_eq!(plain.cause().unwrap(), Cause::from(Error::Canceled));
}

#[test]
fn cause_outlives_everything_that_carried_it() {
    let (ctx, handle) = Context::background().with_cancel();
    let (child, _ch) = ctx.with_cancel();
    handle.cancel_with_cause(Cause::msg("kept"));
    let cause = child.cause().unwrap();
    drop((ctx, handle, child, _ch));
    assert_eq!(cause.to_string(), "kept");
}

// ---------------------------------------------------------------- born canceled

#[test]
fn child_of_canceled_parent_is_born_canceled_with_parent_cause() {
    let (parent, handle) = Context::background().with_cancel();
    let cause = Cause::msg("gone");
    handle.cancel_with_cause(cause.clone());
    let (child, child_h) = parent.with_cancel();
    assert_canceled_with(&child, &cause);
    assert!(child_h.is_canceled());
    let (grandchild, _gh) = child.with_cancel();
    assert_canceled_with(&grandchild, &cause);
    // Canceling a born-canceled child changes nothing.
    child_h.cancel_with_cause(Cause::msg("ignored"));
    assert_canceled_with(&child, &cause);
    assert_eq!(
        grandchild.to_string(),
        "context.Background.WithCancel.WithCancel.WithCancel"
    );
}

#[test]
fn grandchild_of_canceled_node_derived_later_is_born_canceled() {
    let (root, root_h) = Context::background().with_cancel();
    let (child, _child_h) = root.with_cancel(); // exists before the cancel
    let cause = Cause::msg("root gone");
    root_h.cancel_with_cause(cause.clone());
    let (grandchild, _gh) = child.with_cancel();
    assert_canceled_with(&grandchild, &cause);
    let (great, _gth) = grandchild.with_cancel();
    assert_canceled_with(&great, &cause);
}

#[test]
fn born_canceled_after_plain_cancel_has_canceled_cause() {
    let (parent, handle) = Context::background().with_cancel();
    drop(handle);
    let (child, _h) = parent.with_cancel();
    assert_canceled_with(&child, &plain_cancel_cause());
    assert_eq!(
        child.cause().unwrap().downcast_ref::<Error>(),
        Some(&Error::Canceled)
    );
}

// ---------------------------------------------------------------- handles

#[test]
fn dropping_the_handle_cancels() {
    let (ctx, handle) = Context::background().with_cancel();
    let (child, _child_h) = ctx.with_cancel();
    assert_active(&ctx);
    drop(handle);
    assert_canceled_with(&ctx, &plain_cancel_cause());
    assert_canceled_with(&child, &plain_cancel_cause());
}

#[test]
fn dropping_the_handle_on_another_thread_cancels() {
    let (ctx, handle) = Context::background().with_cancel();
    thread::spawn(move || drop(handle)).join().unwrap();
    assert!(ctx.is_done());
}

#[test]
fn discarding_the_handle_cancels_at_once() {
    let (ctx, _) = Context::background().with_cancel();
    assert!(ctx.is_done());
}

#[test]
fn cancel_is_idempotent() {
    let (ctx, handle) = Context::background().with_cancel();
    let (child, _ch) = ctx.with_cancel();
    for _ in 0..3 {
        handle.cancel();
        assert_canceled_with(&ctx, &plain_cancel_cause());
        assert_canceled_with(&child, &plain_cancel_cause());
    }
    drop(handle);
    assert_canceled_with(&ctx, &plain_cancel_cause());
}

#[test]
fn handle_reports_ancestor_cancel() {
    let (parent, parent_h) = Context::background().with_cancel();
    let (_child, child_h) = parent.with_cancel();
    assert!(!child_h.is_canceled());
    parent_h.cancel();
    assert!(child_h.is_canceled());
}

#[test]
fn context_outlives_its_handle_and_parent() {
    let (parent, parent_h) = Context::background().with_cancel();
    let (child, child_h) = parent.with_cancel();
    drop(parent);
    assert_active(&child);
    drop(parent_h); // cancels the parent, which nobody else names
    assert!(child.is_done());
    drop(child_h);
    assert_canceled_with(&child, &plain_cancel_cause());
}

// ---------------------------------------------------------------- err / done agreement

#[test]
fn err_is_done_and_done_agree_at_every_step() {
    let (a, ha) = Context::background().with_cancel();
    let (b, hb) = a.with_cancel();
    let (c, _hc) = b.with_cancel();
    for ctx in [&a, &b, &c] {
        assert_consistent(ctx);
        assert!(!ctx.is_done());
    }
    hb.cancel();
    for ctx in [&a, &b, &c] {
        assert_consistent(ctx);
    }
    assert!(!a.is_done() && b.is_done() && c.is_done());
    ha.cancel();
    for ctx in [&a, &b, &c] {
        assert_consistent(ctx);
        assert!(ctx.is_done());
    }
}

// ---------------------------------------------------------------- Error

fn assert_error_traits<T: Copy + Eq + Hash + StdError + Send + Sync + 'static>() {}

#[test]
fn error_values() {
    assert_error_traits::<Error>();
    assert_eq!(Error::Canceled.to_string(), "context canceled");
    assert_eq!(
        Error::DeadlineExceeded.to_string(),
        "context deadline exceeded"
    );
    assert!(!Error::Canceled.is_timeout());
    assert!(Error::DeadlineExceeded.is_timeout());
    assert_ne!(Error::Canceled, Error::DeadlineExceeded);
    let set: HashSet<Error> = [Error::Canceled, Error::DeadlineExceeded, Error::Canceled]
        .into_iter()
        .collect();
    assert_eq!(set.len(), 2);
    let e = Error::Canceled;
    let copy = e;
    assert_eq!(e, copy);
    let dynamic: &dyn StdError = &e;
    assert!(dynamic.source().is_none());
    let boxed: Box<dyn StdError + Send + Sync> = Box::new(Error::DeadlineExceeded);
    assert_eq!(boxed.to_string(), "context deadline exceeded");
    assert_eq!(format!("{:?}", Error::Canceled), "Canceled");
}

// ---------------------------------------------------------------- done() futures

#[test]
fn done_is_pending_before_and_ready_after_cancel() {
    let (ctx, handle) = Context::background().with_cancel();
    let mut done = ctx.done();
    assert!(poll_noop(&mut done).is_pending());
    assert!(poll_noop(&mut done).is_pending());
    handle.cancel();
    assert_eq!(poll_noop(&mut done), Poll::Ready(Error::Canceled));
    // Polling again after Ready stays Ready.
    assert_eq!(poll_noop(&mut done), Poll::Ready(Error::Canceled));
    drop(done);
    assert_eq!(block_on(ctx.done()), Error::Canceled);
    assert_eq!(block_on(ctx.done_owned()), Error::Canceled);
}

#[test]
fn block_on_done_wakes_on_cancel_from_another_thread() {
    let (ctx, handle) = Context::background().with_cancel();
    let (child, _ch) = ctx.with_cancel();
    let canceler = thread::spawn(move || {
        thread::sleep(Duration::from_millis(5));
        handle.cancel_with_cause(Cause::msg("remote"));
    });
    assert_eq!(block_on(child.done()), Error::Canceled);
    canceler.join().unwrap();
    assert_eq!(child.cause().unwrap().to_string(), "remote");
}

#[test]
fn done_owned_moves_into_a_thread() {
    let (ctx, handle) = Context::background().with_cancel();
    let done = ctx.done_owned();
    assert!(done.context().same(&ctx));
    let (tx, rx) = mpsc::channel();
    let task = thread::spawn(move || {
        let err = block_on(done);
        tx.send(err).unwrap();
    });
    thread::sleep(Duration::from_millis(2));
    assert!(rx.try_recv().is_err(), "done_owned resolved before cancel");
    handle.cancel();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)),
        Ok(Error::Canceled)
    );
    task.join().unwrap();
}

#[test]
fn done_owned_outlives_the_original_context() {
    let (ctx, handle) = Context::background().with_cancel();
    let mut done = ctx.done_owned();
    drop(ctx);
    assert!(poll_noop(&mut done).is_pending());
    drop(handle);
    assert_eq!(poll_noop(&mut done), Poll::Ready(Error::Canceled));
}

#[test]
fn done_wakes_the_latest_waker() {
    let (ctx, handle) = Context::background().with_cancel();
    let a = CountingWaker::new();
    let b = CountingWaker::new();
    let waker_a = Waker::from(a.clone());
    let waker_b = Waker::from(b.clone());
    let mut done = ctx.done();
    assert!(poll_with(&mut done, &waker_a).is_pending());
    assert!(poll_with(&mut done, &waker_b).is_pending());
    assert_eq!((a.count(), b.count()), (0, 0));
    handle.cancel();
    assert!(b.count() >= 1, "the latest waker was not woken");
    assert_eq!(poll_with(&mut done, &waker_b), Poll::Ready(Error::Canceled));
}

#[test]
fn done_owned_wakes_the_latest_waker() {
    let (ctx, handle) = Context::background().with_cancel();
    let wakers: Vec<_> = (0..4).map(|_| CountingWaker::new()).collect();
    let mut done = ctx.done_owned();
    for w in &wakers {
        assert!(poll_with(&mut done, &Waker::from(w.clone())).is_pending());
    }
    // Re-polling with the same waker keeps the registration.
    let last = Waker::from(wakers[3].clone());
    assert!(poll_with(&mut done, &last).is_pending());
    handle.cancel();
    assert!(wakers[3].count() >= 1);
    assert_eq!(poll_with(&mut done, &last), Poll::Ready(Error::Canceled));
}

#[test]
fn done_wakes_once_per_registration() {
    let (ctx, handle) = Context::background().with_cancel();
    let w = CountingWaker::new();
    let waker = Waker::from(w.clone());
    let mut futures: Vec<_> = (0..8).map(|_| ctx.done()).collect();
    for f in &mut futures {
        assert!(poll_with(f, &waker).is_pending());
        assert!(poll_with(f, &waker).is_pending());
    }
    handle.cancel();
    assert_eq!(w.count(), 8, "one wake per pending future");
    for f in &mut futures {
        assert_eq!(poll_with(f, &waker), Poll::Ready(Error::Canceled));
    }
}

/// The cancel hands each registered waker to its wake-up (by value): once it
/// returns, the tree keeps no reference to any task, even while the futures
/// are neither polled nor dropped.
#[test]
fn a_cancel_keeps_no_waker_it_woke() {
    let (ctx, handle) = Context::background().with_cancel();
    let w = CountingWaker::new();
    let mut futures: Vec<_> = (0..8).map(|_| ctx.done()).collect();
    for f in &mut futures {
        assert!(poll_with(f, &Waker::from(w.clone())).is_pending());
    }
    assert_eq!(Arc::strong_count(&w), 1 + 8, "one clone per registration");
    handle.cancel();
    assert_eq!(w.count(), 8);
    assert_eq!(Arc::strong_count(&w), 1, "the cancel still holds wakers");
    for f in &mut futures {
        assert_eq!(poll_noop(f), Poll::Ready(Error::Canceled));
    }
}

#[test]
fn dropped_done_future_is_not_woken() {
    let (ctx, handle) = Context::background().with_cancel();
    let dropped = CountingWaker::new();
    let kept = CountingWaker::new();
    let mut d1 = ctx.done();
    let mut d2 = ctx.done();
    assert!(poll_with(&mut d1, &Waker::from(dropped.clone())).is_pending());
    assert!(poll_with(&mut d2, &Waker::from(kept.clone())).is_pending());
    drop(d1);
    handle.cancel();
    assert_eq!(dropped.count(), 0);
    assert_eq!(kept.count(), 1);
}

#[test]
fn done_on_child_wakes_on_ancestor_cancel() {
    let (root, root_h) = Context::background().with_cancel();
    let (mid, _mh) = root.with_cancel();
    let (leaf, _lh) = mid.with_cancel();
    let w = CountingWaker::new();
    let waker = Waker::from(w.clone());
    let mut done = leaf.done();
    assert!(poll_with(&mut done, &waker).is_pending());
    root_h.cancel();
    assert_eq!(w.count(), 1);
    assert_eq!(poll_with(&mut done, &waker), Poll::Ready(Error::Canceled));
}

#[test]
fn done_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let (ctx, _h) = Context::background().with_cancel();
    let done = ctx.done();
    assert_send(&done);
    let owned = ctx.done_owned();
    assert_send(&owned);
    fn assert_static<T: 'static>(_: &T) {}
    assert_static(&owned);
}

// ---------------------------------------------------------------- blocking waits

#[test]
fn wait_returns_after_cancel_from_another_thread() {
    let (ctx, handle) = Context::background().with_cancel();
    let (child, _ch) = ctx.with_cancel();
    let waiter = thread::spawn(move || child.wait());
    thread::sleep(Duration::from_millis(5));
    handle.cancel();
    assert_eq!(waiter.join().unwrap(), Error::Canceled);
    // On a canceled context it returns at once.
    assert_eq!(ctx.wait(), Error::Canceled);
}

#[test]
fn wait_timeout_times_out_then_sees_cancel() {
    let (ctx, handle) = Context::background().with_cancel();
    assert_eq!(ctx.wait_timeout(Duration::ZERO), None);
    assert_eq!(ctx.wait_timeout(Duration::from_millis(2)), None);
    let c = ctx.clone();
    let waiter = thread::spawn(move || c.wait_timeout(Duration::from_secs(30)));
    thread::sleep(Duration::from_millis(5));
    handle.cancel();
    assert_eq!(waiter.join().unwrap(), Some(Error::Canceled));
    assert_eq!(ctx.wait_timeout(Duration::ZERO), Some(Error::Canceled));
    assert_eq!(
        ctx.wait_timeout(Duration::from_millis(1)),
        Some(Error::Canceled)
    );
    assert_eq!(ctx.wait_timeout(Duration::MAX), Some(Error::Canceled));
}

#[test]
fn wait_timeout_unrepresentable_waits_until_cancel() {
    let (ctx, handle) = Context::background().with_cancel();
    let c = ctx.clone();
    let waiter = thread::spawn(move || c.wait_timeout(Duration::MAX));
    thread::sleep(Duration::from_millis(5));
    handle.cancel();
    assert_eq!(waiter.join().unwrap(), Some(Error::Canceled));
}

#[test]
fn wait_timeout_waits_about_the_timeout() {
    let (ctx, _handle) = Context::background().with_cancel();
    let start = std::time::Instant::now();
    assert_eq!(ctx.wait_timeout(Duration::from_millis(20)), None);
    assert!(start.elapsed() >= Duration::from_millis(20));
}

// ---------------------------------------------------------------- same

#[test]
fn same_is_identity() {
    let bg = Context::background();
    assert!(bg.same(&Context::background()));
    assert!(Context::todo().same(&Context::todo()));
    assert!(!bg.same(&Context::todo()));
    assert!(bg.same(&Context::default()));
    let (a, _ha) = bg.with_cancel();
    let (b, _hb) = bg.with_cancel();
    assert!(a.same(&a.clone()));
    assert!(!a.same(&b));
    assert!(!a.same(&bg));
    assert!(!bg.same(&a));
    assert!(a.done_owned().context().same(&a));
}

/// A panicking waker must not stop a manual cancel half-way: every other
/// waiter is woken and the whole subtree is canceled, then the panic reaches
/// the caller of `cancel`.
#[test]
fn panicking_waker_does_not_stop_a_manual_cancel() {
    struct Bomb;
    impl Wake for Bomb {
        fn wake(self: Arc<Self>) {
            panic!("waker exploded");
        }
    }

    let (ctx, handle) = Context::background().with_cancel();
    let (child, _child_handle) = ctx.with_cancel();
    let (grandchild, _gh) = child.with_cancel();
    let bomb = Waker::from(Arc::new(Bomb));
    let mut first = Box::pin(ctx.done());
    assert!(first
        .as_mut()
        .poll(&mut TaskContext::from_waker(&bomb))
        .is_pending());
    let sleeper = {
        let ctx = ctx.clone();
        thread::spawn(move || ctx.wait_timeout(Duration::from_secs(20)))
    };
    thread::sleep(Duration::from_millis(20));
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle.cancel()));
    assert!(panicked.is_err(), "the waker's panic reaches the canceler");
    assert_eq!(sleeper.join().unwrap(), Some(Error::Canceled));
    assert!(child.is_done() && grandchild.is_done());
    drop(first);
}

// ------------------------------------------------- foreign code that panics

/// An error whose `drop` panics (unless already unwinding).
#[derive(Debug)]
struct PanicsOnDrop;

impl fmt::Display for PanicsOnDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("panics on drop")
    }
}

impl StdError for PanicsOnDrop {}

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if !thread::panicking() {
            panic!("cause dropped");
        }
    }
}

/// A parent's cancel frees a child that only its list still holds, and the
/// child's cause panics on drop. The walk must still end the list's hold on
/// every other child (each then counts on the parent, docs/design.md N1)
/// before the panic reaches the caller; otherwise a child left listed would
/// outlive its parent (a use after free, which miri and the sanitizers
/// report when this test runs under them).
#[test]
fn a_cause_that_panics_on_drop_does_not_strand_the_other_children() {
    let (root, root_handle) = Context::background().with_cancel();
    let (older, older_handle) = root.with_cancel();
    let (bomb, bomb_handle) = root.with_cancel();
    let (newer, newer_handle) = root.with_cancel();
    // Only `bomb`'s state word holds the cause; `bomb` is not first in the
    // list, so with its users gone the list alone holds it.
    bomb_handle.cancel_with_cause(PanicsOnDrop);
    drop((bomb, bomb_handle));
    drop(root);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| root_handle.cancel()));
    let payload = result.expect_err("the drop's panic reaches the canceling caller");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"cause dropped"));
    drop(root_handle);
    // The parent is alive through the grants of its remaining children.
    for ctx in [&older, &newer] {
        assert!(ctx.is_done());
        assert_eq!(ctx.to_string(), "context.Background.WithCancel.WithCancel");
    }
    drop((older, older_handle, newer, newer_handle));
}

//! Roots, `Display`/`Debug`, propagation, causes, children born canceled, handles, err/done agreement, `Error`.

use super::*;

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

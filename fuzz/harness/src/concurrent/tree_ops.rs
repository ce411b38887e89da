//! A racing thread's operations on the tree: cancels and handle drops of
//! shared nodes, derivations (of shared nodes and of its own children) and
//! cancels of its own children, each checked as far as a racing thread can.

use std::sync::Arc;

use ctxtree::{CancelHandle, Context};

use super::state::{canceled, Derived, Local, Shared, Up, MAX_DERIVED};

/// Checks a freshly derived child against its parent: born canceled with
/// the parent's cause if the parent was canceled before, and canceled at
/// birth only with the parent's cause.
fn check_birth(parent: &Context, parent_was_done: bool, child: &Context) {
    if parent_was_done {
        assert!(child.is_done(), "child of a canceled parent is born live");
    }
    if child.is_done() {
        assert!(parent.is_done(), "child born canceled under a live parent");
        assert_eq!(child.err(), parent.err(), "born-canceled child's err");
        assert!(
            child.cause() == parent.cause(),
            "born-canceled child's cause {:?} is not its parent's {:?}",
            child.cause(),
            parent.cause()
        );
    }
}

fn keep_derived(local: &mut Local, ctx: Context, handle: CancelHandle, up: Up) {
    keep(local, ctx, handle, up, None);
}

fn keep(local: &mut Local, ctx: Context, handle: CancelHandle, up: Up, also: Option<usize>) {
    if local.derived.len() < MAX_DERIVED {
        local.derived.push(Derived {
            ctx,
            handle: Some(handle),
            up,
            also,
            applied: Vec::new(),
        });
    } else {
        drop(handle);
        assert!(ctx.is_done(), "child live after its handle was dropped");
    }
}

/// `Op::Cancel`: `cancel()` of a shared node's handle.
pub(super) fn cancel(sh: &Shared, local: &mut Local, n: usize, k: u8) {
    let k = k as usize % n;
    if let Some(h) = sh.slot(k) {
        h.cancel();
        local.applied.push((k, canceled()));
        sh.assert_subtree_done(k, local, "cancel()");
    }
}

/// `Op::CancelWithCause`: `cancel_with_cause` of a shared node's handle.
pub(super) fn cancel_with_cause(
    sh: &Shared,
    local: &mut Local,
    n: usize,
    t: usize,
    i: usize,
    k: u8,
    c: u8,
) {
    let k = k as usize % n;
    if let Some(h) = sh.slot(k) {
        let cause = sh.cause(c, t, i);
        h.cancel_with_cause(cause.clone());
        local.applied.push((k, cause));
        sh.assert_subtree_done(k, local, "cancel_with_cause()");
    }
}

/// `Op::DropHandle`: takes a shared node's handle out of its slot and drops it.
pub(super) fn drop_handle(sh: &Shared, local: &mut Local, n: usize, k: u8) {
    let k = k as usize % n;
    let taken = sh.handles[k].lock().unwrap().take();
    if let Some(h) = taken {
        local.applied.push((k, canceled()));
        // The last `Arc` cancels on drop; another thread may
        // still hold a clone it is canceling with.
        if let Ok(h) = Arc::try_unwrap(h) {
            drop(h);
            sh.assert_subtree_done(k, local, "dropping the handle");
        }
    }
}

/// `Op::Derive`: `with_cancel` on a shared node.
pub(super) fn derive(sh: &Shared, local: &mut Local, n: usize, k: u8) {
    let k = k as usize % n;
    let parent = &sh.ctxs[k];
    let was_done = parent.is_done();
    let (ctx, handle) = parent.with_cancel();
    check_birth(parent, was_done, &ctx);
    keep_derived(local, ctx, handle, Up::Shared(k));
}

/// `Op::DeriveLocal`: `with_cancel` on one of this thread's derived children.
pub(super) fn derive_local(local: &mut Local, j: u8) {
    if local.derived.is_empty() {
        return;
    }
    let j = j as usize % local.derived.len();
    let parent = local.derived[j].ctx.clone();
    let was_done = parent.is_done();
    let (ctx, handle) = parent.with_cancel();
    check_birth(&parent, was_done, &ctx);
    keep_derived(local, ctx, handle, Up::Local(j));
}

/// `Op::CancelLocal`: cancel or drop the handle of one of this thread's
/// derived children.
pub(super) fn cancel_local(sh: &Shared, local: &mut Local, t: usize, i: usize, j: u8, c: u8) {
    if local.derived.is_empty() {
        return;
    }
    let j = j as usize % local.derived.len();
    let d = &mut local.derived[j];
    if c & 0x80 != 0 {
        if let Some(h) = d.handle.take() {
            drop(h);
            d.applied.push(canceled());
        }
    } else if let Some(h) = &d.handle {
        let cause = sh.cause(c, t, i);
        h.cancel_with_cause(cause.clone());
        d.applied.push(cause);
    }
    if !d.applied.is_empty() {
        assert!(d.ctx.is_done(), "a canceled derived child is not done");
        // Everything derived below it is done too.
        for x in 0..local.derived.len() {
            let mut y = x;
            while let Up::Local(p) = local.derived[y].up {
                if p == j {
                    assert!(
                        local.derived[x].ctx.is_done(),
                        "cancel of local #{j} returned, local #{x} below it live"
                    );
                    break;
                }
                y = p;
            }
        }
    }
}

/// `Op::DeriveChurn`: many children of a shared node, derived and dropped.
pub(super) fn derive_churn(sh: &Shared, local: &mut Local, n: usize, k: u8, c: u8) {
    let k = k as usize % n;
    let parent = &sh.ctxs[k];
    for m in 0..1 + c as usize % 80 {
        let was_done = parent.is_done();
        let (ctx, handle) = parent.with_cancel();
        check_birth(parent, was_done, &ctx);
        if m % 16 == 0 && local.derived.len() < MAX_DERIVED {
            keep_derived(local, ctx, handle, Up::Shared(k));
        } else {
            drop(handle);
            assert!(ctx.is_done(), "child live after its handle was dropped");
        }
    }
}

/// `Op::Merge`: `merge` of shared nodes `a` (the primary) and `b`. Born
/// done if either input was done before, with the cause of one of them;
/// done by the time a cancel of `a` returns (it is `a`'s child), and by
/// the end of the race if `b` is canceled (a registration on `b`).
pub(super) fn merge(sh: &Shared, local: &mut Local, n: usize, a: u8, b: u8) {
    let (a, b) = (a as usize % n, b as usize % n);
    let (primary, other) = (&sh.ctxs[a], &sh.ctxs[b]);
    let was_done = primary.is_done() || other.is_done();
    let (ctx, handle) = primary.merge(other);
    if was_done {
        assert!(ctx.is_done(), "a merge of a done context is born live");
    }
    if ctx.is_done() {
        let cause = ctx.cause();
        assert!(
            cause == primary.cause() || cause == other.cause(),
            "a merged child born done with the cause of neither input"
        );
    }
    keep(local, ctx, handle, Up::Shared(a), Some(b));
}

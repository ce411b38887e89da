//! Go's invariants checked after join and at the end: the tree as the race
//! left it, the registrations, and each thread's children, futures and
//! abandoned wakers.

use std::sync::atomic::Ordering;
use std::task::Poll;

use ctxtree::{Cause, Error};

use super::super::common::poll_with;
use super::decode::Plan;
use super::state::{Local, Shared, Target, Up};

/// Every registration's function ran at most once, and exactly once iff
/// no `stop` of it returned true and its context is canceled (after
/// join, every cancel has returned, so every function it ran has
/// finished). `end`: after every handle was dropped, so every context
/// that can be canceled is.
pub(super) fn check_registrations(locals: &[Local], plan: &Plan, end: bool) {
    for (t, l) in locals.iter().enumerate() {
        for (j, r) in l.regs.iter().enumerate() {
            if let Some(problem) = r.rec.problem() {
                panic!(
                    "thread {t} registration #{j} ({:?}): {problem} (plan: {plan:?})",
                    r.target
                );
            }
            let runs = r.rec.runs.load(Ordering::SeqCst);
            let finished = r.rec.finished.load(Ordering::SeqCst);
            let canceled = r.ctx.is_done();
            let expected = match r.target {
                Target::Detached(_) => {
                    assert!(!canceled, "a without_cancel() context is done");
                    0
                }
                _ => {
                    assert!(
                        !end || canceled,
                        "a registration's context is live at the end"
                    );
                    usize::from(!r.stopped && canceled)
                }
            };
            assert_eq!(
                runs,
                expected,
                "thread {t} registration #{j} ({:?}, stopped {}, context canceled \
                 {canceled}): its function ran {runs} times{} (plan: {plan:?})",
                r.target,
                r.stopped,
                if end {
                    " after every handle was dropped"
                } else {
                    " after join"
                }
            );
            assert_eq!(
                finished,
                runs == 1,
                "thread {t} registration #{j}: finished flag {finished} after {runs} runs"
            );
        }
    }
}

/// Go's invariants on the tree as the race left it.
pub(super) fn check_after_join(sh: &Shared, locals: &[Local], plan: &Plan) {
    let n = sh.ctxs.len();
    let mut own: Vec<Vec<Cause>> = vec![Vec::new(); n];
    for l in locals {
        for (k, c) in &l.applied {
            own[*k].push(c.clone());
        }
    }
    for k in 0..n {
        let ctx = &sh.ctxs[k];
        // Canceled iff it or an ancestor was canceled by some thread.
        let mut expected = !own[k].is_empty();
        let mut a = sh.parents[k];
        while let Some(p) = a {
            expected |= !own[p].is_empty();
            a = sh.parents[p];
        }
        assert_eq!(
            ctx.is_done(),
            expected,
            "node {k}: is_done() after join, expected {expected} (plan: {plan:?})"
        );
        if !expected {
            assert!(ctx.cause().is_none());
            continue;
        }
        assert_eq!(ctx.err(), Some(Error::Canceled));
        let cause = ctx.cause().expect("a canceled node has a cause");
        // Its own cancel's cause, or its parent's (which is canceled).
        let from_parent = sh.parents[k].and_then(|p| sh.ctxs[p].cause());
        let ok = own[k].contains(&cause) || from_parent.as_ref() == Some(&cause);
        assert!(
            ok,
            "node {k}: cause {cause:?} is neither one of its own cancels' causes {:?} nor \
             its parent's cause {from_parent:?} (plan: {plan:?})",
            own[k]
        );
        check_origin(sh, &own, k, &cause, plan);
    }
    for l in locals {
        for (j, d) in l.derived.iter().enumerate() {
            let parent = match d.up {
                Up::Shared(k) => &sh.ctxs[k],
                Up::Local(p) => &l.derived[p].ctx,
            };
            let other = d.also.map(|b| &sh.ctxs[b]);
            let expected =
                parent.is_done() || !d.applied.is_empty() || other.is_some_and(|o| o.is_done());
            assert_eq!(
                d.ctx.is_done(),
                expected,
                "derived child #{j} ({:?}): is_done() after join (plan: {plan:?})",
                d.up
            );
            if expected {
                let cause = d.ctx.cause().expect("a canceled child has a cause");
                let from_parent = parent.cause();
                let from_other = other.and_then(|o| o.cause());
                assert!(
                    d.applied.contains(&cause)
                        || from_parent.as_ref() == Some(&cause)
                        || from_other.as_ref() == Some(&cause),
                    "derived child #{j}: cause {cause:?} is neither its own {:?} nor its \
                     parent's {from_parent:?} (plan: {plan:?})",
                    d.applied
                );
            }
        }
    }
}

/// At the end, after every handle was dropped: every child a thread
/// derived is done, every pending future was woken once and is ready, no
/// abandoned waiter was woken twice.
pub(super) fn check_locals_at_end(locals: &mut [Local], plan: &Plan) {
    for l in locals.iter_mut() {
        for d in &l.derived {
            assert!(
                d.ctx.is_done(),
                "derived child live after every handle was dropped"
            );
        }
        for f in &mut l.futures {
            let woken = f.counter.count();
            assert_eq!(
                woken, 1,
                "a pending future was woken {woken} times by the cancel (plan: {plan:?})"
            );
            let got = poll_with(&mut f.fut, &f.waker);
            assert_eq!(got, Poll::Ready(Error::Canceled), "woken future not ready");
        }
        for r in &l.retired {
            assert!(
                r.count() <= 1,
                "an abandoned waiter was woken {} times",
                r.count()
            );
        }
    }
}

/// S4: a canceled shared node's origin is itself, with one of its own
/// cancels' causes, or the ancestor it names, whose cause it carries and
/// which some thread canceled.
fn check_origin(sh: &Shared, own: &[Vec<Cause>], k: usize, cause: &Cause, plan: &Plan) {
    let origin = sh.ctxs[k].origin().expect("a canceled node has an origin");
    let mut at = k;
    for _ in 0..origin.depth() {
        at = sh.parents[at].expect("the origin is an ancestor");
    }
    assert!(
        origin.is(&sh.ctxs[at]),
        "node {k}: origin.is() of its origin"
    );
    assert!(
        own[at].contains(cause) && sh.ctxs[at].cause().as_ref() == Some(cause),
        "node {k}: origin {origin:?} (node {at}) did not cancel it with its cause \
         {cause:?} (plan: {plan:?})"
    );
}

//! loom models of the work the tree's operations hand to the collector
//! thread (src/tree/collector.rs, K1–K2): the rest of a sweep (L10,
//! src/tree/children/mod.rs) and the rest of a waiter collection (W6,
//! src/tree/waiters/collect.rs). Under loom the collector is a queue a model
//! drains on a thread of its choice (`loom_hooks::run_collections`); the
//! inline limits are set to hand off at once for this file's models only.
//!
//! Run: `CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=3 \
//!       RUSTFLAGS="--cfg loom --cfg crossbeam_loom" cargo test --release -p loom-tests --test collector`
#![cfg(loom)]

use ctxtree::loom_hooks::{run_collections, set_inline_collect, set_inline_sweep};
use ctxtree::{Context, Error};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::model;

/// L10, N1: a drop whose sweep hands the rest to the collector queues a
/// job holding a user of the parent; the job's sweep races the parent's
/// cancel, the drop of its last handles and of its children. Fails with
/// `sweep_job_unheld` (the job names the parent without a user: it is
/// freed before the job sweeps it).
#[test]
fn handed_off_sweep_vs_parent_cancel_and_drop() {
    ctxtree::loom_hooks::sweep_on_drop(true);
    set_inline_sweep(0);
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (older, older_handle) = parent.with_cancel();
        let (newer, newer_handle) = parent.with_cancel();
        older_handle.cancel(); // DELETED, behind `newer`: not unlinked by L7
                               // Its drop counts toward a sweep (due at once under loom), which
                               // has no inline budget: a job for the collector.
        drop((older, older_handle));
        let collector = thread::spawn(run_collections);
        handle.cancel();
        drop((parent, handle));
        assert_eq!(newer.err(), Some(Error::Canceled));
        drop((newer, newer_handle));
        collector.join().unwrap();
    });
}

/// W2, W6: an abandon's collection walks one entry and hands the rest of
/// the chain it took to the collector; the collector gives it back (or
/// wakes it) while the context is canceled. Every callback still
/// registered runs exactly once. Fails with `rest_dropped` (the rest is
/// freed, its waiters never woken).
#[test]
fn split_collection_vs_cancel() {
    set_inline_collect(1);
    model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let ran = Arc::new(AtomicUsize::new(0));
        let count = |ran: &Arc<AtomicUsize>| {
            let ran = ran.clone();
            move || {
                ran.fetch_add(1, Ordering::SeqCst);
            }
        };
        let first = ctx.after_func(count(&ran));
        let second = ctx.after_func(count(&ran));
        let third = ctx.after_func(|| unreachable!("stopped"));
        // The stack is third → second → first: the collection walks
        // `third` (abandoned, freed) and hands off `second → first`.
        assert!(third.stop());
        let collector = thread::spawn(run_collections);
        handle.cancel();
        collector.join().unwrap();
        run_collections();
        assert_eq!(ran.load(Ordering::SeqCst), 2);
        assert!(!first.stop() && !second.stop());
    });
}

/// W4, W6: an abandon while the rest of the chain is with the collector;
/// the entry abandoned may be in the part given back or in the rest. The
/// callback left runs once at the cancel, the abandoned one never.
#[test]
fn abandon_vs_rest_given_back() {
    set_inline_collect(1);
    model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = ran.clone();
        let kept = ctx.after_func(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let left = ctx.after_func(|| unreachable!("stopped"));
        let first_out = ctx.after_func(|| unreachable!("stopped"));
        assert!(first_out.stop()); // hands `left → kept` to the collector
        let collector = thread::spawn(run_collections);
        assert!(left.stop());
        collector.join().unwrap();
        run_collections();
        handle.cancel();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        drop(kept);
    });
}

/// L5, L10: a drop's sweep and an insert's sweep of the same list at once:
/// the child is canceled and dropped on another thread while the insert's
/// sweep may have passed it; the drop's sweep then finds that sweep running
/// and hands a full sweep to the collector. Once the collector has run, no
/// dead child is left linked, whatever the order. Fails with
/// `busy_drop_forgotten` (a drop that finds a sweep running queues none).
#[test]
fn drop_sweep_vs_insert_sweep_hand_off() {
    ctxtree::loom_hooks::sweep_on_drop(true);
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (older, older_handle) = parent.with_cancel();
        let (newer, newer_handle) = parent.with_cancel();
        let dropper = thread::spawn(move || {
            older_handle.cancel(); // DELETED behind `newer`: for a sweep
            drop((older, older_handle));
        });
        let (third, third_handle) = parent.with_cancel(); // an insert's sweep
        dropper.join().unwrap();
        run_collections();
        assert_eq!(
            ctxtree::loom_hooks::linked_children(&parent),
            2,
            "a dead child stayed linked after every sweep"
        );
        handle.cancel();
        assert_eq!(third.err(), Some(Error::Canceled));
        drop((newer, newer_handle, third, third_handle, parent, handle));
    });
}

/// L5, L10: a sweep whose unlink fails because the node before it was
/// deleted meanwhile (a drop racing the sweep's cursor) *stalls*: the
/// dead run behind that node stays linked, although the drops that
/// counted it were spent on this sweep. The sweep hands a full sweep to
/// the collector, so once it ran only a node deleted after the sweep
/// passed it may be left (drop sweeps are off here: only the insert and
/// the collector sweep). Fails with `sweep_stall_ignored` (a stalled sweep
/// queues nothing: `older`, dead before the sweep began, stays linked).
#[test]
fn sweep_stalled_by_a_concurrent_delete() {
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (older, older_handle) = parent.with_cancel();
        let (middle, middle_handle) = parent.with_cancel();
        let (newer, newer_handle) = parent.with_cancel();
        older_handle.cancel(); // DELETED behind `middle`: for a sweep
        drop((older, older_handle));
        let dropper = thread::spawn(move || {
            middle_handle.cancel(); // may mark `middle` under the sweep
            drop((middle, middle_handle));
        });
        let (fourth, fourth_handle) = parent.with_cancel(); // an insert's sweep
        dropper.join().unwrap();
        run_collections();
        // `newer`, `fourth`, and `middle` if it was deleted after the
        // sweep had passed it.
        let linked = ctxtree::loom_hooks::linked_children(&parent);
        assert!(linked <= 3, "{linked} linked: a stalled sweep's run stayed");
        handle.cancel();
        drop((newer, newer_handle, fourth, fourth_handle, parent, handle));
    });
}

/// L10: the collector's full sweep finds an insert's inline sweep running
/// (which stops at its limit, having seen only live children, and hands
/// nothing off); the job runs again once that one ended, and the dead
/// child it was queued for is unlinked. Fails with
/// `full_sweep_busy_dropped` (the job gives up on a busy list).
#[test]
fn full_sweep_vs_inline_sweep() {
    ctxtree::loom_hooks::sweep_on_drop(true);
    set_inline_sweep(1);
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (older, older_handle) = parent.with_cancel();
        let (newer, newer_handle) = parent.with_cancel();
        // DELETED behind `newer`; its drop's sweep stops at `newer` (one
        // visit) and queues a full sweep.
        older_handle.cancel();
        drop((older, older_handle));
        let collector = thread::spawn(run_collections);
        let (third, third_handle) = parent.with_cancel(); // inline, 1 visit
        collector.join().unwrap();
        run_collections();
        assert_eq!(
            ctxtree::loom_hooks::linked_children(&parent),
            2,
            "the dead child stayed linked"
        );
        handle.cancel();
        drop((newer, newer_handle, third, third_handle, parent, handle));
    });
}

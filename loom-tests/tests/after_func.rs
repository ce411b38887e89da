//! loom models of `after_func` (docs/design.md §13, F1–F4).
//!
//! Run: `CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=3 \
//!       RUSTFLAGS="--cfg loom --cfg crossbeam_loom" cargo test --release -p loom-tests`
//!
//! Each model names the invariant it checks and the planted bug
//! (`--cfg ctxtree_plant="..."`) that makes it fail.
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::model;

use ctxtree::Context;

/// Plain data written by a callback and read by another thread: loom reports
/// the access as a race unless a happens-before edge orders them.
struct Shared(UnsafeCell<usize>);

// SAFETY: the models use it only where ctxtree claims an ordering; loom
// checks that claim.
unsafe impl Sync for Shared {}
// SAFETY: as above.
unsafe impl Send for Shared {}

impl Shared {
    fn new() -> Arc<Shared> {
        Arc::new(Shared(UnsafeCell::new(0)))
    }

    fn set(&self, v: usize) {
        // SAFETY: see the type's comment.
        self.0.with_mut(|p| unsafe { *p = v })
    }

    fn get(&self) -> usize {
        // SAFETY: see the type's comment.
        self.0.with(|p| unsafe { *p })
    }
}

/// S3, F1, F2: a registration racing a cancel runs exactly once, either on
/// the canceling thread (after the subtree is canceled) or at once on the
/// registering thread.
/// Fails with `callback_in_walk` (callbacks run inside the claim, before the
/// subtree is canceled).
#[test]
fn after_func_registration_vs_cancel() {
    model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let (child, _child_handle) = ctx.with_cancel();
        let runs = Arc::new(AtomicUsize::new(0));
        let (r, c2) = (runs.clone(), ctx.clone());
        let registrar = thread::spawn(move || {
            let probe = child.clone();
            let _registration = c2.after_func(move || {
                assert!(probe.is_done(), "F2: ran before the subtree was canceled");
                r.fetch_add(1, Ordering::Relaxed);
            });
        });
        handle.cancel();
        registrar.join().unwrap();
        assert_eq!(runs.load(Ordering::Relaxed), 1, "F1: runs exactly once");
    });
}

/// F1: `stop` racing a cancel: exactly one of "stop returned true" and "the
/// function ran". Under loom a stop also triggers the waiter collection (W4),
/// so the collection races the claim too.
/// Fails with `callback_unclaimed` (the notifier checks the entry with a load
/// and a store instead of one CAS).
#[test]
fn after_func_stop_vs_cancel() {
    model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let registration = ctx.after_func(move || {
            r.fetch_add(1, Ordering::Relaxed);
        });
        let canceler = thread::spawn(move || handle.cancel());
        let stopped = registration.stop();
        canceler.join().unwrap();
        let ran = runs.load(Ordering::Relaxed);
        assert_eq!(ran + stopped as usize, 1, "stop {stopped}, runs {ran}");
    });
}

/// F3: `stop_wait` racing a cancel on another thread: when it returns, the
/// function was either prevented or has finished, and its writes are visible.
/// Fails with `finish_relaxed` (the finished word is swapped Relaxed, so
/// nothing orders the function's writes before the stopper's reads).
#[test]
fn after_func_stop_wait_vs_cancel() {
    model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let data = Shared::new();
        let written = data.clone();
        let registration = ctx.after_func(move || written.set(1));
        let canceler = thread::spawn(move || handle.cancel());
        let stopped = registration.stop_wait();
        assert_eq!(data.get(), if stopped { 0 } else { 1 });
        canceler.join().unwrap();
    });
}

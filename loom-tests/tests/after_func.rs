//! loom models of `after_func` (docs/design.md §13, F1–F6).
//!
//! Run: `CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=3 \
//!       RUSTFLAGS="--cfg loom --cfg crossbeam_loom" cargo test --release -p loom-tests`
//!
//! Each model names the invariant it checks and the planted bug
//! (`CTXTREE_PLANT=...`, src/plant.rs) that makes it fail.
#![cfg(loom)]

use std::time::Duration;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::model;

use ctxtree::{loom_hooks, Context};

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

/// F6, F5c, F3, F1: a deadline fires on the main thread (the timer's stand-in,
/// in hand-off mode) and its two callbacks run as one job on a runner thread,
/// while a third thread `stop_wait`s one of them. The callback that runs first
/// `stop_wait`s the other, still pending in the same job: it must return at
/// once. The stopper's `stop_wait` returns only when the callback was
/// prevented (true, never runs) or has finished (its write visible).
/// Fails with `handoff_keeps_token` (the runner does not re-record the runner
/// token: the first callback waits for the second, queued behind it on the
/// same thread; loom reports a deadlock).
#[test]
fn after_func_hand_off_vs_stop_wait() {
    model(|| {
        let (ctx, _handle) = Context::background().with_timeout(Duration::from_secs(1));
        let (data, runs) = (Shared::new(), Arc::new(AtomicUsize::new(0)));
        let (written, r) = (data.clone(), runs.clone());
        let second = Arc::new(ctx.after_func(move || {
            written.set(1);
            r.fetch_add(1, Ordering::Relaxed);
        }));
        let other = second.clone();
        let firing = thread::current().id();
        // Registered last, so it runs first (the stack's order).
        let _first = ctx.after_func(move || {
            assert_ne!(thread::current().id(), firing, "F6: ran on the timer");
            let _ = other.stop_wait();
        });
        let stopper = thread::spawn(move || {
            let stopped = second.stop_wait();
            assert_eq!(data.get(), if stopped { 0 } else { 1 }, "F3");
            stopped
        });
        loom_hooks::fire_armed();
        let runner = thread::spawn(loom_hooks::run_handed_off);
        runner.join().unwrap();
        let stopped = stopper.join().unwrap();
        assert!(ctx.is_done());
        let ran = runs.load(Ordering::Relaxed);
        assert_eq!(ran + stopped as usize, 1, "F1: stop {stopped}, runs {ran}");
    });
}

/// F5, F2, F3: a callback cancels another context (Go's linking idiom: it
/// drops that context's handle); the nested cancel's callback is deferred
/// until the first returns and runs on the same thread before the outermost
/// `cancel` returns, while another thread `stop_wait`s it.
/// Fails with `trampoline_drops_pending` (a nested cancel's callbacks are
/// lost: the stopper waits forever, a loom deadlock, or the final count is 0).
#[test]
fn after_func_nested_cancel_vs_stop_wait() {
    model(|| {
        let (a, cancel_a) = Context::background().with_cancel();
        let (b, cancel_b) = Context::background().with_cancel();
        let (b_child, _b_child_handle) = b.with_cancel();
        let (data, runs) = (Shared::new(), Arc::new(AtomicUsize::new(0)));
        let (written, r) = (data.clone(), runs.clone());
        let nested = b.after_func(move || {
            assert!(b_child.is_done(), "F2: ran before its subtree was canceled");
            written.set(1);
            r.fetch_add(1, Ordering::Relaxed);
        });
        let r = runs.clone();
        let _link = a.after_func(move || {
            drop(cancel_b);
            assert_eq!(
                r.load(Ordering::Relaxed),
                0,
                "F5: nested callback ran inside"
            );
        });
        let stopper = thread::spawn(move || {
            let stopped = nested.stop_wait();
            assert_eq!(data.get(), if stopped { 0 } else { 1 }, "F3");
            stopped
        });
        cancel_a.cancel();
        assert!(b.is_done(), "F5a: the nested cancel finished");
        let stopped = stopper.join().unwrap();
        let ran = runs.load(Ordering::Relaxed);
        assert_eq!(ran + stopped as usize, 1, "F1: stop {stopped}, runs {ran}");
    });
}

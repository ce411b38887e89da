//! `after_func`: exactly once, on the canceling thread after the subtree is
//! canceled, `stop` semantics, `stop_wait`, panics, reentrancy, and races.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use ctxtree::{AfterFunc, CancelHandle, Cause, Context, Error};

fn counter() -> (Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let c = Arc::new(AtomicUsize::new(0));
    (c.clone(), c)
}

#[test]
fn runs_once_on_the_canceling_thread_after_the_subtree_is_canceled() {
    let (ctx, cancel) = Context::background().with_cancel();
    let (child, _child_handle) = ctx.with_cancel();
    let (grandchild, _gh) = child.with_value(1u8).with_cancel();
    let seen = Arc::new(Mutex::new(None));
    let record = seen.clone();
    let probe = grandchild.clone();
    let _registration = ctx.after_func(move || {
        *record.lock().unwrap() = Some((thread::current().id(), probe.is_done(), probe.err()));
    });
    assert!(seen.lock().unwrap().is_none());
    let canceler = thread::spawn(move || {
        cancel.cancel();
        thread::current().id()
    });
    let canceler_id = canceler.join().unwrap();
    let seen = seen
        .lock()
        .unwrap()
        .take()
        .expect("ran before cancel returned");
    assert_eq!(seen.0, canceler_id, "ran on the canceling thread");
    assert!(seen.1, "the whole subtree was canceled before it ran");
    assert_eq!(seen.2, Some(Error::Canceled));
}

#[test]
fn runs_when_an_ancestor_is_canceled() {
    let (parent, cancel) = Context::background().with_cancel();
    let (ctx, _h) = parent.with_value("v").with_cancel();
    let (runs, c) = counter();
    let registration = ctx.after_func(move || {
        c.fetch_add(1, Ordering::SeqCst);
    });
    cancel.cancel();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(!registration.stop(), "it already ran");
    drop(_h);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "exactly once");
}

#[test]
fn runs_on_a_runner_thread_when_a_deadline_fires() {
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(10));
    let (tx, rx) = std::sync::mpsc::channel();
    let _registration = ctx.after_func(move || {
        let name = thread::current().name().map(str::to_owned);
        tx.send(name).unwrap();
    });
    let name = rx.recv_timeout(Duration::from_secs(10)).expect("ran");
    assert_eq!(name.as_deref(), Some("ctxtree-callbacks"));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

#[test]
fn runs_at_once_on_the_registering_thread_if_already_canceled() {
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    let here = thread::current().id();
    let ran_on = Arc::new(Mutex::new(None));
    let record = ran_on.clone();
    let registration = ctx.after_func(move || {
        *record.lock().unwrap() = Some(thread::current().id());
    });
    assert_eq!(
        *ran_on.lock().unwrap(),
        Some(here),
        "ran before after_func returned"
    );
    assert!(!registration.stop());
    assert!(!registration.stop_wait());
}

#[test]
fn stop_prevents_the_call_and_frees_the_closure() {
    let (ctx, cancel) = Context::background().with_cancel();
    let captured = Arc::new(());
    let held = captured.clone();
    let (runs, c) = counter();
    let registration = ctx.after_func(move || {
        let _keep = &held;
        c.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(Arc::strong_count(&captured), 2);
    assert!(registration.stop());
    assert_eq!(
        Arc::strong_count(&captured),
        1,
        "the stopped closure was dropped"
    );
    assert!(!registration.stop(), "a second stop returns false");
    cancel.cancel();
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert!(!registration.stop_wait());
}

#[test]
fn a_never_canceled_context_registers_nothing() {
    for ctx in [
        Context::background(),
        Context::todo(),
        Context::background().with_value(1u8),
        Context::background().with_cancel().0.without_cancel(),
    ] {
        let (runs, c) = counter();
        let registration = ctx.after_func(move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        assert!(registration.stop(), "first stop: true");
        assert!(!registration.stop(), "then false");
        assert!(!registration.stop_wait());
        assert_eq!(runs.load(Ordering::SeqCst), 0);
    }
}

#[test]
fn dropping_the_handle_does_not_stop_the_registration() {
    let (ctx, cancel) = Context::background().with_cancel();
    let (runs, c) = counter();
    drop(ctx.after_func(move || {
        c.fetch_add(1, Ordering::SeqCst);
    }));
    cancel.cancel();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn registrations_are_independent() {
    let (ctx, cancel) = Context::background().with_cancel();
    let (runs, c) = counter();
    let registrations: Vec<AfterFunc> = (0..100)
        .map(|_| {
            let c = c.clone();
            ctx.after_func(move || {
                c.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for r in registrations.iter().step_by(2) {
        assert!(r.stop());
    }
    cancel.cancel();
    assert_eq!(runs.load(Ordering::SeqCst), 50);
    for r in &registrations {
        assert!(!r.stop());
    }
}

#[test]
fn a_callback_may_derive_cancel_and_register() {
    let (a, cancel_a) = Context::background().with_cancel();
    let (b, cancel_b) = Context::background().with_cancel();
    let (runs, c) = counter();
    let c2 = c.clone();
    let _rb = b.after_func(move || {
        c2.fetch_add(10, Ordering::SeqCst);
    });
    let cancel_b = Mutex::new(Some(cancel_b));
    let a2 = a.clone();
    let _ra = a.after_func(move || {
        // Derive from the (canceled) context: born canceled.
        let (child, _h) = a2.with_cancel();
        assert!(child.is_done());
        // Register on it: runs at once, right here.
        let c3 = c.clone();
        let _inner = child.after_func(move || {
            c3.fetch_add(100, Ordering::SeqCst);
        });
        // Cancel another tree from inside: its callback runs too.
        drop(cancel_b.lock().unwrap().take());
        c.fetch_add(1, Ordering::SeqCst);
    });
    cancel_a.cancel();
    assert_eq!(runs.load(Ordering::SeqCst), 111);
    assert!(b.is_done());
}

#[test]
fn a_panicking_callback_does_not_stop_the_cancel_or_other_callbacks() {
    let (ctx, cancel) = Context::background().with_cancel();
    let (child, _child_handle) = ctx.with_cancel();
    let (runs, c) = counter();
    let c2 = c.clone();
    let _first = ctx.after_func(move || {
        c2.fetch_add(1, Ordering::SeqCst);
    });
    let _panics = ctx.after_func(|| panic!("callback failed"));
    let _on_child = child.after_func(move || {
        c.fetch_add(1, Ordering::SeqCst);
    });
    let result = catch_unwind(AssertUnwindSafe(|| cancel.cancel()));
    let payload = result.expect_err("the panic resumes on the canceling caller");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"callback failed"));
    assert!(ctx.is_done() && child.is_done());
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the other callbacks ran");
    // The tree still works afterwards.
    let (again, h) = Context::background().with_cancel();
    h.cancel();
    assert!(again.is_done());
}

#[test]
fn a_panicking_callback_on_a_canceled_context_panics_in_after_func() {
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    let result = catch_unwind(AssertUnwindSafe(|| ctx.after_func(|| panic!("at once"))));
    assert!(result.is_err());
}

#[test]
fn stop_wait_from_inside_the_callback_does_not_deadlock() {
    let (ctx, cancel) = Context::background().with_cancel();
    let slot: Arc<Mutex<Option<Arc<AfterFunc>>>> = Arc::new(Mutex::new(None));
    let inside = slot.clone();
    let result = Arc::new(Mutex::new(None));
    let out = result.clone();
    let registration = Arc::new(ctx.after_func(move || {
        let me = inside.lock().unwrap().clone().unwrap();
        *out.lock().unwrap() = Some((me.stop_wait(), me.stop()));
    }));
    *slot.lock().unwrap() = Some(registration.clone());
    cancel.cancel();
    assert_eq!(*result.lock().unwrap(), Some((false, false)));
}

#[test]
fn stop_wait_from_another_callback_of_the_same_cancel_does_not_deadlock() {
    // Two callbacks queued by one cancel, each stop_waiting the other: the
    // second must not wait for the first, which this thread runs later (or
    // already ran).
    let (ctx, cancel) = Context::background().with_cancel();
    let slots: Arc<Mutex<Vec<Arc<AfterFunc>>>> = Arc::new(Mutex::new(Vec::new()));
    let (runs, c) = counter();
    for i in 0..2 {
        let slots2 = slots.clone();
        let c = c.clone();
        let r = ctx.after_func(move || {
            let other = slots2.lock().unwrap()[1 - i].clone();
            let _ = other.stop_wait();
            c.fetch_add(1, Ordering::SeqCst);
        });
        slots.lock().unwrap().push(Arc::new(r));
    }
    cancel.cancel();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[test]
fn stop_wait_waits_for_a_callback_running_on_another_thread() {
    for _ in 0..20 {
        let (ctx, cancel) = Context::background().with_cancel();
        let started = Arc::new(Barrier::new(2));
        let finished = Arc::new(AtomicBool::new(false));
        let (s, f) = (started.clone(), finished.clone());
        let registration = ctx.after_func(move || {
            s.wait();
            thread::sleep(Duration::from_millis(20));
            f.store(true, Ordering::SeqCst);
        });
        let canceler = thread::spawn(move || cancel.cancel());
        started.wait(); // the callback is running now
        assert!(!registration.stop_wait());
        assert!(
            finished.load(Ordering::SeqCst),
            "stop_wait returned before the callback finished"
        );
        canceler.join().unwrap();
    }
}

#[test]
fn stop_races_cancel_exactly_one_wins() {
    let rounds = if cfg!(miri) { 20 } else { 5_000 };
    for _ in 0..rounds {
        let (ctx, cancel) = Context::background().with_cancel();
        let (runs, c) = counter();
        let registration = ctx.after_func(move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        let barrier = Arc::new(Barrier::new(2));
        let b = barrier.clone();
        let canceler = thread::spawn(move || {
            b.wait();
            cancel.cancel();
        });
        barrier.wait();
        let stopped = registration.stop_wait();
        canceler.join().unwrap();
        let ran = runs.load(Ordering::SeqCst);
        assert_eq!(ran + stopped as usize, 1, "stop {stopped}, runs {ran}");
    }
}

#[test]
fn registration_races_cancel_and_runs_exactly_once() {
    let rounds = if cfg!(miri) { 20 } else { 5_000 };
    for _ in 0..rounds {
        let (ctx, cancel) = Context::background().with_cancel();
        let (runs, c) = counter();
        let barrier = Arc::new(Barrier::new(2));
        let b = barrier.clone();
        let canceler = thread::spawn(move || {
            b.wait();
            cancel.cancel();
        });
        barrier.wait();
        let _registration = ctx.after_func(move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        canceler.join().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}

/// Go's `ExampleAfterFunc_merge`: a context canceled when either of two
/// contexts is, carrying the cause of the one that ended it. Dropping the
/// guard is Go's returned `stop` + `cancel`.
struct Merged {
    handle: Arc<CancelHandle>,
    stop: AfterFunc,
}

impl Drop for Merged {
    fn drop(&mut self) {
        self.stop.stop();
        self.handle.cancel();
    }
}

fn merge_cancel(ctx: &Context, cancel_ctx: &Context) -> (Context, Merged) {
    let (merged, cancel) = ctx.with_cancel();
    let handle = Arc::new(cancel);
    let in_callback = handle.clone();
    let from_other = cancel_ctx.clone();
    let stop = cancel_ctx.after_func(move || {
        in_callback.cancel_with_cause(from_other.cause().expect("canceled"));
    });
    (merged, Merged { handle, stop })
}

#[test]
fn merge_via_after_func_carries_the_second_contexts_cause() {
    let (ctx1, _cancel1) = Context::background().with_cancel();
    let (ctx2, cancel2) = Context::background().with_cancel();
    let (merged, guard) = merge_cancel(&ctx1, &ctx2);
    assert!(!merged.is_done());
    cancel2.cancel_with_cause(Cause::msg("second context canceled"));
    assert_eq!(merged.err(), Some(Error::Canceled));
    assert_eq!(
        merged.cause().unwrap().to_string(),
        "second context canceled"
    );
    assert!(!guard.stop.stop());
    assert!(!ctx1.is_done());

    // The other way round: the first context ends it, and the guard stops
    // the registration on the second.
    let (ctx1, cancel1) = Context::background().with_cancel();
    let (ctx2, _cancel2) = Context::background().with_cancel();
    let (merged, guard) = merge_cancel(&ctx1, &ctx2);
    cancel1.cancel_with_cause(Cause::msg("first"));
    assert_eq!(merged.cause().unwrap().to_string(), "first");
    drop(guard);
    assert!(!ctx2.is_done());
}

#[test]
fn abandoned_and_stopped_registrations_on_a_long_lived_context() {
    // Stopped registrations are garbage on the node's stack: the collection
    // keeps it bounded and the survivors still run.
    let (ctx, cancel) = Context::background().with_cancel();
    let (runs, c) = counter();
    let keep: Vec<AfterFunc> = (0..10)
        .map(|_| {
            let c = c.clone();
            ctx.after_func(move || {
                c.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for _ in 0..100_000 {
        let c = c.clone();
        let r = ctx.after_func(move || {
            c.fetch_add(1_000, Ordering::SeqCst);
        });
        assert!(r.stop());
    }
    cancel.cancel();
    assert_eq!(runs.load(Ordering::SeqCst), 10);
    drop(keep);
}

#[test]
fn debug_names_the_state() {
    let (ctx, cancel) = Context::background().with_cancel();
    let r = ctx.after_func(|| {});
    assert!(format!("{r:?}").contains("registered"));
    cancel.cancel();
    assert!(format!("{r:?}").contains("started"));
    let never = Context::background().after_func(|| {});
    assert!(format!("{never:?}").contains("never"));
    let _ = common::threads::thread_names;
}

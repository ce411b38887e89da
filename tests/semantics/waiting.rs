//! `done()` futures, blocking waits, `same`, and foreign code (wakers, causes) that panics.

use super::*;

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

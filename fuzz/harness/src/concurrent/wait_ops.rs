//! A racing thread's reads and waits: consistent reads of a node's state,
//! `done()` / `done_owned()` futures (kept, polled, re-polled, dropped,
//! churned) and `wait_timeout`.

use std::task::Poll;
use std::time::Duration;

use ctxtree::Error;

use super::super::common::{counting_waker, poll_with};
use super::state::{Fut, Local, Shared, MAX_FUTURES};

/// `Op::Read`: err, cause, is_done and done() of a shared node, read
/// consistently.
pub(super) fn read(sh: &Shared, seen_done: &mut [bool], n: usize, k: u8) {
    let k = k as usize % n;
    let ctx = &sh.ctxs[k];
    let done = ctx.is_done();
    assert!(done || !seen_done[k], "node {k} was done and is live again");
    seen_done[k] |= done;
    let err = ctx.err();
    assert!(!done || err.is_some(), "is_done() then err() None");
    if let Some(e) = err {
        assert_eq!(e, Error::Canceled);
        let cause = ctx.cause();
        assert!(cause.is_some(), "err() Some then cause() None");
        let (counter, waker) = counting_waker();
        let got = poll_with(&mut ctx.done(), &waker);
        assert_eq!(got, Poll::Ready(e), "err() Some then done() not ready");
        assert_eq!(counter.count(), 0);
        assert!(ctx.cause() == cause, "a canceled node's cause changed");
    }
    assert_eq!(ctx.to_string(), sh.paths[k]);
}

/// `Op::NewFuture`: `done_owned()` of a shared node, polled once, kept
/// while pending.
pub(super) fn new_future(sh: &Shared, local: &mut Local, n: usize, k: u8) {
    let k = k as usize % n;
    let ctx = &sh.ctxs[k];
    let was = ctx.err();
    let mut fut = ctx.done_owned();
    let (counter, waker) = counting_waker();
    match poll_with(&mut fut, &waker) {
        Poll::Ready(e) => assert_eq!(ctx.err(), Some(e)),
        Poll::Pending => {
            assert_eq!(was, None, "done_owned() of a canceled node pending");
            let f = Fut {
                fut,
                counter,
                waker,
            };
            if local.futures.len() < MAX_FUTURES {
                local.futures.push(f);
            } else {
                local.retired.push(f.counter.clone());
            }
        }
    }
}

/// `Op::DropFuture`: drops one of this thread's pending futures.
pub(super) fn drop_future(local: &mut Local, j: u8) {
    if !local.futures.is_empty() {
        let j = j as usize % local.futures.len();
        let f = local.futures.swap_remove(j);
        local.retired.push(f.counter.clone());
    }
}

/// `Op::PollFutures`: polls this thread's pending futures.
pub(super) fn poll_futures(local: &mut Local) {
    local.futures.retain_mut(|f| {
        let was = f.fut.context().err();
        match poll_with(&mut f.fut, &f.waker) {
            Poll::Ready(e) => {
                assert_eq!(f.fut.context().err(), Some(e));
                false
            }
            Poll::Pending => {
                assert_eq!(was, None, "future of a canceled node pending");
                true
            }
        }
    });
}

/// `Op::Repoll`: polls a pending future with a new waker.
pub(super) fn repoll(local: &mut Local, j: u8) {
    if !local.futures.is_empty() {
        let j = j as usize % local.futures.len();
        let (counter, waker) = counting_waker();
        let f = &mut local.futures[j];
        let was = f.fut.context().err();
        let got = poll_with(&mut f.fut, &waker);
        let old = std::mem::replace(&mut f.counter, counter);
        f.waker = waker;
        local.retired.push(old);
        match got {
            Poll::Ready(e) => {
                assert_eq!(f.fut.context().err(), Some(e));
                local.futures.swap_remove(j);
            }
            Poll::Pending => assert_eq!(was, None),
        }
    }
}

/// `Op::Wait`: `wait_timeout` of zero or 50 µs on a shared node.
pub(super) fn wait(sh: &Shared, n: usize, k: u8, b: u8) {
    let k = k as usize % n;
    let ctx = &sh.ctxs[k];
    let was = ctx.err();
    let timeout = if b & 1 == 0 {
        Duration::ZERO
    } else {
        Duration::from_micros(50)
    };
    let got = ctx.wait_timeout(timeout);
    if was.is_some() {
        assert_eq!(got, was, "wait_timeout on a canceled node");
    }
    if let Some(e) = got {
        assert_eq!(ctx.err(), Some(e), "wait_timeout woke, err() disagrees");
    }
}

/// `Op::DoneChurn`: `done()` futures on a shared node, created, polled and
/// dropped.
pub(super) fn done_churn(sh: &Shared, local: &mut Local, n: usize, k: u8, c: u8) {
    let k = k as usize % n;
    let ctx = &sh.ctxs[k];
    let (counter, waker) = counting_waker();
    for _ in 0..1 + c as usize % 48 {
        let was = ctx.err();
        match poll_with(&mut ctx.done(), &waker) {
            Poll::Ready(e) => assert_eq!(ctx.err(), Some(e)),
            Poll::Pending => assert_eq!(was, None),
        }
    }
    // Each churned future is woken at most once (W1).
    local.retired.push(counter);
}

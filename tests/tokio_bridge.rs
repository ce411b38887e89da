//! The tokio-util `CancellationToken` bridges (feature `tokio`): a token that
//! follows a context, a context that follows a token, both without a task
//! per link, under a real multi-thread runtime and from plain threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ctxtree::tokio::TokenCancelled;
use ctxtree::{Cause, Context, Error};
use tokio_util::sync::CancellationToken;

/// True if `ctx` was canceled by the token it follows.
fn canceled_by_token(ctx: &Context) -> bool {
    ctx.err() == Some(Error::Canceled)
        && ctx
            .cause()
            .is_some_and(|cause| cause.downcast_ref::<TokenCancelled>().is_some())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn token_follows_cancel_deadline_and_ancestor() {
    let (root, root_cancel) = Context::background().with_cancel();
    let (ctx, cancel) = root.with_cancel();
    let token = ctx.cancellation_token();
    assert!(!token.is_cancelled());
    cancel.cancel();
    assert!(token.is_cancelled(), "canceled before cancel() returned");

    let (timed, _h) = root.with_timeout(Duration::from_millis(20));
    let token = timed.cancellation_token();
    let rt = runtime();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), token.cancelled())
            .await
            .expect("deadline reached the token");
    });

    let (leaf, _h) = root.with_cancel();
    let (leaf, _h2) = leaf.with_cancel();
    let leaf = leaf.with_value(5u8);
    let token = leaf.cancellation_token();
    root_cancel.cancel();
    assert!(token.is_cancelled());
}

#[test]
fn token_of_a_done_or_never_context() {
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    assert!(ctx.cancellation_token().is_cancelled());
    assert!(ctx.linked_cancellation_token().token().is_cancelled());

    let background = Context::background();
    let token = background.cancellation_token();
    assert!(!token.is_cancelled());
    let detached = ctx.without_cancel();
    assert!(!detached.cancellation_token().is_cancelled());
}

#[test]
fn token_cancel_does_not_cancel_the_context() {
    let (ctx, _cancel) = Context::background().with_cancel();
    let token = ctx.cancellation_token();
    token.cancel();
    assert!(!ctx.is_done());
}

#[test]
fn dropped_link_stops_following() {
    let (ctx, cancel) = Context::background().with_cancel();
    let link = ctx.linked_cancellation_token();
    let kept = link.token().clone();
    let live = ctx.linked_cancellation_token();
    drop(link);
    cancel.cancel();
    assert!(
        !kept.is_cancelled(),
        "a dropped link still canceled its token"
    );
    assert!(live.token().is_cancelled());
}

#[test]
fn tokio_tasks_wait_on_a_token_that_follows_a_context() {
    let rt = runtime();
    let (ctx, cancel) = Context::background().with_cancel();
    let woke = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let token = ctx.cancellation_token();
            let woke = woke.clone();
            rt.spawn(async move {
                token.cancelled().await;
                woke.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(woke.load(Ordering::SeqCst), 0);
    std::thread::spawn(move || cancel.cancel()).join().unwrap();
    rt.block_on(async {
        for task in tasks {
            task.await.unwrap();
        }
    });
    assert_eq!(woke.load(Ordering::SeqCst), 100);
}

#[test]
fn context_follows_token_synchronously_with_its_cause() {
    let token = CancellationToken::new();
    let (root, _root_cancel) = Context::background().with_cancel();
    let (ctx, _cancel) = root.with_cancellation_token(&token);
    let (grandchild, _g) = ctx.with_cancel();
    let ran = Arc::new(AtomicUsize::new(0));
    let flag = ran.clone();
    let _registration = ctx.after_func(move || {
        flag.fetch_add(1, Ordering::SeqCst);
    });
    assert!(!ctx.is_done());
    token.cancel();
    // No task: the context was canceled inside token.cancel().
    assert!(ctx.is_done() && grandchild.is_done());
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert!(canceled_by_token(&ctx));
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert!(!root.is_done(), "the parent is not the token's");
}

#[test]
fn context_follows_a_parent_token_and_an_already_cancelled_token() {
    let parent = CancellationToken::new();
    let child_token = parent.child_token();
    let (ctx, _cancel) = Context::background().with_cancellation_token(&child_token);
    parent.cancel();
    assert!(ctx.is_done());

    let cancelled = CancellationToken::new();
    cancelled.cancel();
    let (ctx, _cancel) = Context::background().with_cancellation_token(&cancelled);
    assert!(ctx.is_done());
    assert!(canceled_by_token(&ctx));
}

#[test]
fn context_that_follows_a_token_still_ends_by_its_parent_or_handle() {
    let token = CancellationToken::new();
    let (parent, parent_cancel) = Context::background().with_cancel();
    let (ctx, _cancel) = parent.with_cancellation_token(&token);
    parent_cancel.cancel_with_cause(Cause::msg("parent"));
    assert_eq!(ctx.cause().unwrap().to_string(), "parent");
    token.cancel(); // the watch is gone: nothing happens
    assert_eq!(ctx.cause().unwrap().to_string(), "parent");

    // The token is already cancelled: the child is done before its handle
    // is touched, with the token's cause.
    let (ctx, cancel) = Context::background().with_cancellation_token(&token.clone());
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert!(canceled_by_token(&ctx));
    drop(cancel);

    let fresh = CancellationToken::new();
    let (ctx, cancel) = Context::background().with_cancellation_token(&fresh);
    drop(cancel);
    assert!(ctx.is_done());
    assert!(ctx
        .cause()
        .unwrap()
        .downcast_ref::<TokenCancelled>()
        .is_none());
    fresh.cancel();
}

#[test]
fn token_cancel_racing_a_handle_cancel_from_threads() {
    for round in 0..2_000 {
        let token = CancellationToken::new();
        let (ctx, cancel) = Context::background().with_cancellation_token(&token);
        let waiter = {
            let ctx = ctx.clone();
            std::thread::spawn(move || ctx.wait())
        };
        let by_token = round % 2 == 0;
        let racer = {
            let token = token.clone();
            std::thread::spawn(move || token.cancel())
        };
        if by_token {
            racer.join().unwrap();
            drop(cancel);
        } else {
            drop(cancel);
            racer.join().unwrap();
        }
        assert_eq!(waiter.join().unwrap(), Error::Canceled);
        assert!(ctx.is_done());
    }
}

#[test]
fn round_trip_token_to_context_to_token() {
    let rt = runtime();
    let outer = CancellationToken::new();
    let (ctx, _cancel) = Context::background().with_cancellation_token(&outer);
    let (child, _h) = ctx.with_cancel();
    let inner = child.cancellation_token();
    let task = rt.spawn(async move { inner.cancelled().await });
    outer.cancel();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the inner token followed")
            .unwrap();
    });
}

#[test]
fn a_panicking_after_func_does_not_strand_other_waiters_of_the_token() {
    let rt = runtime();
    let token = CancellationToken::new();
    let (ctx, _cancel) = Context::background().with_cancellation_token(&token);
    let _registration = ctx.after_func(|| panic!("after_func panics inside token.cancel()"));
    let woke = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (token, woke) = (token.clone(), woke.clone());
            rt.spawn(async move {
                token.cancelled().await;
                woke.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20)); // all 50 are waiting
    token.cancel(); // must not unwind (B3)
    assert!(ctx.is_done());
    rt.block_on(async {
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("every waiter of the token was woken")
                .unwrap();
        }
    });
    assert_eq!(woke.load(Ordering::SeqCst), 50);
}

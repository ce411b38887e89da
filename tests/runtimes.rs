//! `done()`, `done_owned()`, `run()` and `FutureExt` under three executors:
//! tokio (multi-thread and current-thread), smol and `futures::executor`.
//! Nothing in ctxtree knows which executor polls it: these tests show the
//! wake-ups arrive from foreign threads (a canceling thread, the timer
//! thread) under each.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use ctxtree::{Cause, Context, Error, FutureExt as _};

mod common;

const TASKS: usize = 200;

/// A future that counts its polls and is ready at once.
struct CountingReady(Arc<AtomicUsize>);

impl Future for CountingReady {
    type Output = u32;
    fn poll(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<u32> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(7)
    }
}

#[test]
fn tokio_multi_thread_tasks_wake_on_a_cancel_from_a_plain_thread() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (ctx, cancel) = Context::background().with_cancel();
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let (child, handle) = ctx.with_cancel();
            rt.spawn(async move {
                let _handle = handle;
                if i % 2 == 0 {
                    child.done().await
                } else {
                    child.done_owned().await
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20)); // let them all park
    std::thread::spawn(move || cancel.cancel_with_cause(Cause::msg("shutdown")))
        .join()
        .unwrap();
    rt.block_on(async {
        for task in tasks {
            assert_eq!(task.await.unwrap(), Error::Canceled);
        }
    });
    assert_eq!(ctx.cause().unwrap().to_string(), "shutdown");
}

#[test]
fn tokio_run_owned_ends_with_the_deadline_from_the_timer_thread() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = Instant::now(); // before the derive: the deadline is derive + 30 ms
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(30));
    let out = rt.block_on(async {
        let work = tokio::time::sleep(Duration::from_secs(60));
        tokio::spawn(ctx.run_owned(work)).await.unwrap()
    });
    assert_eq!(out, Err(Error::DeadlineExceeded));
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn tokio_select_on_done_and_work() {
    let (ctx, cancel) = Context::background().with_cancel();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(8);
    let worker = tokio::spawn(async move {
        let mut sum = 0;
        loop {
            tokio::select! {
                err = ctx.done() => return (sum, err),
                Some(n) = rx.recv() => sum += n,
            }
        }
    });
    for n in 1..=10 {
        tx.send(n).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    cancel.cancel();
    let (sum, err) = worker.await.unwrap();
    assert_eq!(err, Error::Canceled);
    assert_eq!(sum, 55);
}

#[tokio::test]
async fn run_is_biased_to_the_context_and_loses_no_message() {
    let (ctx, cancel) = Context::background().with_cancel();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(8);
    tx.send(1).await.unwrap();
    assert_eq!(ctx.run(rx.recv()).await, Ok(Some(1)));
    tx.send(2).await.unwrap();
    cancel.cancel();
    // Both are ready: the context wins and `recv` is never polled, so the
    // message stays in the channel (R1).
    assert_eq!(ctx.run(rx.recv()).await, Err(Error::Canceled));
    assert_eq!(rx.try_recv(), Ok(2));

    let polls = Arc::new(AtomicUsize::new(0));
    assert_eq!(
        ctx.run(CountingReady(polls.clone())).await,
        Err(Error::Canceled)
    );
    assert_eq!(
        polls.load(Ordering::SeqCst),
        0,
        "polled after the context ended"
    );
}

#[tokio::test]
async fn future_ext_forms() {
    let (ctx, cancel) = Context::background().with_cancel();
    assert_eq!(async { 3 }.with_context(&ctx).await, Ok(3));
    let spawned = tokio::spawn(std::future::pending::<()>().with_context_owned(ctx.clone()));
    tokio::time::sleep(Duration::from_millis(10)).await;
    cancel.cancel_with_cause(Cause::msg("stop"));
    assert_eq!(spawned.await.unwrap(), Err(Error::Canceled));
    // A never-canceled context never ends the future.
    let background = Context::background();
    assert_eq!(async { 4 }.with_context(&background).await, Ok(4));
    let timeout = tokio::time::timeout(
        Duration::from_millis(20),
        std::future::pending::<()>().with_context(&background),
    )
    .await;
    assert!(timeout.is_err(), "a background context ended a future");
}

#[test]
fn smol_tasks_wake_on_cancel_and_deadline() {
    let (ctx, cancel) = Context::background().with_cancel();
    let (timed, _timed_cancel) = ctx.with_timeout(Duration::from_millis(30));
    smol::block_on(async {
        let waiting: Vec<_> = (0..TASKS).map(|_| smol::spawn(ctx.done_owned())).collect();
        let deadline = smol::spawn(timed.run_owned(smol::Timer::after(Duration::from_secs(60))));
        assert_eq!(deadline.await, Err(Error::DeadlineExceeded));
        assert!(!ctx.is_done());
        let canceler = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            cancel.cancel();
        });
        for task in waiting {
            assert_eq!(task.await, Error::Canceled);
        }
        canceler.join().unwrap();
        let finished = ctx.run(async { 1 }).await;
        assert_eq!(finished, Err(Error::Canceled));
    });
}

#[test]
fn futures_executor_block_on_and_join_all() {
    let (ctx, cancel) = Context::background().with_cancel();
    let children: Vec<_> = (0..TASKS).map(|_| ctx.with_cancel()).collect();
    let canceler = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        cancel.cancel();
    });
    let results = futures::executor::block_on(futures::future::join_all(
        children.iter().map(|(child, _)| child.done()),
    ));
    canceler.join().unwrap();
    assert!(results.iter().all(|err| *err == Error::Canceled));

    // run() under block_on: work that finishes first returns Ok.
    let (ctx, _cancel) = Context::background().with_cancel();
    assert_eq!(
        futures::executor::block_on(ctx.run(async { "ok" })),
        Ok("ok")
    );
}

#[test]
fn a_pending_run_that_is_dropped_unregisters_its_waiter() {
    // Thousands of run() futures polled with a counting waker and dropped:
    // each abandoned its waiter, so the cancel wakes none of them (a leaked
    // registration would be woken and counted). tests/memory.rs bounds the
    // heap of the same churn.
    let (ctx, cancel) = Context::background().with_cancel();
    let counter = common::waker::CountingWaker::new();
    let waker = std::task::Waker::from(counter.clone());
    let mut cx = TaskContext::from_waker(&waker);
    for _ in 0..10_000 {
        let mut run = Box::pin(ctx.run(std::future::pending::<()>()));
        assert!(run.as_mut().poll(&mut cx).is_pending());
    }
    let mut kept = Box::pin(ctx.run(std::future::pending::<()>()));
    assert!(kept.as_mut().poll(&mut cx).is_pending());
    cancel.cancel();
    assert_eq!(counter.count(), 1, "only the live run() is woken");
    assert_eq!(
        kept.as_mut().poll(&mut cx),
        Poll::Ready(Err(Error::Canceled))
    );
}

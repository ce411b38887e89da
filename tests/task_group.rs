//! The tokio task group (`ctxtree::tokio::TaskGroup`, feature `tokio`): Go's
//! `errgroup` tests ported where they apply (`go_*`, as in tests/groups.rs),
//! then the group's own guarantees: the first error is the siblings' cause,
//! wait ends after every task, the limit bounds concurrency, shutdown
//! reports and aborts stragglers, dropping the group cancels it and leaks no
//! task (and with a drop grace lets the tasks observe the cancel first), and
//! panics cancel the group and are resumed by wait.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ctxtree::group::{GroupShutdown, TaskPanicked};
use ctxtree::tokio::TaskGroup;
use ctxtree::{Cause, Context, Error};
use futures::FutureExt as _;
use tokio::sync::{mpsc, oneshot};

/// Generous bound for "must have happened by now" on a loaded 2-core box.
const QUIESCENT: Duration = Duration::from_secs(10);

/// Counts live tasks: one per guard, decremented when the guard is dropped
/// (also when its task is aborted).
#[derive(Clone, Default)]
struct Live(Arc<AtomicUsize>);

struct LiveGuard(Arc<AtomicUsize>);

impl Live {
    fn enter(&self) -> LiveGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        LiveGuard(self.0.clone())
    }
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
    /// Waits (yielding to the runtime) until the count is `n`.
    async fn settle_at(&self, n: usize) {
        let deadline = Instant::now() + QUIESCENT;
        while self.count() != n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(self.count(), n);
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn ok() -> Result<(), Cause> {
    Ok(())
}

#[test]
fn task_group_is_send_and_sync() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<TaskGroup>();
}

// ------------------------------------------------------------ Go's tests

/// TestZeroGroup: `wait` after each spawn returns the first error so far.
#[tokio::test]
async fn go_test_zero_group() {
    let err1 = Cause::msg("errgroup_test: 1");
    let err2 = Cause::msg("errgroup_test: 2");
    let cases: Vec<Vec<Option<Cause>>> = vec![
        vec![],
        vec![None],
        vec![Some(err1.clone())],
        vec![Some(err1.clone()), None],
        vec![Some(err1.clone()), None, Some(err2.clone())],
    ];
    for errs in cases {
        let mut group = TaskGroup::new(&Context::background());
        let mut first: Option<Cause> = None;
        for err in errs {
            if first.is_none() {
                first.clone_from(&err);
            }
            group
                .spawn(move |_ctx| async move { err.map_or(Ok(()), Err) })
                .await;
            assert_eq!(group.wait().await.err(), first);
        }
    }
}

/// TestWithContext and TestCancelCause: `wait` returns the first error; then
/// the group's context is done, its cause the first error or `Canceled`.
#[tokio::test]
async fn go_test_with_context_and_cancel_cause() {
    let doom = Cause::msg("group_test: doomed");
    let cases: Vec<(Vec<Option<Cause>>, Option<Cause>)> = vec![
        (vec![], None),
        (vec![None], None),
        (vec![Some(doom.clone())], Some(doom.clone())),
        (vec![Some(doom.clone()), None], Some(doom.clone())),
    ];
    for (errs, want) in cases {
        let mut group = TaskGroup::new(&Context::background());
        for err in errs {
            let started = group.try_spawn(move |_ctx| async move { err.map_or(Ok(()), Err) });
            assert!(started.is_some());
        }
        assert_eq!(group.wait().await.err(), want);
        assert!(group.context().is_done(), "ctx.Done() was not closed");
        let want_cause = want.unwrap_or(Cause::from(Error::Canceled));
        assert_eq!(group.context().cause(), Some(want_cause));
    }
}

/// TestTryGo: `try_spawn` fails exactly when the limit is reached.
#[tokio::test]
async fn go_test_try_go() {
    const N: usize = 42;
    let mut group = TaskGroup::new(&Context::background()).limit(N);
    let (ch, mut rx) = mpsc::channel::<()>(1);
    let task = |ch: mpsc::Sender<()>| {
        move |_ctx: Context| async move {
            ch.send(()).await.unwrap();
            ok()
        }
    };
    for i in 0..N {
        assert!(
            group.try_spawn(task(ch.clone())).is_some(),
            "try_spawn should succeed but failed at call {i}"
        );
    }
    assert!(group.try_spawn(task(ch.clone())).is_none());
    for _ in 0..N {
        rx.recv().await.unwrap();
    }
    group.wait().await.unwrap();
    assert!(group.try_spawn(task(ch.clone())).is_some());
    rx.recv().await.unwrap();
    group.wait().await.unwrap();

    // Switch limit (set on a new group: the tokio group's limit is fixed).
    let mut group = TaskGroup::new(&Context::background()).limit(1);
    assert!(group.try_spawn(task(ch.clone())).is_some());
    assert!(group.try_spawn(task(ch.clone())).is_none());
    rx.recv().await.unwrap();
    group.wait().await.unwrap();

    // Block all calls.
    let mut group = TaskGroup::new(&Context::background()).limit(0);
    for _ in 0..1 << 10 {
        assert!(group.try_spawn(task(ch.clone())).is_none());
    }
    group.wait().await.unwrap();
}

/// TestGoLimit: with a limit of 10, no more than 10 tasks are ever active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_test_go_limit() {
    const LIMIT: usize = 10;
    let active = Arc::new(AtomicUsize::new(0));
    let mut group = TaskGroup::new(&Context::background()).limit(LIMIT);
    for _ in 0..=1 << 10 {
        let active = active.clone();
        group
            .spawn(move |_ctx| async move {
                let n = active.fetch_add(1, Ordering::SeqCst) + 1;
                if n > LIMIT {
                    return Err(Cause::msg(format!("saw {n} active tasks; want <= {LIMIT}")));
                }
                tokio::task::yield_now().await; // let others increment
                active.fetch_sub(1, Ordering::SeqCst);
                ok()
            })
            .await;
    }
    group.wait().await.unwrap();
}

// ------------------------------------------------------ first error, cause

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_error_is_the_cause_seen_by_siblings() {
    let failure = Cause::msg("disk full");
    let (causes_tx, mut causes) = mpsc::unbounded_channel();
    let mut group = TaskGroup::new(&Context::background());
    for _ in 0..4 {
        let causes_tx = causes_tx.clone();
        group
            .spawn(move |ctx| async move {
                assert_eq!(ctx.done().await, Error::Canceled);
                causes_tx.send(ctx.cause().unwrap()).unwrap();
                ok()
            })
            .await;
    }
    let sent = failure.clone();
    group.spawn(move |_ctx| async move { Err(sent) }).await;
    assert_eq!(group.wait().await, Err(failure.clone()));
    drop(causes_tx);
    let mut seen = 0;
    while let Some(cause) = causes.recv().await {
        assert_eq!(cause, failure, "the same cause, by identity");
        seen += 1;
    }
    assert_eq!(seen, 4);
}

#[tokio::test]
async fn a_parent_cancel_reaches_every_task_and_the_failure_stays_in_the_group() {
    let (parent, cancel) = Context::background().with_cancel();
    let mut group = TaskGroup::new(&parent);
    group
        .spawn(|_ctx| async { Err(Cause::msg("task failed")) })
        .await;
    assert!(group.wait().await.is_err());
    assert!(!parent.is_done());

    let mut group = TaskGroup::new(&parent);
    for _ in 0..3 {
        group
            .spawn(|ctx| async move {
                ctx.done().await;
                assert_eq!(ctx.cause().unwrap().to_string(), "server stopping");
                ok()
            })
            .await;
    }
    cancel.cancel_with_cause(Cause::msg("server stopping"));
    group.wait().await.unwrap();
}

// ------------------------------------------------ cancellation and waiting

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn siblings_observe_cancellation_and_wait_returns_after_all_ended() {
    let ended = Arc::new(AtomicUsize::new(0));
    let mut group = TaskGroup::new(&Context::background());
    for i in 0..16u64 {
        let ended = ended.clone();
        group
            .spawn(move |ctx| async move {
                ctx.done().await;
                // Cleanup that takes a while after the cancel was observed.
                tokio::time::sleep(Duration::from_millis(i % 4 * 5)).await;
                ended.fetch_add(1, Ordering::SeqCst);
                ok()
            })
            .await;
    }
    group.spawn(|_ctx| async { Err(Cause::msg("stop")) }).await;
    assert!(group.wait().await.is_err());
    assert_eq!(ended.load(Ordering::SeqCst), 16);
}

#[tokio::test]
async fn task_contexts_are_done_when_wait_returns_and_wait_is_cancel_safe() {
    let (contexts_tx, mut contexts) = mpsc::unbounded_channel();
    let mut group = TaskGroup::new(&Context::background());
    let (release, released) = oneshot::channel::<()>();
    group
        .spawn(move |ctx| async move {
            contexts_tx.send(ctx.clone()).unwrap();
            released.await.ok();
            ok()
        })
        .await;
    // A wait dropped before it is ready leaves the group as it was.
    assert!(
        tokio::time::timeout(Duration::from_millis(10), group.wait())
            .await
            .is_err()
    );
    assert!(!group.context().is_done());
    release.send(()).unwrap();
    group.wait().await.unwrap();
    assert!(contexts.recv().await.unwrap().is_done());
}

// ------------------------------------------------------------------ limit

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_bounds_concurrency() {
    for limit in [1, 3] {
        let now = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let mut group = TaskGroup::new(&Context::background()).limit(limit);
        for _ in 0..24 {
            let (now, max) = (now.clone(), max.clone());
            group
                .spawn(move |_ctx| async move {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    ok()
                })
                .await;
        }
        group.wait().await.unwrap();
        let max = max.load(Ordering::SeqCst);
        assert!(
            max <= limit,
            "{max} tasks ran at once with a limit of {limit}"
        );
    }
}

#[tokio::test]
async fn spawn_waits_for_a_slot_and_a_dropped_spawn_starts_nothing() {
    let mut group = TaskGroup::new(&Context::background()).limit(1);
    let (release, released) = oneshot::channel::<()>();
    group
        .spawn(|_ctx| async move {
            released.await.ok();
            ok()
        })
        .await;
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    // Full: the spawn is pending; dropped, it spawns nothing.
    let pending = group
        .spawn(move |_ctx| async move {
            flag.store(true, Ordering::SeqCst);
            ok()
        })
        .now_or_never();
    assert!(pending.is_none());
    release.send(()).unwrap();
    let started = Instant::now();
    let flag = ran.clone();
    let second = group
        .spawn(move |_ctx| async move {
            flag.store(true, Ordering::SeqCst);
            ok()
        })
        .await; // waits for the first task to end
    assert_eq!(second.index(), 1, "the dropped spawn registered nothing");
    assert!(started.elapsed() < QUIESCENT);
    group.wait().await.unwrap();
    assert!(ran.load(Ordering::SeqCst));
}

// --------------------------------------------------------------- shutdown

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reports_and_aborts_stragglers_after_the_grace() {
    let live = Live::default();
    let cleaned = Arc::new(AtomicUsize::new(0));
    let mut group = TaskGroup::new(&Context::background());
    for _ in 0..3 {
        let (live, cleaned) = (live.clone(), cleaned.clone());
        group
            .spawn(move |ctx| async move {
                let _live = live.enter();
                ctx.done().await;
                assert!(ctx
                    .cause()
                    .unwrap()
                    .downcast_ref::<GroupShutdown>()
                    .is_some());
                tokio::time::sleep(Duration::from_millis(5)).await; // async cleanup
                cleaned.fetch_add(1, Ordering::SeqCst);
                ok()
            })
            .await;
    }
    let stubborn_live = live.clone();
    let stubborn = group
        .spawn(move |_ctx| async move {
            let _live = stubborn_live.enter();
            std::future::pending::<()>().await; // never looks at its context
            ok()
        })
        .await;
    live.settle_at(4).await;
    let started = Instant::now();
    let report = group.shutdown(Duration::from_millis(100)).await;
    assert!(started.elapsed() >= Duration::from_millis(90));
    assert_eq!(report.stragglers, [stubborn]);
    assert_eq!(report.first_error, None);
    assert_eq!(
        cleaned.load(Ordering::SeqCst),
        3,
        "the polite tasks cleaned up"
    );
    assert_eq!(live.count(), 0, "the straggler was aborted and is gone");
}

#[tokio::test]
async fn shutdown_with_zero_grace_aborts_everything_still_running() {
    let live = Live::default();
    let mut group = TaskGroup::new(&Context::background());
    let mut ids = Vec::new();
    for _ in 0..3 {
        let live = live.clone();
        ids.push(
            group
                .spawn(move |ctx| async move {
                    let _live = live.enter();
                    ctx.done().await;
                    tokio::task::yield_now().await; // not reached in time
                    ok()
                })
                .await,
        );
    }
    live.settle_at(3).await;
    let report = group.shutdown(Duration::ZERO).await;
    assert_eq!(report.stragglers, ids);
    assert_eq!(live.count(), 0);
}

#[tokio::test]
async fn shutdown_keeps_an_earlier_error_as_cause_and_reports_it() {
    let mut group = TaskGroup::new(&Context::background());
    let sent = Cause::msg("bad row");
    let want = sent.clone();
    group.spawn(move |_ctx| async move { Err(sent) }).await;
    assert_eq!(group.context().done().await, Error::Canceled);
    let report = group.shutdown(QUIESCENT).await;
    assert!(report.stragglers.is_empty());
    assert_eq!(report.first_error, Some(want.clone()));
    assert_eq!(group.context().cause(), Some(want));
}

// ------------------------------------------------------------------- drop

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_cancels_the_group_and_leaks_no_task() {
    let live = Live::default();
    let (contexts_tx, mut contexts) = mpsc::unbounded_channel();
    let mut group = TaskGroup::new(&Context::background());
    for i in 0..8u32 {
        let (live, contexts_tx) = (live.clone(), contexts_tx.clone());
        group
            .spawn(move |ctx| async move {
                let _live = live.enter();
                contexts_tx.send(ctx.clone()).unwrap();
                if i % 2 == 0 {
                    ctx.done().await; // observes
                } else {
                    std::future::pending::<()>().await; // ignores
                }
                ok()
            })
            .await;
    }
    live.settle_at(8).await;
    let group_ctx = group.context().clone();
    drop(group);
    assert!(group_ctx
        .cause()
        .unwrap()
        .downcast_ref::<GroupShutdown>()
        .is_some());
    drop(contexts_tx);
    while let Some(ctx) = contexts.recv().await {
        assert!(ctx.is_done(), "canceled before the abort");
    }
    live.settle_at(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_grace_lets_tasks_observe_the_cancel_then_aborts_stragglers() {
    let live = Live::default();
    let cleaned = Arc::new(AtomicUsize::new(0));
    let mut group = TaskGroup::new(&Context::background()).drop_grace(Duration::from_millis(200));
    for _ in 0..4 {
        let (live, cleaned) = (live.clone(), cleaned.clone());
        group
            .spawn(move |ctx| async move {
                let _live = live.enter();
                ctx.done().await;
                tokio::time::sleep(Duration::from_millis(5)).await; // async cleanup
                cleaned.fetch_add(1, Ordering::SeqCst);
                ok()
            })
            .await;
    }
    let stubborn_live = live.clone();
    group
        .spawn(move |_ctx| async move {
            let _live = stubborn_live.enter();
            std::future::pending::<()>().await;
            ok()
        })
        .await;
    live.settle_at(5).await;
    let dropped = Instant::now();
    drop(group);
    live.settle_at(0).await;
    assert!(
        dropped.elapsed() >= Duration::from_millis(150),
        "the straggler had its grace"
    );
    assert_eq!(
        cleaned.load(Ordering::SeqCst),
        4,
        "every polite task cleaned up"
    );
}

/// The case: a server drops a request handler's future (client
/// disconnect). Without a drop grace the tasks are canceled, then aborted
/// at their next await; with one, they observe the cancel and clean up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_handler_future_cancels_its_group() {
    for grace in [Duration::ZERO, Duration::from_secs(5)] {
        let live = Live::default();
        let cleaned = Arc::new(AtomicUsize::new(0));
        let (started_tx, mut started) = mpsc::unbounded_channel();
        let (live2, cleaned2) = (live.clone(), cleaned.clone());
        let handler = async move {
            let mut group = TaskGroup::new(&Context::background()).drop_grace(grace);
            for _ in 0..4 {
                let (live, cleaned, started_tx) =
                    (live2.clone(), cleaned2.clone(), started_tx.clone());
                group
                    .spawn(move |ctx| async move {
                        let _live = live.enter();
                        started_tx.send(ctx.clone()).unwrap();
                        ctx.done().await;
                        tokio::task::yield_now().await; // cleanup with an await in it
                        cleaned.fetch_add(1, Ordering::SeqCst);
                        ok()
                    })
                    .await;
            }
            group.wait().await // the client goes away while this waits
        };
        let served = tokio::spawn(handler);
        let mut contexts = Vec::new();
        for _ in 0..4 {
            contexts.push(started.recv().await.unwrap());
        }
        served.abort(); // what the server does on disconnect
        assert!(served.await.unwrap_err().is_cancelled());
        live.settle_at(0).await;
        assert!(contexts.iter().all(|ctx| ctx.is_done()));
        let cleaned = cleaned.load(Ordering::SeqCst);
        if grace.is_zero() {
            assert!(cleaned <= 4); // aborted at their next await
        } else {
            assert_eq!(cleaned, 4, "with a drop grace every task cleaned up");
        }
    }
}

#[test]
fn a_group_dropped_outside_a_runtime_aborts_at_once() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let live = Live::default();
    let live2 = live.clone();
    let group = runtime.block_on(async move {
        let mut group = TaskGroup::new(&Context::background()).drop_grace(QUIESCENT);
        group
            .spawn(move |ctx| async move {
                let _live = live2.enter();
                ctx.done().await;
                ok()
            })
            .await;
        tokio::task::yield_now().await;
        group
    });
    assert_eq!(live.count(), 1);
    drop(group); // no runtime here: no reaper, the task is aborted
    drop(runtime); // and the runtime drops it
    assert_eq!(live.count(), 0);
}

#[test]
fn a_spawn_that_fails_outside_a_runtime_registers_nothing() {
    let mut group = TaskGroup::new(&Context::background());
    let spawned = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let _ = group.try_spawn(|_ctx| async { ok() });
    }));
    assert!(spawned.is_err(), "tokio::spawn outside a runtime panics");
    assert!(format!("{group:?}").contains("running: []"), "{group:?}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let id = group.spawn(|_ctx| async { ok() }).await;
        assert_eq!(id.index(), 1);
        group.wait().await.unwrap();
    });
}

// ---------------------------------------------------------------- panics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_cancels_siblings_and_is_resumed_by_wait() {
    let (causes_tx, mut causes) = mpsc::unbounded_channel();
    let mut group = TaskGroup::new(&Context::background());
    for _ in 0..3 {
        let causes_tx = causes_tx.clone();
        group
            .spawn(move |ctx| async move {
                ctx.done().await;
                causes_tx.send(ctx.cause().unwrap()).unwrap();
                ok()
            })
            .await;
    }
    fn boom() -> Result<(), Cause> {
        panic!("boom")
    }
    let boom = group
        .spawn(|_ctx| async {
            tokio::task::yield_now().await;
            boom()
        })
        .await;
    let resumed = AssertUnwindSafe(group.wait())
        .catch_unwind()
        .await
        .unwrap_err();
    assert_eq!(*resumed.downcast::<&str>().unwrap(), "boom");
    assert_eq!(group.wait().await, Ok(()), "resumed once");
    drop(causes_tx);
    let mut seen = 0;
    while let Some(cause) = causes.recv().await {
        let panicked = cause.downcast_ref::<TaskPanicked>().unwrap();
        assert_eq!(panicked.task(), Some(boom));
        assert_eq!(panicked.message(), Some("boom"));
        seen += 1;
    }
    assert_eq!(seen, 3);
}

#[tokio::test]
async fn a_panic_in_the_task_closure_itself_is_caught() {
    let mut group = TaskGroup::new(&Context::background());
    let sibling = Arc::new(AtomicBool::new(false));
    let flag = sibling.clone();
    group
        .spawn(move |ctx| async move {
            ctx.done().await;
            flag.store(true, Ordering::SeqCst);
            ok()
        })
        .await;
    group
        .spawn(|_ctx| -> std::future::Ready<Result<(), Cause>> { panic!("before the future") })
        .await;
    let resumed = AssertUnwindSafe(group.shutdown(QUIESCENT))
        .catch_unwind()
        .await;
    assert_eq!(
        *resumed.unwrap_err().downcast::<&str>().unwrap(),
        "before the future"
    );
    assert!(sibling.load(Ordering::SeqCst));
}

// ------------------------------------------------------------- many tasks

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tasks_first_error_then_wait() {
    const TASKS: usize = 1000;
    let live = Live::default();
    let observed = Arc::new(AtomicUsize::new(0));
    let mut group = TaskGroup::new(&Context::background());
    for i in 0..TASKS {
        let (live, observed) = (live.clone(), observed.clone());
        group
            .spawn(move |ctx| async move {
                let _live = live.enter();
                if i == TASKS / 2 {
                    return Err(Cause::msg("the middle one failed"));
                }
                ctx.done().await;
                observed.fetch_add(1, Ordering::SeqCst);
                ok()
            })
            .await;
    }
    let err = group.wait().await.unwrap_err();
    assert_eq!(err.to_string(), "the middle one failed");
    assert_eq!(observed.load(Ordering::SeqCst), TASKS - 1);
    assert_eq!(live.count(), 0);
}

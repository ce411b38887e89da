//! [`TaskGroup`]: the task group of `ctxtree::group` for tokio tasks
//! (feature `tokio`), exported as `ctxtree::tokio::TaskGroup`.
//!
//! The tasks live in a tokio [`JoinSet`] owned by the group. Each one is the
//! user's future wrapped so that it registers with the group's tracker (G1),
//! holds its limit permit (G4), gets a child context, and reports how it
//! ended from a drop guard: returned, failed, panicked (every poll runs
//! under `catch_unwind`), or dropped by an abort. So a task's error or panic
//! cancels its siblings the moment it happens, not when someone awaits the
//! set.
//!
//! Invariants, besides G1–G4:
//! - **G5** A task's drop guard reports exactly once, whichever way its
//!   future goes: completed, aborted, or never polled (spawned while the
//!   runtime shuts down). So the running set never keeps a task that no
//!   longer exists, and `shutdown` reports only tasks that were running.
//! - **G6** The `JoinSet` is never dropped with a task that was not told
//!   first: every path that aborts (shutdown, drop, the drop grace's
//!   reaper) cancels the group's context before.
//! - **G7** The grace periods (`shutdown`, the drop grace) are timed with a
//!   ctxtree deadline, not a tokio timer: the group needs only tokio's `rt`
//!   and `sync` features.

use std::fmt;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use ::tokio::runtime::Handle;
use ::tokio::sync::{OwnedSemaphorePermit, Semaphore};
use ::tokio::task::{JoinError, JoinSet};

use crate::context::Context;
use crate::error::Cause;
use crate::group::tracker::{Outcome, Tracker};
use crate::group::{GroupShutdown, ShutdownReport, TaskId};
use crate::handle::CancelHandle;

/// A group of tokio tasks under one context: the first error cancels the
/// siblings, [`wait`](TaskGroup::wait) waits for all of them, a limit
/// bounds how many run at once, and [`shutdown`](TaskGroup::shutdown) ends
/// them with a grace period (Go's `errgroup.WithContext` for tokio; the
/// shared semantics are in [`ctxtree::group`](crate::group)).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use ctxtree::{tokio::TaskGroup, Cause, Context};
///
/// let (request, _end_request) = Context::background().with_cancel();
/// let mut group = TaskGroup::new(&request).limit(8);
/// for shard in 0..100u32 {
///     group
///         .spawn(move |ctx| async move {
///             if shard == 42 {
///                 return Err(Cause::msg("shard 42 is down"));
///             }
///             // Slow work that stops as soon as a sibling fails.
///             let work = tokio::time::sleep(Duration::from_millis(5));
///             ctx.run(work).await.map_err(Cause::from)
///         })
///         .await; // waits while 8 tasks run
/// }
/// let err = group.wait().await.unwrap_err();
/// assert_eq!(err.to_string(), "shard 42 is down");
/// # }
/// ```
///
/// The group is owned by the code that spawns into it (`spawn` takes
/// `&mut self`), so a task cannot spawn siblings into it; a task that fans
/// out further opens a group of its own on its context.
///
/// # Dropping a group
///
/// Dropping a `TaskGroup` (for example a request handler's future dropped
/// by the server when the client goes away) cancels the group's context
/// with cause [`GroupShutdown`] and then aborts the tasks still running. A
/// task is aborted at its next `.await`, so by default it does not get to
/// run code after it saw the cancellation (the problem of a bare `JoinSet`).
/// Two graceful paths:
///
/// - [`shutdown(grace)`](TaskGroup::shutdown), awaited: cancels, gives the
///   tasks `grace` to finish, then aborts the rest and reports them;
/// - [`drop_grace(grace)`](TaskGroup::drop_grace), for drops you do not
///   control: a dropped group hands its tasks to a reaper task on the
///   runtime, which aborts those still running after `grace`.
///
/// Either way no task outlives the group by more than its grace period.
/// A panic held by a dropped group is dropped with it (the panic hook
/// printed it when it happened).
///
/// # Panics in tasks
///
/// A task that panics cancels the group's context with cause
/// [`TaskPanicked`](crate::group::TaskPanicked); the next
/// [`wait`](TaskGroup::wait) or [`shutdown`](TaskGroup::shutdown) resumes
/// the first such panic, with its payload, once every task has ended.
#[must_use = "dropping a TaskGroup cancels and aborts its tasks"]
pub struct TaskGroup {
    tracker: Arc<Tracker>,
    /// The wrapped tasks; finished ones are reaped at each spawn (G5).
    tasks: JoinSet<()>,
    /// One permit per running task when a limit is set (G4).
    slots: Option<Arc<Semaphore>>,
    /// How long a dropped group lets its tasks run before aborting them.
    drop_grace: Duration,
}

impl TaskGroup {
    /// A group whose context is a child of `parent`, with no limit and no
    /// drop grace.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use ctxtree::{tokio::TaskGroup, Context};
    ///
    /// let (server, shutdown_server) = Context::background().with_cancel();
    /// let mut group = TaskGroup::new(&server);
    /// group.spawn(|ctx| async move { ctx.done().await; Ok::<(), ctxtree::Cause>(()) }).await;
    /// shutdown_server.cancel(); // reaches every task of the group
    /// assert_eq!(group.wait().await, Ok(()));
    /// # }
    /// ```
    pub fn new(parent: &Context) -> TaskGroup {
        TaskGroup {
            tracker: Arc::new(Tracker::new(parent)),
            tasks: JoinSet::new(),
            slots: None,
            drop_grace: Duration::ZERO,
        }
    }

    /// At most `limit` tasks run at once: [`spawn`](TaskGroup::spawn) waits
    /// for a slot, [`try_spawn`](TaskGroup::try_spawn) returns `None`
    /// (Go's `SetLimit`). Set it before spawning: tasks spawned earlier do
    /// not count against it. `usize::MAX` means no limit; 0 lets no task
    /// start.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use ctxtree::{tokio::TaskGroup, Context};
    ///
    /// let mut group = TaskGroup::new(&Context::background()).limit(1);
    /// let (release, released) = tokio::sync::oneshot::channel::<()>();
    /// group.spawn(|_ctx| async move { released.await.ok(); Ok::<(), ctxtree::Cause>(()) }).await;
    /// assert!(group.try_spawn(|_ctx| async { Ok::<(), ctxtree::Cause>(()) }).is_none()); // full
    /// release.send(()).unwrap();
    /// group.wait().await.unwrap();
    /// # }
    /// ```
    pub fn limit(mut self, limit: usize) -> TaskGroup {
        self.slots = (limit < Semaphore::MAX_PERMITS).then(|| Arc::new(Semaphore::new(limit)));
        self
    }

    /// When the group is dropped with tasks still running, let them run for
    /// up to `grace` after the cancel, so they can observe it and clean up,
    /// and only then abort them (default: zero, abort at once). The waiting
    /// is done by a reaper task spawned on the current tokio runtime; if
    /// the group is dropped outside one, the tasks are aborted at once.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use ctxtree::{tokio::TaskGroup, Context};
    ///
    /// let (flushed_tx, flushed) = tokio::sync::oneshot::channel();
    /// let mut group = TaskGroup::new(&Context::background()).drop_grace(Duration::from_secs(5));
    /// group
    ///     .spawn(|ctx| async move {
    ///         ctx.done().await;
    ///         flushed_tx.send("flushed").ok(); // cleanup after the cancel
    ///         Ok::<(), ctxtree::Cause>(())
    ///     })
    ///     .await;
    /// drop(group); // e.g. the request handler was dropped
    /// assert_eq!(flushed.await, Ok("flushed"));
    /// # }
    /// ```
    pub fn drop_grace(mut self, grace: Duration) -> TaskGroup {
        self.drop_grace = grace;
        self
    }

    /// The group's context: a child of the parent it was created on, and
    /// the parent of every task's context. It is canceled by the first
    /// error or panic of a task, by [`wait`](TaskGroup::wait), by
    /// [`shutdown`](TaskGroup::shutdown) and when the group is dropped.
    ///
    /// ```
    /// use ctxtree::{group::GroupShutdown, tokio::TaskGroup, Context};
    ///
    /// let group = TaskGroup::new(&Context::background());
    /// let ctx = group.context().clone();
    /// drop(group);
    /// assert!(ctx.cause().unwrap().downcast_ref::<GroupShutdown>().is_some());
    /// ```
    pub fn context(&self) -> &Context {
        self.tracker.context()
    }

    /// Spawns `task(ctx)` as a tokio task, with `ctx` a child of the
    /// group's context (Go's `Group.Go`). With a limit, first waits until
    /// fewer than `limit` tasks run; dropping this future before it is
    /// ready spawns nothing.
    ///
    /// The first task to return `Err` cancels the group's context with that
    /// error as the cause. A task's context is canceled when it ends. A
    /// task spawned after the group's context was canceled still runs, with
    /// a context that is already done (as in Go).
    ///
    /// # Panics
    ///
    /// If called outside a tokio runtime, as `tokio::spawn`. (A panic *in*
    /// the task, also when `task` is called, is caught and resumed by
    /// [`wait`](TaskGroup::wait).)
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use ctxtree::{tokio::TaskGroup, Context};
    ///
    /// let mut group = TaskGroup::new(&Context::background());
    /// let id = group
    ///     .spawn(|_ctx| async { "x1".parse::<u8>().map(drop) }) // any std error type
    ///     .await;
    /// assert_eq!(id.index(), 0);
    /// let err = group.wait().await.unwrap_err();
    /// assert!(err.downcast_ref::<std::num::ParseIntError>().is_some());
    /// # }
    /// ```
    pub async fn spawn<F, Fut, E>(&mut self, task: F) -> TaskId
    where
        F: FnOnce(Context) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<Cause> + 'static,
    {
        let permit = match &self.slots {
            // `acquire_owned` fails only on a closed semaphore; ours never is.
            Some(slots) => slots.clone().acquire_owned().await.ok(),
            None => None,
        };
        self.start(permit, task)
    }

    /// Like [`spawn`](TaskGroup::spawn), but only if the limit leaves a slot
    /// free now; otherwise returns `None` and drops `task` (Go's `TryGo`).
    ///
    /// # Panics
    ///
    /// If called outside a tokio runtime, as `tokio::spawn`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use ctxtree::{tokio::TaskGroup, Context};
    ///
    /// let mut group = TaskGroup::new(&Context::background()).limit(2);
    /// let started = (0..5)
    ///     .filter_map(|_| group.try_spawn(|ctx| async move { ctx.done().await; Ok::<(), ctxtree::Cause>(()) }))
    ///     .count();
    /// assert_eq!(started, 2);
    /// let report = group.shutdown(std::time::Duration::from_secs(5)).await;
    /// assert!(report.stragglers.is_empty());
    /// # }
    /// ```
    #[must_use = "`None` means the task was not started"]
    pub fn try_spawn<F, Fut, E>(&mut self, task: F) -> Option<TaskId>
    where
        F: FnOnce(Context) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<Cause> + 'static,
    {
        let permit = match &self.slots {
            Some(slots) => Some(slots.clone().try_acquire_owned().ok()?),
            None => None,
        };
        Some(self.start(permit, task))
    }

    /// Registers and spawns one task (G1, G5).
    fn start<F, Fut, E>(&mut self, permit: Option<OwnedSemaphorePermit>, task: F) -> TaskId
    where
        F: FnOnce(Context) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<Cause> + 'static,
    {
        self.reap();
        let (ctx, handle) = self.context().with_cancel();
        // Never blocks: the tracker has no limit here, the permit is (G4).
        let id = self.tracker.register();
        let guard = DropGuard {
            tracker: self.tracker.clone(),
            id,
            end: Some((handle, Outcome::Aborted)),
        };
        self.tasks.spawn(async move {
            let mut guard = guard;
            // Lazy: `task` itself is called by the first poll, under the
            // `catch_unwind` below like every later poll.
            let mut future = pin!(async move { task(ctx).await });
            let result = poll_fn(|cx| {
                match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                    Ok(poll) => poll.map(Ok),
                    Err(payload) => Poll::Ready(Err(payload)), // never polled again
                }
            })
            .await;
            guard.set_outcome(match result {
                Ok(Ok(())) => Outcome::Ok,
                Ok(Err(err)) => Outcome::Failed(err.into()),
                Err(payload) => Outcome::Panicked(payload),
            });
            drop(guard); // the task's context ends, then the task leaves the set
            drop(permit); // and only then frees its slot
        });
        id
    }

    /// Takes the results of tasks that have ended without waiting (their
    /// outcome is already recorded; this frees their `JoinSet` entries).
    fn reap(&mut self) {
        while let Some(result) = self.tasks.try_join_next() {
            self.note(result);
        }
    }

    /// Awaits every task in the set.
    async fn join_all(&mut self) {
        while let Some(result) = self.tasks.join_next().await {
            self.note(result);
        }
    }

    fn note(&self, result: Result<(), JoinError>) {
        // Tasks catch their own panics; a panic here came from dropping a
        // task's output or future (a `Drop` that panicked).
        if let Err(err) = result {
            if err.is_panic() {
                self.tracker.hold_panic(err.into_panic());
            }
        }
    }

    /// Waits until every task spawned so far has ended, then cancels the
    /// group's context and returns the first error, if any (Go's `Wait`).
    /// Tasks spawned afterwards start with a context that is already done.
    ///
    /// Cancel-safe: dropping this future before it is ready leaves the
    /// group as it was.
    ///
    /// # Panics
    ///
    /// Resumes the first panic of a task not resumed yet, once every task
    /// has ended.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use ctxtree::{tokio::TaskGroup, Cause, Context};
    ///
    /// let refused = Cause::msg("connection refused");
    /// let mut group = TaskGroup::new(&Context::background());
    /// let sent = refused.clone();
    /// group.spawn(move |_ctx| async move { Err(sent) }).await;
    /// let (cause_tx, sibling_cause) = tokio::sync::oneshot::channel();
    /// group
    ///     .spawn(move |ctx| async move {
    ///         ctx.done().await; // stopped by the failure
    ///         cause_tx.send(ctx.cause()).ok();
    ///         Ok::<(), Cause>(())
    ///     })
    ///     .await;
    /// assert_eq!(group.wait().await, Err(refused.clone()));
    /// assert_eq!(sibling_cause.await.unwrap(), Some(refused)); // the same cause
    /// # }
    /// ```
    pub async fn wait(&mut self) -> Result<(), Cause> {
        self.join_all().await;
        self.tracker.end_wait()
    }

    /// Cancels the group's context with cause [`GroupShutdown`] (unless it
    /// is already canceled), gives the tasks up to `grace` to end, then
    /// aborts those still running and waits until they are gone. Reports
    /// the first error and the tasks that had to be aborted.
    ///
    /// # Panics
    ///
    /// Resumes the first panic of a task not resumed yet, once every task
    /// has ended.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use ctxtree::{tokio::TaskGroup, Context};
    ///
    /// let mut group = TaskGroup::new(&Context::background());
    /// group
    ///     .spawn(|ctx| async move {
    ///         ctx.done().await; // observes the shutdown and returns
    ///         Ok::<(), ctxtree::Cause>(())
    ///     })
    ///     .await;
    /// let stuck = group
    ///     .spawn(|_ctx| async {
    ///         std::future::pending::<()>().await; // never looks at its context
    ///         Ok::<(), ctxtree::Cause>(())
    ///     })
    ///     .await;
    /// let report = group.shutdown(Duration::from_millis(20)).await;
    /// assert_eq!(report.stragglers, [stuck]); // aborted
    /// assert_eq!(report.first_error, None);
    /// # }
    /// ```
    pub async fn shutdown(&mut self, grace: Duration) -> ShutdownReport {
        self.tracker.cancel(Some(GroupShutdown.into()));
        let (timer, _disarm) = Context::background().with_timeout(grace);
        // Err: the grace period ended first; the stragglers are read next.
        let _ = timer.run(self.join_all()).await;
        let stragglers = self.tracker.running();
        self.tasks.abort_all();
        self.join_all().await;
        let report = ShutdownReport {
            first_error: self.tracker.first_error(),
            stragglers,
        };
        self.tracker.resume_panic();
        report
    }
}

impl Drop for TaskGroup {
    fn drop(&mut self) {
        // G6: tell the tasks before anything aborts them.
        self.tracker.cancel(Some(GroupShutdown.into()));
        if self.tasks.is_empty() || self.drop_grace.is_zero() {
            return; // the `JoinSet`'s drop aborts what is left
        }
        let Ok(runtime) = Handle::try_current() else {
            return;
        };
        let mut tasks = std::mem::take(&mut self.tasks);
        let grace = self.drop_grace;
        runtime.spawn(async move {
            let (timer, _disarm) = Context::background().with_timeout(grace);
            let join_all = async { while tasks.join_next().await.is_some() {} };
            let _ = timer.run(join_all).await;
            tasks.shutdown().await; // aborts the stragglers, awaits them
        });
    }
}

impl fmt::Debug for TaskGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGroup")
            .field("context", self.context())
            .field("running", &self.tracker.running())
            .field("drop_grace", &self.drop_grace)
            .finish_non_exhaustive()
    }
}

/// Reports how a task ended, whichever way its future goes (G5).
struct DropGuard {
    tracker: Arc<Tracker>,
    id: TaskId,
    /// The task's cancel handle and outcome; taken by `drop`.
    end: Option<(CancelHandle, Outcome)>,
}

impl DropGuard {
    fn set_outcome(&mut self, outcome: Outcome) {
        if let Some((_, slot)) = &mut self.end {
            *slot = outcome;
        }
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if let Some((handle, outcome)) = self.end.take() {
            self.tracker.end_task(self.id, handle, outcome);
        }
    }
}

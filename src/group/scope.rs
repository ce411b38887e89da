//! The thread group: [`scope`] opens a group on a context and runs a body
//! that spawns tasks on scoped threads ([`std::thread::scope`]), so tasks
//! may borrow from the caller and no thread outlives the call.
//!
//! Each task runs on its own thread, under `catch_unwind`, with a child
//! context of the group's; the shared [`Tracker`] records how it ended (G1,
//! G2). A task's `CancelHandle` is dropped, ending its context, before the
//! task leaves the running set, so once a wait returns every task's context
//! is done.

use std::fmt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::tracker::{Outcome, Tracker};
use super::{GroupShutdown, ShutdownReport, TaskId, TaskPanicked};
use crate::context::Context;
use crate::error::Cause;

/// Opens a task group on `parent` and runs `body` with it; returns once
/// every task has ended (Go's `errgroup.WithContext` followed by `Wait`,
/// as one call).
///
/// Returns `Ok` with the body's value if no task failed, or `Err` with the
/// first error a task returned (the cause its siblings' contexts saw). At
/// the end the group's context is canceled.
///
/// Tasks are scoped threads: they may borrow anything that outlives the
/// call, and every one of them has been joined when `scope` returns, also
/// when the body or a task panics.
///
/// # Panics
///
/// Resumes the first panic of a task that no earlier [`Scope::wait`] or
/// [`Scope::shutdown`] resumed, once every task has ended. If the body
/// itself panics, the group's context is canceled (cause [`TaskPanicked`]),
/// every task is joined, and the body's panic is resumed.
///
/// ```
/// use ctxtree::{group, Cause, Context, Error};
///
/// let (request, _end_request) = Context::background().with_cancel();
/// let pages = ["/a", "/b", "/missing"];
/// let result = group::scope(&request, |g| {
///     for page in pages {
///         g.spawn(move |ctx| {
///             if page == "/missing" {
///                 return Err(Cause::msg(format!("{page}: not found")));
///             }
///             // A sibling failed: this task's context says why.
///             assert_eq!(ctx.wait(), Error::Canceled);
///             assert_eq!(ctx.cause().unwrap().to_string(), "/missing: not found");
///             Ok(())
///         });
///     }
/// });
/// assert_eq!(result.unwrap_err().to_string(), "/missing: not found");
/// assert!(!request.is_done()); // the group's failure stays in the group
/// ```
pub fn scope<'env, F, R>(parent: &Context, body: F) -> Result<R, Cause>
where
    F: for<'scope> FnOnce(&Scope<'scope, 'env>) -> R,
{
    let tracker = Arc::new(Tracker::new(parent));
    let shared = tracker.clone();
    // Owns what it captures, so the threads' scope is the caller's `'env`.
    let body_result = thread::scope(move |threads| {
        let group = Scope {
            threads,
            tracker: shared,
        };
        let result = catch_unwind(AssertUnwindSafe(|| body(&group)));
        if let Err(payload) = &result {
            // Stop the tasks, or joining them below could wait forever.
            let cause = TaskPanicked::new(None, &**payload);
            group.tracker.cancel(Some(cause.into()));
        }
        result
        // `thread::scope` joins every task's thread here.
    });
    match body_result {
        Ok(value) => tracker.end_wait().map(|()| value),
        Err(payload) => resume_unwind(payload),
    }
}

/// A task group of scoped threads, given to the body of [`scope`].
///
/// Cloning a `Scope` gives another handle to the same group, so that a task
/// can spawn siblings.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use ctxtree::{group, Context};
///
/// let visited = AtomicUsize::new(0);
/// group::scope(&Context::background(), |g| {
///     let spawner = g.clone();
///     let visited = &visited;
///     g.spawn(move |_ctx| {
///         for _ in 0..3 {
///             spawner.spawn(move |_ctx| {
///                 visited.fetch_add(1, Ordering::Relaxed);
///                 Ok::<(), ctxtree::Cause>(())
///             });
///         }
///         Ok::<(), ctxtree::Cause>(())
///     });
/// })
/// .unwrap();
/// assert_eq!(visited.load(Ordering::Relaxed), 3);
/// ```
pub struct Scope<'scope, 'env> {
    threads: &'scope thread::Scope<'scope, 'env>,
    tracker: Arc<Tracker>,
}

impl<'scope> Scope<'scope, '_> {
    /// The group's context: a child of the parent the scope was opened on,
    /// and the parent of every task's context. It is canceled by the first
    /// error or panic of a task, by [`shutdown`](Scope::shutdown), by
    /// [`wait`](Scope::wait) and at the end of the scope.
    ///
    /// ```
    /// use ctxtree::{group, Context};
    ///
    /// let (parent, cancel_parent) = Context::background().with_cancel();
    /// group::scope(&parent, |g| {
    ///     assert!(!g.context().is_done());
    ///     cancel_parent.cancel(); // reaches the group and its tasks
    ///     assert!(g.context().is_done());
    /// })
    /// .unwrap();
    /// ```
    pub fn context(&self) -> &Context {
        self.tracker.context()
    }

    /// Runs `task` on a new scoped thread with a child of the group's
    /// context (Go's `Group.Go`). If a limit is set and reached, first
    /// blocks until a running task ends (or the limit is raised).
    ///
    /// The first task to return `Err` cancels the group's context with that
    /// error as the cause. The task's own context is canceled when it
    /// returns. A task spawned after the group's context was canceled still
    /// runs, with a context that is already done (as in Go).
    ///
    /// # Panics
    ///
    /// If the operating system fails to create a thread, as
    /// [`std::thread::Scope::spawn`] does. (A panic *in* the task is caught;
    /// see [`scope`].)
    ///
    /// ```
    /// use std::num::ParseIntError;
    /// use ctxtree::{group, Context};
    ///
    /// let inputs = ["1", "2", "x"];
    /// let err = group::scope(&Context::background(), |g| {
    ///     for input in inputs {
    ///         g.spawn(move |_ctx| input.parse::<u8>().map(drop));
    ///     }
    /// })
    /// .unwrap_err();
    /// assert!(err.downcast_ref::<ParseIntError>().is_some());
    /// ```
    pub fn spawn<F, E>(&self, task: F) -> TaskId
    where
        F: FnOnce(Context) -> Result<(), E> + Send + 'scope,
        E: Into<Cause>,
    {
        let id = self.tracker.register();
        self.start(id, task);
        id
    }

    /// Like [`spawn`](Scope::spawn), but only if the limit leaves a slot
    /// free now; otherwise returns `None` and drops `task` (Go's `TryGo`).
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use ctxtree::{group, Context};
    ///
    /// group::scope(&Context::background(), |g| {
    ///     g.set_limit(1);
    ///     let (release, released) = mpsc::channel::<()>();
    ///     let busy = g.try_spawn(move |_ctx| {
    ///         released.recv().ok();
    ///         Ok::<(), ctxtree::Cause>(())
    ///     });
    ///     assert!(busy.is_some());
    ///     assert!(g.try_spawn(|_ctx| Ok::<(), ctxtree::Cause>(())).is_none()); // full
    ///     release.send(()).unwrap();
    ///     g.wait().unwrap();
    ///     assert!(g.try_spawn(|_ctx| Ok::<(), ctxtree::Cause>(())).is_some());
    /// })
    /// .unwrap();
    /// ```
    #[must_use = "`None` means the task was not started"]
    pub fn try_spawn<F, E>(&self, task: F) -> Option<TaskId>
    where
        F: FnOnce(Context) -> Result<(), E> + Send + 'scope,
        E: Into<Cause>,
    {
        let id = self.tracker.try_register()?;
        self.start(id, task);
        Some(id)
    }

    /// Starts registered task `id` on a scoped thread.
    fn start<F, E>(&self, id: TaskId, task: F)
    where
        F: FnOnce(Context) -> Result<(), E> + Send + 'scope,
        E: Into<Cause>,
    {
        let (ctx, handle) = self.context().with_cancel();
        let tracker = self.tracker.clone();
        let run = move || {
            let outcome = match catch_unwind(AssertUnwindSafe(move || task(ctx))) {
                Ok(Ok(())) => Outcome::Ok,
                Ok(Err(err)) => Outcome::Failed(err.into()),
                Err(payload) => Outcome::Panicked(payload),
            };
            tracker.end_task(id, handle, outcome);
        };
        if let Err(err) = thread::Builder::new().spawn_scoped(self.threads, run) {
            // The closure (and the task) were dropped unrun: unregister.
            self.tracker.finish(id, Outcome::Aborted);
            panic!("failed to spawn a thread for {id}: {err}");
        }
    }

    /// Bounds how many tasks run at once: from now on a
    /// [`spawn`](Scope::spawn) waits while `limit` tasks are running, and a
    /// [`try_spawn`](Scope::try_spawn) returns `None` (Go's `SetLimit`).
    /// `usize::MAX`, the default, means no limit; 0 blocks every spawn until
    /// the limit is raised. Unlike Go's, it may change while tasks run: a
    /// lower limit only delays new spawns.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use ctxtree::{group, Context};
    ///
    /// let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
    /// group::scope(&Context::background(), |g| {
    ///     g.set_limit(2);
    ///     for _ in 0..8 {
    ///         g.spawn(|_ctx| {
    ///             let now = running.fetch_add(1, Ordering::SeqCst) + 1;
    ///             most.fetch_max(now, Ordering::SeqCst);
    ///             std::thread::sleep(std::time::Duration::from_millis(1));
    ///             running.fetch_sub(1, Ordering::SeqCst);
    ///             Ok::<(), ctxtree::Cause>(())
    ///         });
    ///     }
    /// })
    /// .unwrap();
    /// assert!(most.load(Ordering::SeqCst) <= 2);
    /// ```
    pub fn set_limit(&self, limit: usize) {
        self.tracker.set_limit(limit);
    }

    /// Blocks until every task spawned so far has ended, then cancels the
    /// group's context and returns the first error, if any (Go's `Wait`).
    /// Tasks spawned afterwards start with a context that is already done;
    /// for work in phases, open a nested [`scope`] per phase.
    ///
    /// Call it from the scope's body, not from a task: a task waiting for
    /// itself never returns.
    ///
    /// # Panics
    ///
    /// Resumes the first panic of a task not resumed yet.
    ///
    /// ```
    /// use ctxtree::{group, Cause, Context};
    ///
    /// group::scope(&Context::background(), |g| {
    ///     let timeout = Cause::msg("upstream timed out");
    ///     let sent = timeout.clone();
    ///     g.spawn(move |_ctx| Err(sent));
    ///     g.spawn(|_ctx| Ok::<(), Cause>(()));
    ///     assert_eq!(g.wait(), Err(timeout.clone())); // the same cause, by identity
    ///     assert_eq!(g.context().cause(), Some(timeout));
    /// })
    /// .unwrap_err();
    /// ```
    pub fn wait(&self) -> Result<(), Cause> {
        self.tracker.wait_idle(None);
        self.tracker.end_wait()
    }

    /// Cancels the group's context with cause [`GroupShutdown`] (unless it
    /// is already canceled), waits up to `grace` for the tasks to end, and
    /// reports the first error and the tasks still running then.
    ///
    /// Threads cannot be aborted: the stragglers keep running after this
    /// returns, and the end of the scope still joins them (a task that never
    /// checks its context keeps the scope open). Tasks spawned afterwards
    /// start with a context that is already done. Called from a task, it
    /// reports that task among the stragglers.
    ///
    /// # Panics
    ///
    /// Resumes the first panic of a task not resumed yet, after the grace
    /// wait (the stragglers are then joined as the panic leaves the scope).
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use std::time::Duration;
    /// use ctxtree::{group, Context};
    ///
    /// group::scope(&Context::background(), |g| {
    ///     g.spawn(|ctx| {
    ///         ctx.wait(); // observes the cancel: ends in time
    ///         Ok::<(), ctxtree::Cause>(())
    ///     });
    ///     let (release, released) = mpsc::channel::<()>();
    ///     let stubborn = g.spawn(move |_ctx| {
    ///         released.recv().ok(); // does not look at its context
    ///         Ok::<(), ctxtree::Cause>(())
    ///     });
    ///     let report = g.shutdown(Duration::from_millis(50));
    ///     assert_eq!(report.stragglers, [stubborn]);
    ///     release.send(()).unwrap(); // or the scope would wait for it forever
    /// })
    /// .unwrap();
    /// ```
    pub fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.tracker.cancel(Some(GroupShutdown.into()));
        self.tracker.wait_idle(Instant::now().checked_add(grace));
        let report = ShutdownReport {
            first_error: self.tracker.first_error(),
            stragglers: self.tracker.running(),
        };
        self.tracker.resume_panic();
        report
    }
}

impl Clone for Scope<'_, '_> {
    fn clone(&self) -> Self {
        Scope {
            threads: self.threads,
            tracker: self.tracker.clone(),
        }
    }
}

impl fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("context", self.context())
            .field("running", &self.tracker.running())
            .finish_non_exhaustive()
    }
}

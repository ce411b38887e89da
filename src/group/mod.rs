//! Task groups: spawn subtasks under one context, cancel the siblings on the
//! first failure, wait for all of them (Go's `errgroup.WithContext`, with
//! structured ends: nothing outlives the group).
//!
//! Two groups share these semantics and the types of this module:
//! [`scope`] for threads (built on [`std::thread::scope`]; no feature) and
//! `ctxtree::tokio::TaskGroup` for tokio tasks (feature `tokio`).
//!
//! - **Contexts.** The group has its own context, a child of the parent it
//!   was opened on; each task gets a child of the group's context, canceled
//!   when the task ends. Canceling the parent reaches every task.
//! - **First error.** A task returns `Result<(), E>` for any `E` that
//!   converts into a [`Cause`] (every `std::error::Error + Send + Sync`, or a
//!   `Cause` itself; tasks of one group may use different error types). The
//!   first `Err` cancels the group's context with that error as the cause:
//!   the siblings' contexts report it from [`Context::cause`], and the
//!   group's `wait` returns the same `Cause` (equal by identity).
//! - **Wait.** `wait` returns once every task spawned so far has ended, with
//!   the first error; then, as Go's `Wait`, it cancels the group's context.
//!   The end of a [`scope`] is such a wait.
//! - **Limit.** With a limit of `n`, at most `n` tasks run at once: `spawn`
//!   waits for a slot, `try_spawn` returns `None` when there is none.
//! - **Shutdown.** `shutdown(grace)` cancels the group's context with cause
//!   [`GroupShutdown`], waits up to `grace` for the tasks to end, and
//!   reports in a [`ShutdownReport`] which ones were still running. Tokio
//!   tasks still running are then aborted; threads cannot be aborted, so
//!   the scope still joins them when it ends.
//! - **Panics.** A panic in a task is caught: it cancels the group's
//!   context with cause [`TaskPanicked`], and the first panic is resumed,
//!   with its original payload, by the first `wait`, `shutdown` or scope end
//!   after it (the panic hook has already printed it when it happened).
//!
//! ```
//! use ctxtree::{group, Cause, Context};
//!
//! let (request, _end) = Context::background().with_cancel();
//! let mut replies = [0u32; 3];
//! let result = group::scope(&request, |g| {
//!     for (i, reply) in replies.iter_mut().enumerate() {
//!         g.spawn(move |ctx| {
//!             if ctx.is_done() {
//!                 return Err(Cause::msg("request ended"));
//!             }
//!             *reply = 10 * i as u32; // tasks may borrow from the caller
//!             Ok(())
//!         });
//!     }
//! });
//! assert!(result.is_ok());
//! assert_eq!(replies, [0, 10, 20]);
//! ```
//!
//! The group's own bookkeeping (the running set, the first error) sits
//! behind a mutex taken once when a task starts and once when it ends; the
//! contexts themselves stay lock-free.
//!
//! Differences from Go's `errgroup`: there is no zero group without a
//! context (open the group on [`Context::background`]); a panic is resumed
//! by `wait` instead of crashing the process (Go tried this and reverted it
//! because a `Wait` that is never called hides the panic; here a scope always
//! ends with a wait, and an async group that is dropped without one still
//! had its panic printed by the hook); and the limit may change at any time.
//!
//! Invariants (both groups):
//! - **G1** A task is registered (has a [`TaskId`] in the group's running
//!   set) from its `spawn` until its function has returned, panicked, or
//!   (tokio) its future was dropped by an abort; a drop guard removes it
//!   exactly once. `wait` returns only once the set is empty.
//! - **G2** The first error is recorded under the group's lock and the
//!   group's context is canceled with that same `Cause` *before* the task
//!   leaves the running set (Go's order: `cancel`, then `Done`), so a `wait`
//!   that returns has seen every cancel its tasks made.
//! - **G3** No lock is held while a context is canceled: a cancel runs
//!   `after_func` functions, which may use the group. A panic resumed by such
//!   a cancel is held like a task's panic.
//! - **G4** At most `limit` tasks are registered at once (threads: checked
//!   under the lock; tokio: a semaphore permit held by the task's future).

use std::any::Any;
use std::error::Error as StdError;
use std::fmt;

use crate::error::Cause;
#[cfg(doc)]
use crate::Context;

mod scope;
pub(crate) mod tracker;

pub use scope::{scope, Scope};

/// Which task of a group: its place in spawn order, from 0. Returned by
/// `spawn` and listed in a [`ShutdownReport`].
///
/// ```
/// use ctxtree::{group, Context};
///
/// group::scope(&Context::background(), |g| {
///     let first = g.spawn(|_ctx| Ok::<(), ctxtree::Cause>(()));
///     let second = g.spawn(|_ctx| Ok::<(), ctxtree::Cause>(()));
///     assert_eq!((first.index(), second.index()), (0, 1));
///     assert!(first < second);
///     assert_eq!(second.to_string(), "task 1");
/// })
/// .unwrap();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(u64);

impl TaskId {
    pub(crate) fn new(index: u64) -> TaskId {
        TaskId(index)
    }

    /// The task's place in its group's spawn order, from 0.
    ///
    /// ```
    /// let ids: Vec<u64> = ctxtree::group::scope(&ctxtree::Context::background(), |g| {
    ///     (0..3).map(|_| g.spawn(|_ctx| Ok::<(), ctxtree::Cause>(())).index()).collect()
    /// })
    /// .unwrap();
    /// assert_eq!(ids, [0, 1, 2]);
    /// ```
    pub fn index(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {}", self.0)
    }
}

/// What `shutdown(grace)` found: the group's first error, and the tasks
/// still running when the grace period ended.
///
/// For a thread [`Scope`] the stragglers are still running when the report
/// is returned (a thread cannot be aborted; the scope joins it when it
/// ends). For a tokio `TaskGroup` they have been aborted, and had ended, by
/// then.
///
/// ```
/// use std::time::Duration;
/// use ctxtree::{group, Context};
///
/// group::scope(&Context::background(), |g| {
///     g.spawn(|ctx| {
///         ctx.wait(); // observes the shutdown's cancel
///         Ok::<(), ctxtree::Cause>(())
///     });
///     let report = g.shutdown(Duration::from_secs(5));
///     assert!(report.stragglers.is_empty());
///     assert_eq!(report.first_error, None);
/// })
/// .unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// The first error a task returned, if any (the same `Cause` that `wait`
    /// returns).
    pub first_error: Option<Cause>,
    /// The tasks that had not ended when the grace period was over, in
    /// spawn order.
    pub stragglers: Vec<TaskId>,
}

/// The cause a group's context is canceled with by `shutdown`, and by
/// dropping a tokio `TaskGroup`.
///
/// ```
/// use std::time::Duration;
/// use ctxtree::{group::{self, GroupShutdown}, Context};
///
/// group::scope(&Context::background(), |g| {
///     g.spawn(|ctx| {
///         ctx.wait();
///         assert!(ctx.cause().unwrap().downcast_ref::<GroupShutdown>().is_some());
///         Ok::<(), ctxtree::Cause>(())
///     });
///     g.shutdown(Duration::from_secs(5));
/// })
/// .unwrap();
/// assert_eq!(GroupShutdown.to_string(), "task group shut down");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GroupShutdown;

impl fmt::Display for GroupShutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task group shut down")
    }
}

impl StdError for GroupShutdown {}

/// The cause a group's context is canceled with when one of its tasks (or a
/// scope's own body) panics. The panic itself is resumed by the group's
/// `wait`, `shutdown` or scope end; this cause tells the siblings why they
/// were stopped.
///
/// ```
/// use std::panic::{catch_unwind, AssertUnwindSafe};
/// use ctxtree::{group::{self, TaskPanicked}, Context};
///
/// let (seen_tx, seen) = std::sync::mpsc::channel();
/// let resumed = catch_unwind(AssertUnwindSafe(|| {
///     group::scope(&Context::background(), |g| {
///         g.spawn(move |ctx| {
///             ctx.wait();
///             seen_tx.send(ctx.cause().unwrap()).unwrap();
///             Ok::<(), ctxtree::Cause>(())
///         });
///         g.spawn(|_ctx| -> Result<(), ctxtree::Cause> { panic!("bad input") });
///     })
/// }));
/// assert_eq!(*resumed.unwrap_err().downcast::<&str>().unwrap(), "bad input");
/// let cause = seen.recv().unwrap();
/// let panicked = cause.downcast_ref::<TaskPanicked>().unwrap();
/// assert_eq!(panicked.task().map(|id| id.index()), Some(1));
/// assert_eq!(panicked.message(), Some("bad input"));
/// assert_eq!(cause.to_string(), "task 1 panicked: bad input");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskPanicked {
    task: Option<TaskId>,
    message: Option<String>,
}

impl TaskPanicked {
    /// `task` is `None` for a scope's own body.
    pub(crate) fn new(task: Option<TaskId>, payload: &(dyn Any + Send)) -> TaskPanicked {
        let message = payload
            .downcast_ref::<&'static str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned());
        TaskPanicked { task, message }
    }

    /// The task that panicked; `None` if it was the body of a [`scope`].
    ///
    /// ```
    /// # use std::panic::{catch_unwind, AssertUnwindSafe};
    /// use ctxtree::{group::{self, TaskPanicked}, Context};
    ///
    /// let (cause_tx, cause_rx) = std::sync::mpsc::channel();
    /// let _ = catch_unwind(AssertUnwindSafe(|| {
    ///     group::scope(&Context::background(), |g| {
    ///         g.spawn(move |ctx| {
    ///             ctx.wait();
    ///             cause_tx.send(ctx.cause().unwrap()).unwrap();
    ///             Ok::<(), ctxtree::Cause>(())
    ///         });
    ///         panic!("the body gave up"); // the scope cancels its tasks, then resumes this
    ///     })
    /// }));
    /// let cause = cause_rx.recv().unwrap();
    /// assert_eq!(cause.downcast_ref::<TaskPanicked>().unwrap().task(), None);
    /// assert_eq!(cause.to_string(), "the scope's body panicked: the body gave up");
    /// ```
    pub fn task(&self) -> Option<TaskId> {
        self.task
    }

    /// The panic's message, if its payload was a string (as `panic!` with a
    /// message makes it).
    ///
    /// ```
    /// # use std::panic::{catch_unwind, AssertUnwindSafe};
    /// use ctxtree::{group::{self, TaskPanicked}, Context};
    ///
    /// let (cause_tx, cause_rx) = std::sync::mpsc::channel();
    /// let _ = catch_unwind(AssertUnwindSafe(|| {
    ///     group::scope(&Context::background(), |g| {
    ///         g.spawn(move |ctx| {
    ///             ctx.wait();
    ///             cause_tx.send(ctx.cause().unwrap()).unwrap();
    ///             Ok::<(), ctxtree::Cause>(())
    ///         });
    ///         g.spawn(|_ctx| -> Result<(), ctxtree::Cause> { std::panic::panic_any(7u8) });
    ///     })
    /// }));
    /// let cause = cause_rx.recv().unwrap();
    /// assert_eq!(cause.downcast_ref::<TaskPanicked>().unwrap().message(), None); // not a string
    /// assert_eq!(cause.to_string(), "task 1 panicked");
    /// ```
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }
}

impl fmt::Display for TaskPanicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.task {
            Some(task) => write!(f, "{task} panicked")?,
            None => f.write_str("the scope's body panicked")?,
        }
        match &self.message {
            Some(message) => write!(f, ": {message}"),
            None => Ok(()),
        }
    }
}

impl StdError for TaskPanicked {}

//! The handles that cancel a context: `CancelHandle` (cancels when dropped,
//! Go's `CancelFunc` with RAII) and `Canceler` (a shareable handle that
//! cancels only when asked, like tokio-util's `CancellationToken`).

use std::mem::ManuallyDrop;

use crate::error::{Cause, Error};
use crate::tree::node::{self, NodeRef};
use crate::tree::state::How;

/// Cancels its context: explicitly with [`cancel`](CancelHandle::cancel) or
/// [`cancel_with_cause`](CancelHandle::cancel_with_cause), or when dropped
/// (Go's `CancelFunc`, with RAII replacing `defer cancel()`).
///
/// Keep the handle alive for as long as the context should live: dropping it
/// at once cancels the context immediately.
///
/// # The `let (ctx, _)` trap
///
/// `_` is not a binding: `let (ctx, _) = parent.with_timeout(d);` drops the
/// handle at the end of the statement, so `ctx` is already canceled on the
/// next line. Bind it to a name that starts with an underscore instead,
/// which keeps it to the end of the scope. Neither rustc nor clippy can see
/// this: `#[must_use]` (on the handle and on every `with_*` derivation) only
/// catches a result that is not used at all, such as a bare
/// `parent.with_cancel();`, and a tuple destructured with `_` counts as used.
/// The alternative, returning a guard that owns the context, would cost every
/// call site a `.context()` and still not stop `let _ = ...`.
///
/// ```
/// use std::time::Duration;
/// use ctxtree::Context;
///
/// let (trap, _) = Context::background().with_timeout(Duration::from_secs(5));
/// assert!(trap.is_done()); // the handle is gone already
///
/// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(5));
/// assert!(!ctx.is_done()); // `_cancel` lives to the end of the scope
/// ```
///
/// ```
/// let (ctx, handle) = ctxtree::Context::background().with_cancel();
/// {
///     let _guard = handle; // canceled at the end of this scope
/// }
/// assert!(ctx.is_done());
/// ```
#[must_use = "dropping a CancelHandle cancels its context at once"]
pub struct CancelHandle {
    pub(crate) node: NodeRef,
}

impl CancelHandle {
    /// Cancels the context and everything derived from it, with
    /// [`Error::Canceled`] as err and cause. Does nothing if the context is
    /// already canceled (the first cancel wins). When it returns, every
    /// descendant reports [`Context::is_done`](crate::Context::is_done).
    ///
    /// Waiting futures are woken on this thread. If a `Waker` panics, the
    /// cancel still completes — every other waiter is woken and the whole
    /// subtree canceled — and then the first such panic is resumed here
    /// (unless this thread is already unwinding, e.g. a handle dropped during
    /// a panic, in which case it is dropped).
    ///
    /// The [`after_func`](crate::Context::after_func) functions this cancel takes
    /// run on this thread before it returns, with those of any cancel they
    /// make. Called from inside an `after_func` function, it returns once
    /// the subtree is canceled, and its functions run after the current one
    /// returns (so chains of any length use constant stack); a panic is then
    /// resumed by the outermost cancel.
    ///
    /// ```
    /// use ctxtree::{Cause, Context, Error};
    ///
    /// let (job, cancel) = Context::background().with_cancel();
    /// let (step, _step_handle) = job.with_cancel();
    /// cancel.cancel();
    /// assert!(step.is_done()); // the whole subtree, before `cancel` returned
    /// assert_eq!(step.err(), Some(Error::Canceled));
    /// cancel.cancel_with_cause(Cause::msg("too late")); // the first cancel won
    /// assert_eq!(step.cause().unwrap().as_context_error(), Some(Error::Canceled));
    /// ```
    pub fn cancel(&self) {
        node::cancel(&self.node, Error::Canceled, None, How::Cancel);
    }

    /// Like [`cancel`](CancelHandle::cancel), recording `cause` as the
    /// context's [`Context::cause`](crate::Context::cause) (Go's `WithCancelCause`).
    ///
    /// ```
    /// use ctxtree::{Cause, Context, Error};
    ///
    /// let (server, shutdown) = Context::background().with_cancel();
    /// let (request, _done) = server.with_cancel();
    /// shutdown.cancel_with_cause(Cause::msg("SIGTERM"));
    /// assert_eq!(request.err(), Some(Error::Canceled)); // the err stays `Canceled`
    /// assert_eq!(request.cause().unwrap().to_string(), "SIGTERM"); // the why
    /// ```
    pub fn cancel_with_cause(&self, cause: impl Into<Cause>) {
        node::cancel(&self.node, Error::Canceled, Some(cause.into()), How::Cancel);
    }

    /// Cancels like [`cancel_with_cause`](CancelHandle::cancel_with_cause),
    /// recording `how` as the origin's kind (S4): for the integrations that
    /// cancel on someone else's behalf (a task group, the tower layer).
    pub(crate) fn cancel_as(&self, how: How, cause: Option<Cause>) {
        node::cancel(&self.node, Error::Canceled, cause, how);
    }

    /// True once the context is canceled (by this handle or an ancestor).
    ///
    /// ```
    /// let (parent, cancel_parent) = ctxtree::Context::background().with_cancel();
    /// let (_child, child_handle) = parent.with_cancel();
    /// assert!(!child_handle.is_canceled());
    /// cancel_parent.cancel();
    /// assert!(child_handle.is_canceled()); // by its ancestor
    /// ```
    #[inline]
    pub fn is_canceled(&self) -> bool {
        self.node.err().is_some()
    }
}

impl CancelHandle {
    /// Gives up cancel-on-drop: returns a [`Canceler`] for the same context
    /// that cancels only when asked, and can be cloned and shared (tokio-util's
    /// `DropGuard::disarm`). The context is not canceled by this call.
    ///
    /// A context whose every `Canceler` is dropped without a cancel stays
    /// live, and registered with its parent, until the parent ends or its
    /// deadline passes — as in Go when a `CancelFunc` is never called.
    ///
    /// ```
    /// let (ctx, handle) = ctxtree::Context::background().with_cancel();
    /// let canceler = handle.disarm();
    /// drop(canceler.clone());
    /// assert!(!ctx.is_done()); // dropping a Canceler cancels nothing
    /// canceler.cancel();
    /// assert!(ctx.is_done());
    /// ```
    pub fn disarm(self) -> Canceler {
        let this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so its `node` is moved out
        // exactly once and the handle's `Drop` (the cancel) never runs.
        let node = unsafe { std::ptr::read(&this.node) };
        Canceler { node }
    }
}

impl Drop for CancelHandle {
    fn drop(&mut self) {
        node::cancel(&self.node, Error::Canceled, None, How::HandleDropped);
    }
}

/// Cancels a context when asked, never on drop; `Clone`, `Send` and `Sync`,
/// so one context can be canceled from many places (tokio-util's
/// `CancellationToken`, as a handle). Made by [`CancelHandle::disarm`];
/// [`Canceler::drop_guard`] turns one back into a [`CancelHandle`].
///
/// ```
/// use std::thread;
/// use ctxtree::{Cause, Context, Error};
///
/// let (ctx, handle) = Context::background().with_cancel();
/// let canceler = handle.disarm();
/// let workers: Vec<_> = (0..4)
///     .map(|i| {
///         let canceler = canceler.clone();
///         thread::spawn(move || {
///             if i == 2 {
///                 canceler.cancel_with_cause(Cause::msg("worker 2 failed"));
///             }
///         })
///     })
///     .collect();
/// for w in workers {
///     w.join().unwrap();
/// }
/// assert_eq!(ctx.err(), Some(Error::Canceled));
/// assert_eq!(ctx.cause().unwrap().to_string(), "worker 2 failed");
/// ```
#[derive(Clone)]
pub struct Canceler {
    node: NodeRef,
}

impl Canceler {
    /// Cancels the context and everything derived from it, as
    /// [`CancelHandle::cancel`] does (the first cancel wins).
    ///
    /// ```
    /// let (ctx, handle) = ctxtree::Context::background().with_cancel();
    /// handle.disarm().cancel();
    /// assert!(ctx.is_done());
    /// ```
    pub fn cancel(&self) {
        node::cancel(&self.node, Error::Canceled, None, How::Cancel);
    }

    /// Cancels with `cause`, as [`CancelHandle::cancel_with_cause`] does.
    ///
    /// ```
    /// let (ctx, handle) = ctxtree::Context::background().with_cancel();
    /// handle.disarm().cancel_with_cause(ctxtree::Cause::msg("quota"));
    /// assert_eq!(ctx.cause().unwrap().to_string(), "quota");
    /// ```
    pub fn cancel_with_cause(&self, cause: impl Into<Cause>) {
        node::cancel(&self.node, Error::Canceled, Some(cause.into()), How::Cancel);
    }

    /// True once the context is canceled (by a canceler, its deadline or an
    /// ancestor).
    ///
    /// ```
    /// let (parent, cancel_parent) = ctxtree::Context::background().with_cancel();
    /// let (_child, handle) = parent.with_cancel();
    /// let canceler = handle.disarm();
    /// cancel_parent.cancel();
    /// assert!(canceler.is_canceled());
    /// ```
    pub fn is_canceled(&self) -> bool {
        self.node.err().is_some()
    }

    /// A [`CancelHandle`] for the same context: it cancels when dropped,
    /// whatever other `Canceler`s exist (tokio-util's `drop_guard`).
    ///
    /// ```
    /// let (ctx, handle) = ctxtree::Context::background().with_cancel();
    /// let canceler = handle.disarm();
    /// drop(canceler.clone().drop_guard());
    /// assert!(ctx.is_done());
    /// ```
    pub fn drop_guard(self) -> CancelHandle {
        CancelHandle { node: self.node }
    }
}

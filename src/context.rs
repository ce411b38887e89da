//! The public handles: `Context` (a counted pointer to a node, or a root that
//! needs no allocation) and `CancelHandle` (cancels on drop).

use std::time::{Duration, Instant};

use crate::error::{Cause, Error};
use crate::handle::CancelHandle;
use crate::time::{self, Deadline};
use crate::tree::node::{self, Kind, Label, NodeRef, Root};
use crate::tree::state::How;
use crate::values::ValuesRef;

/// A context: a cancellation signal, an err and a cause that flow from a
/// parent to everything derived from it (Go's `context.Context`).
///
/// A `Context` is a cheap handle (`Clone` is one reference-count increment;
/// the roots [`Context::background`] and [`Context::todo`] allocate nothing)
/// and it is `Send + Sync + 'static`, so it can be stored, shared and moved
/// into threads and tasks.
///
/// ```
/// use ctxtree::{Context, Error};
///
/// let root = Context::background();
/// let (request, cancel_request) = root.with_cancel();
/// let (subtask, _cancel_subtask) = request.with_cancel();
///
/// let worker = std::thread::spawn(move || subtask.wait());
/// cancel_request.cancel(); // cancels `request` and everything below it
/// assert_eq!(worker.join().unwrap(), Error::Canceled);
/// assert!(request.is_done());
/// assert!(!root.is_done());
/// ```
#[derive(Clone)]
pub struct Context {
    /// The cancel part: the nearest cancel node, or a root.
    pub(crate) repr: Repr,
    /// The nearest value layer (`values.rs`); `None` while there is none.
    pub(crate) values: Option<ValuesRef>,
}

#[derive(Clone)]
pub(crate) enum Repr {
    Root(Root),
    Node(NodeRef),
}

impl Context {
    /// The root of every context tree: never canceled, no deadline, no values
    /// (Go's `context.Background()`). Allocates nothing, and is `const`.
    ///
    /// ```
    /// static ROOT: ctxtree::Context = ctxtree::Context::background();
    /// assert!(!ROOT.is_done());
    /// assert_eq!(ROOT.to_string(), "context.Background");
    /// ```
    pub const fn background() -> Context {
        Context {
            repr: Repr::Root(Root::Background),
            values: None,
        }
    }

    /// Like [`Context::background`], for code that has not decided which
    /// context to use yet (Go's `context.TODO()`).
    ///
    /// ```
    /// assert_eq!(ctxtree::Context::todo().to_string(), "context.TODO");
    /// ```
    pub const fn todo() -> Context {
        Context {
            repr: Repr::Root(Root::Todo),
            values: None,
        }
    }

    /// Derives a child that is canceled when the returned handle is canceled
    /// or dropped, or when this context is canceled (Go's `WithCancel`).
    ///
    /// A child of a context that is already canceled is born canceled, with
    /// the parent's err and cause.
    ///
    /// ```
    /// let (parent, cancel_parent) = ctxtree::Context::background().with_cancel();
    /// let (child, _cancel_child) = parent.with_cancel();
    /// drop(cancel_parent);
    /// assert!(child.is_done());
    /// let (late, _h) = parent.with_cancel();
    /// assert!(late.is_done());
    /// ```
    #[must_use = "the handle cancels the context when dropped: keep it (`let (ctx, _cancel) = ...`, not `_`)"]
    pub fn with_cancel(&self) -> (Context, CancelHandle) {
        match &self.repr {
            // The common case, straight to the node's own derivation.
            Repr::Node(parent) => {
                let (ctx, handle) = node::derive_cancel(parent);
                (
                    Context {
                        repr: Repr::Node(ctx),
                        values: self.values.clone(),
                    },
                    CancelHandle { node: handle },
                )
            }
            Repr::Root(_) => self.derive(Kind::Cancel, Deadline::NEVER, None, None),
        }
    }

    /// Derives a child that is also canceled, with
    /// [`Error::DeadlineExceeded`], when `deadline` passes (Go's
    /// `WithDeadline`).
    ///
    /// As in Go: if this context's deadline is already earlier, the child is a
    /// plain [`with_cancel`](Context::with_cancel) child reporting that
    /// earlier deadline, and no timer is armed; a deadline at or before now
    /// cancels the child at once. Canceling through the handle gives
    /// [`Error::Canceled`].
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use ctxtree::{Context, Error};
    ///
    /// let (ctx, _cancel) = Context::background()
    ///     .with_deadline(Instant::now() + Duration::from_millis(20));
    /// assert_eq!(ctx.wait(), Error::DeadlineExceeded);
    /// assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    /// ```
    #[must_use = "the handle cancels the context when dropped: keep it (`let (ctx, _cancel) = ...`, not `_`)"]
    pub fn with_deadline(&self, deadline: Instant) -> (Context, CancelHandle) {
        let deadline = Deadline::from_instant(deadline);
        self.with_deadline_at(deadline, deadline <= self.now(), None)
    }

    /// Like [`with_deadline`](Context::with_deadline), recording `cause` as
    /// the [`cause`](Context::cause) if the deadline fires (Go's
    /// `WithDeadlineCause`). A manual cancel still records its own cause.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use ctxtree::{Cause, Context, Error};
    ///
    /// let soon = Instant::now() + Duration::from_millis(20);
    /// let (ctx, _cancel) = Context::background().with_deadline_cause(soon, Cause::msg("db query too slow"));
    /// assert_eq!(ctx.wait(), Error::DeadlineExceeded);
    /// assert_eq!(ctx.cause().unwrap().to_string(), "db query too slow");
    ///
    /// // Canceled by hand before the deadline: the deadline's cause is not used.
    /// let later = Instant::now() + Duration::from_secs(60);
    /// let (ctx, cancel) = Context::background().with_deadline_cause(later, Cause::msg("db query too slow"));
    /// cancel.cancel();
    /// assert_eq!(ctx.cause().unwrap().as_context_error(), Some(Error::Canceled));
    /// ```
    #[must_use = "the handle cancels the context when dropped: keep it (`let (ctx, _cancel) = ...`, not `_`)"]
    pub fn with_deadline_cause(
        &self,
        deadline: Instant,
        cause: impl Into<Cause>,
    ) -> (Context, CancelHandle) {
        let deadline = Deadline::from_instant(deadline);
        self.with_deadline_at(deadline, deadline <= self.now(), Some(cause.into()))
    }

    /// [`with_deadline`](Context::with_deadline) at `now + timeout` (Go's
    /// `WithTimeout`). A timeout too large to represent (`Duration::MAX`)
    /// means no deadline.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (ctx, cancel) = ctxtree::Context::background().with_timeout(Duration::from_secs(30));
    /// assert!(ctx.deadline().is_some());
    /// cancel.cancel(); // disarms the timer
    /// assert_eq!(ctx.err(), Some(ctxtree::Error::Canceled));
    /// ```
    #[must_use = "the handle cancels the context when dropped: keep it (`let (ctx, _cancel) = ...`, not `_`)"]
    pub fn with_timeout(&self, timeout: Duration) -> (Context, CancelHandle) {
        // `now + timeout` is in the past only for a zero timeout: one clock read.
        let deadline = Deadline::after(self.now(), timeout);
        self.with_deadline_at(deadline, timeout.is_zero(), None)
    }

    /// [`with_deadline_cause`](Context::with_deadline_cause) at
    /// `now + timeout` (Go's `WithTimeoutCause`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxtree::{Cause, Context, Error};
    ///
    /// let (ctx, _cancel) = Context::background()
    ///     .with_timeout_cause(Duration::ZERO, Cause::msg("backend too slow"));
    /// assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    /// assert_eq!(ctx.cause().unwrap().to_string(), "backend too slow");
    /// ```
    #[must_use = "the handle cancels the context when dropped: keep it (`let (ctx, _cancel) = ...`, not `_`)"]
    pub fn with_timeout_cause(
        &self,
        timeout: Duration,
        cause: impl Into<Cause>,
    ) -> (Context, CancelHandle) {
        let deadline = Deadline::after(self.now(), timeout);
        self.with_deadline_at(deadline, timeout.is_zero(), Some(cause.into()))
    }

    /// Derives a context that carries `value`, keyed by its type (Go's
    /// `WithValue`). [`value::<T>()`](Context::value) on it and on every
    /// context derived from it returns the nearest value of type `T`.
    ///
    /// A value layer is transparent to cancellation: the returned context is
    /// canceled exactly when this one is, and children derived from it hang
    /// under this context's cancel node. Values stay readable after
    /// cancellation and keep what they need alive after ancestors are
    /// dropped.
    ///
    /// Use a type of your own as the key (a newtype), so that no other crate
    /// can read or shadow your value: this is Go's "unexported key type"
    /// rule, enforced by privacy.
    ///
    /// ```
    /// use ctxtree::Context;
    ///
    /// #[derive(Debug, PartialEq)]
    /// struct RequestId(u64); // private: only this module can bind or read it
    ///
    /// let (request, cancel) = Context::background().with_cancel();
    /// let request = request.with_value(RequestId(42));
    /// let (subtask, _h) = request.with_cancel();
    /// assert_eq!(subtask.value::<RequestId>(), Some(&RequestId(42)));
    /// assert_eq!(subtask.value::<String>(), None);
    ///
    /// cancel.cancel();
    /// assert!(subtask.is_done());
    /// assert_eq!(subtask.value::<RequestId>(), Some(&RequestId(42))); // still there
    /// ```
    pub fn with_value<T: Send + Sync + 'static>(&self, value: T) -> Context {
        let anchor = self.node().map_or(0, |n| n.as_ptr() as usize);
        Context {
            repr: self.repr.clone(),
            values: Some(ValuesRef::bind(self.values.as_ref(), anchor, value)),
        }
    }

    /// The nearest value of type `T` bound by [`with_value`](Context::with_value)
    /// on this context or an ancestor (Go's `Value`); `None` if there is none.
    ///
    /// The cost does not depend on how many cancel or deadline layers lie in
    /// between, and stays bounded as value layers pile up: at most eight
    /// layers are checked, then one hash-table probe (docs/design.md §12).
    ///
    /// ```
    /// let ctx = ctxtree::Context::background().with_value(1u8).with_value(2u8);
    /// assert_eq!(ctx.value::<u8>(), Some(&2)); // the nearest wins
    /// ```
    #[inline]
    pub fn value<T: 'static>(&self) -> Option<&T> {
        self.values.as_ref()?.get::<T>()
    }

    /// A context with this context's values that is never canceled and has
    /// no deadline (Go's `WithoutCancel`): `err`, `cause` and `deadline` are
    /// `None`, and canceling this context does not reach contexts derived from
    /// the returned one. Use it for work that must outlive a request, such as
    /// a background flush that still needs the request's trace id.
    ///
    /// ```
    /// use ctxtree::Context;
    ///
    /// let (request, cancel) = Context::background().with_cancel();
    /// let request = request.with_value("trace-7");
    /// let detached = request.without_cancel();
    /// let (job, _job_handle) = detached.with_cancel();
    /// cancel.cancel();
    /// assert!(request.is_done());
    /// assert!(!job.is_done());
    /// assert_eq!(job.value::<&str>(), Some(&"trace-7"));
    /// assert_eq!(detached.to_string(), "context.Background.WithCancel.WithValue(&str).WithoutCancel");
    /// ```
    pub fn without_cancel(&self) -> Context {
        Context {
            repr: Repr::Root(Root::Background),
            values: Some(ValuesRef::detach(self.values.as_ref(), self.repr.clone())),
        }
    }

    /// The deadline after which this context is canceled, its own or the
    /// nearest ancestor's; `None` if it has none (Go's `Deadline`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxtree::Context;
    ///
    /// assert_eq!(Context::background().deadline(), None);
    /// let (request, _h1) = Context::background().with_timeout(Duration::from_secs(5));
    /// let (step, _h2) = request.with_cancel();
    /// let (slow, _h3) = request.with_timeout(Duration::from_secs(60));
    /// // A child reports its ancestor's deadline; a later one of its own loses.
    /// assert!(request.deadline().is_some());
    /// assert_eq!(step.deadline(), request.deadline());
    /// assert_eq!(slow.deadline(), request.deadline());
    /// ```
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline_raw().to_instant()
    }

    /// The time left until this context's deadline: `None` without a
    /// deadline, [`Duration::ZERO`] once it has passed. One clock read; the
    /// budget to hand to a timeout API or send to another service.
    ///
    /// It says nothing about cancellation: a context canceled early still
    /// reports the time left to its deadline (check [`err`](Context::err)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxtree::Context;
    ///
    /// assert_eq!(Context::background().remaining(), None);
    /// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(5));
    /// let left = ctx.remaining().unwrap();
    /// assert!(left <= Duration::from_secs(5) && left > Duration::from_secs(4));
    /// let (past, _cancel) = Context::background().with_timeout(Duration::ZERO);
    /// assert_eq!(past.remaining(), Some(Duration::ZERO));
    /// ```
    pub fn remaining(&self) -> Option<Duration> {
        let deadline = self.deadline_raw();
        if deadline.is_never() {
            return None;
        }
        let (past, left) = deadline.remaining(self.now());
        Some(if past { Duration::ZERO } else { left })
    }

    /// The time this context's deadlines count on: real time, or the
    /// virtual clock's for a context of a [`crate::VirtualClock`]'s tree.
    #[inline]
    pub(crate) fn now(&self) -> Deadline {
        match &self.repr {
            Repr::Node(node) if node.virtual_time() => time::manual::now_for(node),
            _ => Deadline::now(),
        }
    }

    pub(crate) fn deadline_raw(&self) -> Deadline {
        match &self.repr {
            Repr::Root(_) => Deadline::NEVER,
            Repr::Node(node) => node.deadline(),
        }
    }

    /// `expired`: the deadline is at or before now (the caller read the clock).
    pub(crate) fn with_deadline_at(
        &self,
        deadline: Deadline,
        expired: bool,
        cause: Option<Cause>,
    ) -> (Context, CancelHandle) {
        self.with_deadline_labeled(deadline, expired, cause, None)
    }

    /// [`with_deadline_at`](Context::with_deadline_at), labeling the child.
    pub(crate) fn with_deadline_labeled(
        &self,
        deadline: Deadline,
        expired: bool,
        cause: Option<Cause>,
        label: Option<Label>,
    ) -> (Context, CancelHandle) {
        if self.deadline_raw() <= deadline {
            // The parent ends first anyway: no timer (Go's rule).
            return match label {
                None => self.with_cancel(),
                label => self.derive(Kind::Cancel, self.deadline_raw(), None, label),
            };
        }
        if expired {
            let (ctx, handle) = self.derive(Kind::Deadline, deadline, None, label);
            if let Some(node) = ctx.node() {
                node::cancel(node, Error::DeadlineExceeded, cause, How::Deadline);
            }
            return (ctx, handle);
        }
        let (ctx, handle) = self.derive(Kind::Deadline, deadline, cause, label);
        if let Some(node) = ctx.node() {
            if node.err().is_none() {
                if node.virtual_time() {
                    time::manual::arm(node.clone());
                } else {
                    time::arm(node.clone());
                }
            }
        }
        (ctx, handle)
    }

    pub(crate) fn derive(
        &self,
        kind: Kind,
        deadline: Deadline,
        deadline_cause: Option<Cause>,
        label: Option<Label>,
    ) -> (Context, CancelHandle) {
        let (parent, root) = match &self.repr {
            Repr::Root(root) => (None, *root),
            Repr::Node(node) => (Some(node), node.root()),
        };
        let (ctx, handle) = node::derive(parent, root, kind, deadline, deadline_cause, label);
        (
            Context {
                repr: Repr::Node(ctx),
                values: self.values.clone(),
            },
            CancelHandle { node: handle },
        )
    }

    /// `Some(err)` once the context is canceled, `None` before (Go's `Err`).
    /// One atomic load; when it returns `Some`, [`Context::is_done`] is true
    /// and [`Context::done`] is ready.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxtree::{Context, Error};
    ///
    /// let (ctx, cancel) = Context::background().with_timeout(Duration::from_secs(60));
    /// assert_eq!(ctx.err(), None);
    /// cancel.cancel();
    /// assert_eq!(ctx.err(), Some(Error::Canceled)); // canceled, not timed out
    /// ```
    #[inline]
    pub fn err(&self) -> Option<Error> {
        match &self.repr {
            Repr::Root(_) => None,
            Repr::Node(node) => node.err(),
        }
    }

    /// Why the context was canceled (Go's `context.Cause`): the cause given
    /// to [`CancelHandle::cancel_with_cause`] by the first canceler of this
    /// context or of an ancestor, or the [`Error`] itself when none was given.
    /// `None` while the context is not canceled.
    ///
    /// ```
    /// let (parent, cancel) = ctxtree::Context::background().with_cancel();
    /// let (child, _h) = parent.with_cancel();
    /// cancel.cancel_with_cause(ctxtree::Cause::msg("client went away"));
    /// assert_eq!(child.cause().unwrap().to_string(), "client went away");
    /// ```
    pub fn cause(&self) -> Option<Cause> {
        match &self.repr {
            Repr::Root(_) => None,
            Repr::Node(node) => node.cause(),
        }
    }

    /// True once the context is canceled. One atomic load, cheap enough to
    /// check between units of work.
    ///
    /// ```
    /// let (ctx, cancel) = ctxtree::Context::background().with_cancel();
    /// let worker = std::thread::spawn(move || {
    ///     let mut batches = 0u64;
    ///     while !ctx.is_done() {
    ///         batches += 1; // ... process one batch
    ///     }
    ///     batches
    /// });
    /// cancel.cancel();
    /// let _batches = worker.join().unwrap(); // returns: the loop saw the cancel
    /// ```
    #[inline]
    pub fn is_done(&self) -> bool {
        self.err().is_some()
    }

    /// True if both handles name the same context.
    ///
    /// ```
    /// use ctxtree::Context;
    ///
    /// let (ctx, _cancel) = Context::background().with_cancel();
    /// assert!(ctx.same(&ctx.clone()));
    /// assert!(!ctx.same(&ctx.with_cancel().0)); // a child is another context
    /// assert!(!ctx.same(&ctx.with_value(7u32))); // so is a value layer
    /// assert!(Context::background().same(&Context::default()));
    /// ```
    pub fn same(&self, other: &Context) -> bool {
        let values = match (&self.values, &other.values) {
            (None, None) => true,
            (Some(a), Some(b)) => ValuesRef::ptr_eq(a, b),
            _ => false,
        };
        values
            && match (&self.repr, &other.repr) {
                (Repr::Root(a), Repr::Root(b)) => a == b,
                (Repr::Node(a), Repr::Node(b)) => NodeRef::ptr_eq(a, b),
                _ => false,
            }
    }

    #[inline]
    pub(crate) fn node(&self) -> Option<&NodeRef> {
        match &self.repr {
            Repr::Root(_) => None,
            Repr::Node(node) => Some(node),
        }
    }
}

impl Default for Context {
    /// [`Context::background`].
    fn default() -> Context {
        Context::background()
    }
}

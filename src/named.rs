//! Named contexts: `ctx.named("db").with_timeout(d)` derives a context that
//! shows its name in `Display`, `Debug`, cancellation origins and the tree
//! dump. The name lives in a side table (`tree/node/names.rs`), so unnamed
//! contexts carry nothing for it.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use crate::context::Context;
use crate::handle::CancelHandle;
use crate::time::deadline::Deadline;
use crate::tree::node::{self, Kind, Label, Name};

/// A derivation with a name, from [`Context::named`]: call one of its
/// `with_*` methods to get the named child.
///
/// ```
/// use std::time::Duration;
/// use ctxtree::Context;
///
/// let (request, _end) = Context::background().named("GET /users/42").with_cancel();
/// let (query, _q) = request.named("db").with_timeout(Duration::from_secs(2));
/// assert_eq!(query.name().as_deref(), Some("db"));
/// assert!(query.to_string().starts_with(
///     r#"context.Background.WithCancel("GET /users/42").WithDeadline("db", ["#
/// ));
/// ```
#[must_use = "a name does nothing until a `with_*` method derives the named context"]
pub struct Named<'a> {
    parent: &'a Context,
    name: Name,
}

impl Context {
    /// Names the next derivation: `ctx.named("db").with_timeout(d)`. The name
    /// is a `&'static str` or a `String` made per request; it is shown in
    /// `Display` and `Debug`, in [`Origin`](crate::Origin)s and in the tree
    /// dump, and read back with [`name`](Context::name).
    ///
    /// ```
    /// let (ctx, _h) = ctxtree::Context::background().named(format!("job {}", 7)).with_cancel();
    /// assert_eq!(ctx.name().as_deref(), Some("job 7"));
    /// ```
    pub fn named(&self, name: impl Into<Cow<'static, str>>) -> Named<'_> {
        Named {
            parent: self,
            name: name.into(),
        }
    }

    /// The name this context's cancel part was derived with, if any (a
    /// value layer or a plain child of a named context has none of its own).
    ///
    /// ```
    /// let (named, _h) = ctxtree::Context::background().named("outer").with_cancel();
    /// let (inner, _i) = named.with_cancel();
    /// assert_eq!(named.with_value(1u8).name().as_deref(), Some("outer"));
    /// assert_eq!(inner.name(), None);
    /// ```
    pub fn name(&self) -> Option<Cow<'static, str>> {
        node::name_of(self.node()?)
    }
}

impl Named<'_> {
    /// [`Context::with_cancel`], named.
    ///
    /// ```
    /// let (ctx, h) = ctxtree::Context::background().named("worker").with_cancel();
    /// drop(h);
    /// assert!(ctx.is_done());
    /// ```
    #[must_use = "the handle cancels the context when dropped: keep it (`let (ctx, _cancel) = ...`, not `_`)"]
    pub fn with_cancel(self) -> (Context, CancelHandle) {
        let deadline = self.parent.deadline_raw();
        self.parent
            .derive(Kind::Cancel, deadline, None, Some(Label::named(self.name)))
    }

    /// [`Context::with_deadline`], named.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let at = Instant::now() + Duration::from_millis(5);
    /// let (ctx, _h) = ctxtree::Context::background().named("call").with_deadline(at);
    /// assert_eq!(ctx.wait(), ctxtree::Error::DeadlineExceeded);
    /// ```
    #[must_use = "the handle cancels the context when dropped: keep it (`let (ctx, _cancel) = ...`, not `_`)"]
    pub fn with_deadline(self, deadline: Instant) -> (Context, CancelHandle) {
        let deadline = Deadline::from_instant(deadline);
        let expired = deadline <= self.parent.now();
        self.parent
            .with_deadline_labeled(deadline, expired, None, Some(Label::named(self.name)))
    }

    /// [`Context::with_timeout`], named.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (ctx, _h) = ctxtree::Context::background().named("call").with_timeout(Duration::ZERO);
    /// assert!(ctx.is_done());
    /// assert_eq!(ctx.name().as_deref(), Some("call"));
    /// ```
    #[must_use = "the handle cancels the context when dropped: keep it (`let (ctx, _cancel) = ...`, not `_`)"]
    pub fn with_timeout(self, timeout: Duration) -> (Context, CancelHandle) {
        let deadline = Deadline::after(self.parent.now(), timeout);
        self.parent.with_deadline_labeled(
            deadline,
            timeout.is_zero(),
            None,
            Some(Label::named(self.name)),
        )
    }
}

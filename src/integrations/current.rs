//! The current context of a task: [`Context::current`], set by
//! [`Context::scope`] (a future) or [`Context::in_scope`] (a closure).
//!
//! Mechanism (the one tokio's `task_local!` uses, without tokio): a
//! thread-local slot holds the context of the innermost scope being run on
//! this thread. [`Scoped`] swaps its context into the slot around each
//! `poll` of its future and swaps the previous one back afterwards, also
//! when the poll unwinds, so the slot always reflects the scopes on the
//! stack (invariant **C1**), on any executor. A task spawned from inside a
//! scope does not inherit it: wrap the spawned future in a scope of its own.
//!
//! [`ContextLayer`](crate::tower::ContextLayer) runs each handler in the
//! scope of its request context, so code deep inside a handler (such as
//! [`BudgetLayer`](crate::tower::BudgetLayer) on an outgoing call) finds it
//! without the handler passing it along.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use crate::context::Context;

thread_local! {
    /// The context of the innermost scope running on this thread (C1).
    static CURRENT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

/// Restores the previous current context when dropped (C1, also on unwind).
struct Restore(Option<Context>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        // `try_with`: nothing to restore while the thread's locals are
        // being destroyed.
        let _ = CURRENT.try_with(|slot| *slot.borrow_mut() = previous);
    }
}

fn enter(ctx: &Context) -> Restore {
    Restore(CURRENT.with(|slot| slot.borrow_mut().replace(ctx.clone())))
}

impl Context {
    /// The context of the innermost [`scope`](Context::scope) or
    /// [`in_scope`](Context::in_scope) this code runs in, if any: the
    /// request context inside a handler behind `ctxtree::tower::ContextLayer`
    /// (feature `tower`).
    ///
    /// ```
    /// use ctxtree::Context;
    ///
    /// assert!(Context::current().is_none());
    /// let (ctx, _cancel) = Context::background().with_cancel();
    /// ctx.in_scope(|| {
    ///     assert!(Context::current().unwrap().same(&ctx));
    /// });
    /// assert!(Context::current().is_none());
    /// ```
    pub fn current() -> Option<Context> {
        CURRENT
            .try_with(|slot| slot.borrow().clone())
            .ok()
            .flatten()
    }

    /// Runs `f` with this context as [`Context::current`].
    ///
    /// ```
    /// use ctxtree::Context;
    ///
    /// let outer = Context::background().with_value("outer");
    /// let inner = outer.with_value("inner");
    /// outer.in_scope(|| {
    ///     inner.in_scope(|| assert_eq!(Context::current().unwrap().value::<&str>(), Some(&"inner")));
    ///     assert_eq!(Context::current().unwrap().value::<&str>(), Some(&"outer")); // restored
    /// });
    /// ```
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        let _restore = enter(self);
        f()
    }

    /// Wraps `future` so that this context is [`Context::current`] while it
    /// runs (during each of its polls), on any executor. It does not bound
    /// the future by the context: combine with
    /// [`run`](Context::run) for that.
    ///
    /// ```
    /// use ctxtree::Context;
    ///
    /// async fn deep_inside() -> bool {
    ///     Context::current().is_some_and(|ctx| ctx.deadline().is_some())
    /// }
    ///
    /// let (ctx, _cancel) = Context::background().with_timeout(std::time::Duration::from_secs(5));
    /// assert!(futures::executor::block_on(ctx.scope(deep_inside())));
    /// assert!(!futures::executor::block_on(deep_inside()));
    /// ```
    pub fn scope<F: Future>(&self, future: F) -> Scoped<F> {
        Scoped {
            ctx: self.clone(),
            future,
        }
    }
}

/// A future run with a context as [`Context::current`]: made by
/// [`Context::scope`].
///
/// ```
/// let ctx = ctxtree::Context::background().with_value(7u32);
/// let scoped: ctxtree::Scoped<_> = ctx.scope(async {
///     *ctxtree::Context::current().unwrap().value::<u32>().unwrap()
/// });
/// assert_eq!(futures::executor::block_on(scoped), 7);
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Scoped<F> {
    /// Not pinned.
    ctx: Context,
    /// Structurally pinned.
    future: F,
}

impl<F> Scoped<F> {
    /// The context this future runs in.
    ///
    /// ```
    /// let ctx = ctxtree::Context::background();
    /// assert!(ctx.scope(async {}).context().same(&ctx));
    /// ```
    pub fn context(&self) -> &Context {
        &self.ctx
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        // `future` is structurally pinned: never moved out, no `Drop` impl,
        // `Scoped` is `Unpin` only when `F` is; `ctx` is not pinned.
        // SAFETY: a pin projection, sound as just said.
        let this = unsafe { self.get_unchecked_mut() };
        let _restore = enter(&this.ctx);
        // SAFETY: the same projection, for the pinned field.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        future.poll(cx)
    }
}

impl<F> fmt::Debug for Scoped<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped")
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

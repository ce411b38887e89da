//! Running a future until a context ends: [`Context::run`],
//! [`Context::run_owned`] and the [`FutureExt`] extension.
//!
//! A `Run` is a `done()` future and the user's future side by side; it
//! spawns nothing and works under any executor (it only uses the `Waker` it
//! is polled with, through the waiter stack of `tree/waiters/`).
//!
//! Invariants:
//! - **R1 (bias)** Every poll checks the context first (one load). Once the
//!   context is done, the future is never polled again and `Err(err)` is
//!   returned, even if the future would have been ready in the same poll. So a cancel-safe
//!   future (a channel `recv`, an `accept`) loses nothing: what it would have
//!   taken stays in its source. A future that completes before the context
//!   ends returns `Ok` and the context is not consulted again.
//! - **R2** The future is pinned structurally and dropped in place, with the
//!   `Run`; the `done()` part is `Unpin` and abandons its waiter on drop (W4),
//!   so a dropped `Run` leaves nothing registered.
//!
//! Linearization: a `Run` that returns `Err` takes effect at the `err()` load
//! at the start of that poll, or, for a cancel that lands while the future is
//! polled, at the `done()` part's check after it: its own load, or its failed
//! registration push (S3). The waiter is registered only after the future
//! returned `Pending`, so a future that is ready at once costs one load.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use crate::context::Context;
use crate::done::{Done, DoneOwned};
use crate::error::Error;

impl Context {
    /// Runs `future` until it completes or this context ends, whichever is
    /// first: `Ok(output)`, or `Err(err)` with the context's err (tokio-util's
    /// `run_until_cancelled`, Go's `select` on `ctx.Done()`).
    ///
    /// The context is checked first on every poll (biased): once it is done
    /// the future is not polled again, so a cancel-safe future loses nothing.
    /// Works under any executor; spawns nothing.
    ///
    /// ```
    /// use ctxtree::{Context, Error};
    ///
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// let result = futures::executor::block_on(ctx.run(async { 7 }));
    /// assert_eq!(result, Ok(7));
    ///
    /// cancel.cancel();
    /// let never = std::future::pending::<()>();
    /// assert_eq!(futures::executor::block_on(ctx.run(never)), Err(Error::Canceled));
    /// ```
    pub fn run<F: Future>(&self, future: F) -> Run<'_, F> {
        Run {
            done: self.done(),
            future,
        }
    }

    /// Like [`run`](Context::run), owning a clone of this context so the
    /// returned future is `'static` (spawnable).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use ctxtree::{Context, Error};
    ///
    /// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(10));
    /// let task = tokio::spawn(ctx.run_owned(tokio::time::sleep(Duration::from_secs(60))));
    /// assert_eq!(task.await.unwrap(), Err(Error::DeadlineExceeded));
    /// # }
    /// ```
    pub fn run_owned<F: Future>(&self, future: F) -> RunOwned<F> {
        RunOwned {
            done: self.done_owned(),
            future,
        }
    }
}

/// One poll of a `Run` (R1): the context's err first (one load), then the
/// future, and only if the future is pending does `done` register a waiter
/// (or find the context ended meanwhile). So a future that is ready when
/// first polled costs no registration, and a done context is always seen
/// before the future is polled again.
fn poll_run<D, F>(
    err_now: Option<Error>,
    done: Pin<&mut D>,
    future: Pin<&mut F>,
    cx: &mut TaskContext<'_>,
) -> Poll<Result<F::Output, Error>>
where
    D: Future<Output = Error>,
    F: Future,
{
    if let Some(err) = err_now {
        return Poll::Ready(Err(err));
    }
    if let Poll::Ready(output) = future.poll(cx) {
        return Poll::Ready(Ok(output));
    }
    done.poll(cx).map(Err)
}

/// Future returned by [`Context::run`] and [`FutureExt::with_context`]:
/// the future's output, or the context's err if it ends first.
///
/// The context is checked before the future on every poll, so a done
/// context wins even over a future that is ready:
///
/// ```
/// use ctxtree::{Context, Error};
///
/// let (ctx, cancel) = Context::background().with_cancel();
/// let ready = futures::executor::block_on(ctx.run(std::future::ready("reply")));
/// assert_eq!(ready, Ok("reply"));
///
/// cancel.cancel();
/// let too_late = futures::executor::block_on(ctx.run(std::future::ready("reply")));
/// assert_eq!(too_late, Err(Error::Canceled));
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Run<'a, F> {
    done: Done<'a>,
    future: F,
}

impl<F: Future> Future for Run<'_, F> {
    type Output = Result<F::Output, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        // SAFETY: `future` is pinned structurally: it is never moved out of
        // `self` (Run has no method that moves it and no `Drop` that moves
        // it), and `Run` is `Unpin` only if `F` is (auto trait). `done` is
        // `Unpin`, so handing out `&mut` to it is fine.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above; `this.future` stays where it is until `Run` drops.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        poll_run(this.done.err_now(), Pin::new(&mut this.done), future, cx)
    }
}

impl<F> std::fmt::Debug for Run<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// Future returned by [`Context::run_owned`] and
/// [`FutureExt::with_context_owned`]: like [`Run`], owning its context.
///
/// Being `'static`, it can be moved to another thread or spawned:
///
/// ```
/// use std::time::Duration;
/// use ctxtree::{Context, Error, RunOwned};
///
/// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(20));
/// let slow = async {
///     futures::future::pending::<()>().await; // e.g. a response that never comes
/// };
/// let run: RunOwned<_> = ctx.run_owned(slow);
/// let caller = std::thread::spawn(move || futures::executor::block_on(run));
/// assert_eq!(caller.join().unwrap(), Err(Error::DeadlineExceeded));
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct RunOwned<F> {
    done: DoneOwned,
    future: F,
}

impl<F: Future> Future for RunOwned<F> {
    type Output = Result<F::Output, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        // SAFETY: as in `Run::poll`: `future` is structurally pinned and
        // never moved; `done` is `Unpin`.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        poll_run(this.done.err_now(), Pin::new(&mut this.done), future, cx)
    }
}

impl<F> RunOwned<F> {
    /// The context this future runs under.
    ///
    /// ```
    /// use ctxtree::{Context, FutureExt as _};
    ///
    /// let (ctx, _cancel) = Context::background().with_cancel();
    /// let request = ctx.with_value("req-17");
    /// let run = async { 200 }.with_context_owned(request);
    /// assert_eq!(run.context().value::<&str>(), Some(&"req-17"));
    /// assert_eq!(futures::executor::block_on(run), Ok(200));
    /// ```
    pub fn context(&self) -> &Context {
        self.done.context()
    }
}

impl<F> std::fmt::Debug for RunOwned<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOwned")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// Extension methods binding any future to a [`Context`] (the method forms
/// of [`Context::run`] and [`Context::run_owned`]).
///
/// ```
/// use ctxtree::{Context, Error, FutureExt as _};
///
/// let (ctx, cancel) = Context::background().with_cancel();
/// cancel.cancel();
/// let out = futures::executor::block_on(std::future::pending::<u8>().with_context(&ctx));
/// assert_eq!(out, Err(Error::Canceled));
/// ```
pub trait FutureExt: Future + Sized {
    /// Runs this future until it completes or `ctx` ends; see
    /// [`Context::run`] for the bias.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxtree::{Context, Error, FutureExt as _};
    ///
    /// # futures::executor::block_on(async {
    /// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(10));
    /// let fast = async { 1 + 1 }.with_context(&ctx).await;
    /// assert_eq!(fast, Ok(2));
    /// let stuck = futures::future::pending::<u32>().with_context(&ctx).await;
    /// assert_eq!(stuck, Err(Error::DeadlineExceeded));
    /// # });
    /// ```
    fn with_context(self, ctx: &Context) -> Run<'_, Self> {
        ctx.run(self)
    }

    /// Like [`with_context`](FutureExt::with_context), owning `ctx`, so the
    /// result is `'static` when the future is.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use ctxtree::{Context, Error, FutureExt as _};
    ///
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// let poller = tokio::spawn(
    ///     async {
    ///         loop {
    ///             tokio::time::sleep(Duration::from_millis(1)).await; // poll something
    ///         }
    ///     }
    ///     .with_context_owned(ctx.clone()),
    /// );
    /// cancel.cancel();
    /// assert_eq!(poller.await.unwrap(), Err(Error::Canceled));
    /// # }
    /// ```
    fn with_context_owned(self, ctx: Context) -> RunOwned<Self> {
        RunOwned {
            done: DoneOwned::new(ctx),
            future: self,
        }
    }
}

impl<F: Future> FutureExt for F {}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::task::Waker;

    /// A `!Unpin` future (it borrows its own local across an await), so
    /// the pin projection is exercised for real (also under miri).
    async fn self_borrowing(ready: &std::cell::Cell<bool>) -> u32 {
        let local = [1u32, 2, 3];
        let first = &local[0];
        std::future::poll_fn(|_| {
            if ready.get() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        *first + local[2]
    }

    #[test]
    fn run_projects_a_pinned_future_and_prefers_the_context() {
        let waker = Waker::noop();
        let mut cx = TaskContext::from_waker(waker);
        let ready = std::cell::Cell::new(false);
        let (ctx, cancel) = Context::background().with_cancel();

        let mut run = Box::pin(ctx.run(self_borrowing(&ready)));
        assert!(run.as_mut().poll(&mut cx).is_pending());
        ready.set(true);
        assert_eq!(run.as_mut().poll(&mut cx), Poll::Ready(Ok(4)));

        ready.set(false);
        let mut owned = Box::pin(self_borrowing(&ready).with_context_owned(ctx.clone()));
        assert!(owned.as_mut().poll(&mut cx).is_pending());
        assert!(owned.context().same(&ctx));
        ready.set(true);
        cancel.cancel(); // both ready: the context wins (R1)
        assert_eq!(
            owned.as_mut().poll(&mut cx),
            Poll::Ready(Err(Error::Canceled))
        );
    }
}

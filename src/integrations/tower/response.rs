//! The response future: the handler's future raced against the request
//! context, with the grace a handler gets once its context ends.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use ::http::Response;

use super::layer::RequestAborted;
use super::reply::Reply;
use crate::tree::state::How;
use crate::{CancelHandle, Context, DoneOwned, Error, Scoped};

/// The response future of [`ContextService`](crate::tower::ContextService). It owns the request context's
/// [`CancelHandle`]: completing cancels the context with
/// [`Error::Canceled`](crate::Error::Canceled); dropping it before completion cancels it with cause
/// [`RequestAborted`]. If the request context ends before the inner service
/// answers (its deadline passed, or the root was canceled), it drops the
/// inner future and answers itself (see [`ContextService`](crate::tower::ContextService)).
///
/// ```
/// use ctxtree::{tower::{request_context, ContextLayer, RequestAborted}, Context, Error};
/// use std::sync::{Arc, Mutex};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # futures::executor::block_on(async {
/// let seen = Arc::new(Mutex::new(None));
/// let slot = seen.clone();
/// let svc = ContextLayer::new(Context::background()).layer(service_fn(
///     move |req: http::Request<String>| {
///         *slot.lock().unwrap() = request_context(&req).cloned();
///         std::future::pending::<Result<http::Response<String>, Error>>()
///     },
/// ));
/// let mut fut = Box::pin(svc.oneshot(http::Request::new(String::new())));
/// assert!(futures::poll!(&mut fut).is_pending());
/// drop(fut); // the client went away
///
/// let ctx = seen.lock().unwrap().take().unwrap();
/// assert_eq!(ctx.err(), Some(Error::Canceled));
/// assert!(ctx.cause().unwrap().downcast_ref::<RequestAborted>().is_some());
/// # });
/// ```
pub struct ResponseFuture<F, B> {
    /// Structurally pinned (the future in `State::Inner`): never moved out;
    /// replaced only through `Pin::set`, which drops it in place.
    pub(super) state: State<Scoped<F>>,
    /// Not pinned. `None` once the future has completed (or was rejected).
    pub(super) handle: Option<CancelHandle>,
    /// Not pinned (`DoneOwned` is `Unpin`): wakes this task when the request
    /// context ends before the inner service answers.
    pub(super) done: Option<DoneOwned>,
    /// Not pinned: the handler's grace once the request context ended.
    pub(super) grace: Grace,
    /// Answer in gRPC's form.
    pub(super) grpc: bool,
    pub(super) _body: PhantomData<fn() -> B>,
}

pub(super) enum State<F> {
    Inner(F),
    Reply(Reply),
    Finished,
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let (output, handle) = std::task::ready!(self.poll_parts(cx));
        if let Some(handle) = handle {
            handle.cancel();
        }
        Poll::Ready(output)
    }
}

/// What [`ResponseFuture::poll_parts`] hands over: the response and the
/// request context's handle, if it still has one.
pub(crate) type Parts<B, E> = (Result<Response<B>, E>, Option<CancelHandle>);

impl<F, B, E> ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    /// Polls for the response, and hands over the request context's handle
    /// (`None` for the layer's own replies) instead of canceling it: the
    /// caller decides when the context ends.
    pub(crate) fn poll_parts(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Parts<B, E>> {
        // SAFETY: pin projection. `state` is structurally pinned: the inner
        // future is only ever reached through the `Pin` made below, never
        // moved out, and replaced only by `Pin::set` (drop in place), not in
        // `Drop` either; `ResponseFuture` is `Unpin` only when `F` is (auto
        // trait, no manual impl). The other fields are not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: `state` lives in `*this`, which is pinned (see above).
        let mut state = unsafe { Pin::new_unchecked(&mut this.state) };
        let output = match state.as_mut().inner().map(|future| future.poll(cx)) {
            Some(Poll::Ready(output)) => output,
            Some(Poll::Pending) => match this.grace.poll(this.done.as_mut(), cx) {
                // The request context ended and the grace is over: the
                // handler's future is dropped below (its work is canceled),
                // and the layer answers.
                Poll::Ready(err) => Ok(Reply::for_err(err).into_response(this.grpc)),
                Poll::Pending => return Poll::Pending,
            },
            None => {
                // SAFETY: not `State::Inner` (checked above), so nothing
                // pinned is moved by the replace.
                let old = std::mem::replace(
                    unsafe { state.as_mut().get_unchecked_mut() },
                    State::Finished,
                );
                match old {
                    State::Reply(reply) => Ok(reply.into_response(this.grpc)),
                    _ => panic!("ResponseFuture polled after completion"),
                }
            }
        };
        state.set(State::Finished);
        this.done = None;
        this.grace = Grace::default();
        Poll::Ready((output, this.handle.take()))
    }
}

/// The handler's grace after its request context ended (see
/// [`ContextLayer::handler_grace`]).
#[derive(Default)]
pub(super) struct Grace {
    pub(super) period: Duration,
    /// The request context's err, once it ended.
    pub(super) ended: Option<Error>,
    /// The grace timer: a context of its own that ends `period` after
    /// `ended` was set (its handle disarms it when dropped).
    pub(super) timer: Option<(DoneOwned, CancelHandle)>,
}

impl Grace {
    /// Ready with the request context's err once the context ended and the
    /// grace passed; `done` is `None` when the layer never answers.
    pub(super) fn poll(
        &mut self,
        done: Option<&mut DoneOwned>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Error> {
        let err = match self.ended {
            Some(err) => err,
            None => match done.map(|done| Pin::new(done).poll(cx)) {
                Some(Poll::Ready(err)) => {
                    self.ended = Some(err);
                    if self.period.is_zero() {
                        return Poll::Ready(err);
                    }
                    let (timer, handle) = Context::background().with_timeout(self.period);
                    self.timer = Some((timer.done_owned(), handle));
                    err
                }
                _ => return Poll::Pending,
            },
        };
        match self
            .timer
            .as_mut()
            .map(|(timer, _)| Pin::new(timer).poll(cx))
        {
            Some(Poll::Pending) => Poll::Pending,
            _ => Poll::Ready(err),
        }
    }
}

impl<F, B> Drop for ResponseFuture<F, B> {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.cancel_as(How::RequestAborted, Some(RequestAborted.into()));
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("replying", &matches!(self.state, State::Reply(_)))
            .field("grpc", &self.grpc)
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl<F> State<F> {
    /// The pinned inner future, if the handler is still running.
    pub(super) fn inner(self: Pin<&mut Self>) -> Option<Pin<&mut F>> {
        // SAFETY: the future is structurally pinned in `State::Inner`; it
        // is only handed out pinned.
        match unsafe { self.get_unchecked_mut() } {
            // SAFETY: see above.
            State::Inner(future) => Some(unsafe { Pin::new_unchecked(future) }),
            _ => None,
        }
    }
}

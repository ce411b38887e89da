//! The client side of budgets: [`BudgetLayer`] writes the remaining time of
//! a request's context into the outgoing request, in a [`BudgetCodec`]'s
//! header, and stops the call when that context ends.
//!
//! Which context: the request's own, if its extensions hold a [`Context`]
//! (explicit passing), else [`Context::current`] (the request context of
//! the handler making the call, set by
//! [`ContextLayer`](crate::tower::ContextLayer)), else none: the request
//! goes out unchanged.
//!
//! Invariants:
//! - **K1** The inner service is not called for a context that is done or
//!   whose deadline has passed: the call ends at once with the context's
//!   [`Error`] ([`Error::DeadlineExceeded`] for a deadline that passed).
//! - **K2** The header is the codec's encoding of the remaining time,
//!   measured just before the inner call (rounded up by the codec); an
//!   existing header of that name is replaced.
//! - **K3** If the context ends before the inner future completes, the
//!   inner future is dropped (hyper then resets the HTTP/2 stream) and the
//!   call ends with the context's [`Error`].
//! - **K4** If the inner call fails once the context has ended (or its
//!   deadline has passed), the call ends with the context's [`Error`], not
//!   the inner one: the transport saw the end first (tonic's own
//!   `grpc-timeout` timer, say).
//! - **K5** A response that arrives once the context has ended (or its
//!   deadline has passed) goes through the policy's
//!   [`answered`](OnEnded::answered): passed on by default; a gRPC failure
//!   in trailers-only form becomes the context's end under
//!   [`AsGrpcStatus`](crate::tower::AsGrpcStatus) (a server's own timer may
//!   answer first at the same deadline).
//!
//! "Ends with the context's [`Error`]" is the [`OnEnded`] policy's answer:
//! the error itself ([`AsError`], the default), or for gRPC requests a
//! gRPC status ([`AsGrpcStatus`](crate::tower::AsGrpcStatus), for tonic's `Channel`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use ::http::Request;
use ::tower_layer::Layer;
use ::tower_service::Service;

use super::budget::{BudgetCodec, GrpcTimeout};
use super::ended::{AsError, BoxError, OnEnded};
use super::reply::is_grpc;
use crate::{Context, DoneOwned, Error};

/// A [`Layer`] for outgoing HTTP requests (hyper, tonic's `Channel`, any
/// tower HTTP client) that sends the remaining budget of the caller's
/// context along and abandons the call when that context ends (K1-K5).
///
/// `R` is what a call whose context ended answers ([`OnEnded`]): the
/// context's [`Error`] by default; on a tonic `Channel`, use
/// [`on_ended`](BudgetLayer::on_ended)`(`[`AsGrpcStatus`](crate::tower::AsGrpcStatus)`)` so that the
/// caller sees DEADLINE_EXCEEDED or CANCELLED.
///
/// ```
/// use std::time::Duration;
/// use ctxtree::{tower::{BudgetLayer, ConnectTimeout}, Context, Error};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # futures::executor::block_on(async {
/// let transport = service_fn(|req: http::Request<()>| async move {
///     // What the next service receives:
///     let sent = req.headers()["connect-timeout-ms"].to_str().unwrap().parse::<u64>().unwrap();
///     Ok::<_, std::io::Error>(http::Response::new(sent))
/// });
/// let client = BudgetLayer::new().codec(ConnectTimeout).layer(transport);
///
/// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(300));
/// let sent = ctx.scope(client.clone().oneshot(http::Request::new(()))).await.unwrap();
/// assert!(*sent.body() <= 300 && *sent.body() > 200);
///
/// let (done, cancel) = Context::background().with_cancel();
/// cancel.cancel();
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(done); // explicit passing
/// let err = client.oneshot(req).await.unwrap_err(); // not sent (K1)
/// assert_eq!(err.downcast_ref::<Error>(), Some(&Error::Canceled));
/// # });
/// ```
#[derive(Clone)]
pub struct BudgetLayer<R = AsError> {
    codec: Arc<dyn BudgetCodec>,
    on_ended: R,
}

impl BudgetLayer {
    /// A layer writing `grpc-timeout` ([`GrpcTimeout`]).
    ///
    /// ```
    /// let layer = ctxtree::tower::BudgetLayer::new();
    /// assert!(format!("{layer:?}").contains("grpc-timeout"));
    /// ```
    pub fn new() -> BudgetLayer {
        BudgetLayer {
            codec: Arc::new(GrpcTimeout),
            on_ended: AsError,
        }
    }
}

impl<R> BudgetLayer<R> {
    /// Writes the budget with `codec` instead.
    ///
    /// ```
    /// use ctxtree::tower::{BudgetLayer, EnvoyUpstreamTimeout};
    ///
    /// let layer = BudgetLayer::new().codec(EnvoyUpstreamTimeout); // ask Envoy to enforce it
    /// assert!(format!("{layer:?}").contains("x-envoy-upstream-rq-timeout-ms"));
    /// ```
    pub fn codec(mut self, codec: impl BudgetCodec) -> BudgetLayer<R> {
        self.codec = Arc::new(codec);
        self
    }

    /// Answers calls whose context ended with `on_ended` (see [`OnEnded`]):
    /// [`AsGrpcStatus`](crate::tower::AsGrpcStatus) for tonic's `Channel`,
    /// so that its client decodes DEADLINE_EXCEEDED or CANCELLED instead of
    /// UNKNOWN.
    ///
    /// ```
    /// use ctxtree::{tower::{AsGrpcStatus, BudgetLayer}, Context};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # futures::executor::block_on(async {
    /// let channel = service_fn(|_req: http::Request<()>| async {
    ///     Ok::<_, std::io::Error>(http::Response::new(String::new()))
    /// });
    /// let client = BudgetLayer::new().on_ended(AsGrpcStatus).layer(channel);
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// cancel.cancel();
    /// let mut req = http::Request::new(());
    /// req.headers_mut().insert("content-type", "application/grpc".parse().unwrap());
    /// let res = ctx.scope(client.oneshot(req)).await.unwrap(); // not sent
    /// assert_eq!(res.headers()["grpc-status"], "1"); // CANCELLED
    /// # });
    /// ```
    pub fn on_ended<R2>(self, on_ended: R2) -> BudgetLayer<R2> {
        BudgetLayer {
            codec: self.codec,
            on_ended,
        }
    }
}

impl Default for BudgetLayer {
    fn default() -> BudgetLayer {
        BudgetLayer::new()
    }
}

impl<R: fmt::Debug> fmt::Debug for BudgetLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetLayer")
            .field("header", &self.codec.header_name())
            .field("on_ended", &self.on_ended)
            .finish()
    }
}

impl<S, R: Clone> Layer<S> for BudgetLayer<R> {
    type Service = BudgetService<S, R>;

    fn layer(&self, inner: S) -> BudgetService<S, R> {
        BudgetService {
            inner,
            codec: self.codec.clone(),
            on_ended: self.on_ended.clone(),
        }
    }
}

/// The [`Service`] made by [`BudgetLayer`].
///
/// ```
/// use std::time::Duration;
/// use ctxtree::{tower::BudgetLayer, Context};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # futures::executor::block_on(async {
/// let client = BudgetLayer::new().layer(service_fn(|req: http::Request<()>| async move {
///     Ok::<_, std::io::Error>(req.headers().contains_key("grpc-timeout"))
/// }));
/// // No context anywhere: sent unchanged.
/// assert!(!client.clone().oneshot(http::Request::new(())).await.unwrap());
/// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(1));
/// assert!(ctx.scope(client.oneshot(http::Request::new(()))).await.unwrap());
/// # });
/// ```
#[derive(Clone)]
pub struct BudgetService<S, R = AsError> {
    inner: S,
    codec: Arc<dyn BudgetCodec>,
    on_ended: R,
}

impl<S: fmt::Debug, R: fmt::Debug> fmt::Debug for BudgetService<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetService")
            .field("inner", &self.inner)
            .field("header", &self.codec.header_name())
            .field("on_ended", &self.on_ended)
            .finish()
    }
}

impl<S, B, R> Service<Request<B>> for BudgetService<S, R>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
    R: OnEnded<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BudgetFuture<S::Future, R>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let ctx = req
            .extensions()
            .get::<Context>()
            .cloned()
            .or_else(Context::current);
        let mut future = BudgetFuture {
            state: Call::Failed(None),
            done: None,
            ctx: None,
            on_ended: self.on_ended.clone(),
            grpc: is_grpc(req.headers()),
        };
        let Some(ctx) = ctx else {
            future.state = Call::Inner(self.inner.call(req));
            return future;
        };
        if let Some(err) = ctx.err() {
            future.state = Call::Failed(Some(err)); // K1
            return future;
        }
        if let Some(remaining) = ctx.remaining() {
            if remaining.is_zero() {
                future.state = Call::Failed(Some(Error::DeadlineExceeded)); // K1
                return future;
            }
            let header = self.codec.header_name();
            req.headers_mut()
                .insert(header, self.codec.encode(remaining)); // K2
        }
        future.state = Call::Inner(self.inner.call(req));
        future.done = Some(ctx.done_owned());
        future.ctx = Some(ctx);
        future
    }
}

/// The context's err, or [`Error::DeadlineExceeded`] once its deadline has
/// passed even if its timer has not fired yet.
fn ended(ctx: &Context) -> Option<Error> {
    ctx.err().or_else(|| {
        ctx.remaining()
            .filter(|left| left.is_zero())
            .map(|_| Error::DeadlineExceeded)
    })
}

/// The response future of [`BudgetService`]: the inner call, abandoned
/// when the context ends (K3), its failure after the context ended reported
/// as the context's end (K4).
///
/// ```
/// use std::time::{Duration, Instant};
/// use ctxtree::{tower::BudgetLayer, Context, Error};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # futures::executor::block_on(async {
/// let slow = BudgetLayer::new().layer(service_fn(|_req: http::Request<()>| {
///     std::future::pending::<Result<(), std::io::Error>>() // a backend that never answers
/// }));
/// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(20));
/// let err = ctx.scope(slow.oneshot(http::Request::new(()))).await.unwrap_err();
/// assert_eq!(err.downcast_ref::<Error>(), Some(&Error::DeadlineExceeded));
/// # });
/// ```
pub struct BudgetFuture<F, R = AsError> {
    /// Structurally pinned (the future in `Call::Inner`): never moved out,
    /// replaced only through `Pin::set` (drop in place).
    state: Call<F>,
    /// Not pinned (`DoneOwned` is `Unpin`): the caller's context ending.
    done: Option<DoneOwned>,
    /// Not pinned: the caller's context, while the call is in flight (K4).
    ctx: Option<Context>,
    /// Not pinned: the answer for a call whose context ended.
    on_ended: R,
    /// Not pinned: the request is a gRPC request.
    grpc: bool,
}

enum Call<F> {
    Inner(F),
    Failed(Option<Error>),
}

impl<F, T, E, R> Future for BudgetFuture<F, R>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    R: OnEnded<T>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        // SAFETY: pin projection: `state` is structurally pinned (see the
        // field), `done` is not; no `Drop` impl; `BudgetFuture` is `Unpin`
        // only when `F` is.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: `state` lives in the pinned `*this` (see above).
        let mut state = unsafe { Pin::new_unchecked(&mut this.state) };
        // SAFETY: the future in `Call::Inner` is only handed out pinned.
        let inner = match unsafe { state.as_mut().get_unchecked_mut() } {
            // SAFETY: see above.
            Call::Inner(future) => unsafe { Pin::new_unchecked(future) },
            Call::Failed(err) => {
                let err = err.take().expect("BudgetFuture polled after completion");
                return Poll::Ready(this.on_ended.answer(err, this.grpc));
            }
        };
        if let Poll::Ready(output) = inner.poll(cx) {
            this.done = None;
            let ctx = this.ctx.take();
            return Poll::Ready(match (output, ctx.as_ref().and_then(ended)) {
                (Err(_), Some(err)) => this.on_ended.answer(err, this.grpc), // K4
                (Ok(res), Some(err)) => this.on_ended.answered(res, err, this.grpc), // K5
                (output, None) => output.map_err(Into::into),
            });
        }
        match this.done.as_mut().map(|done| Pin::new(done).poll(cx)) {
            Some(Poll::Ready(err)) => {
                // K3: drop the call in place, then answer.
                state.set(Call::Failed(None));
                this.done = None;
                this.ctx = None;
                Poll::Ready(this.on_ended.answer(err, this.grpc))
            }
            _ => Poll::Pending,
        }
    }
}

impl<F, R> fmt::Debug for BudgetFuture<F, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetFuture")
            .field("failed", &matches!(self.state, Call::Failed(_)))
            .field("done", &self.done)
            .field("grpc", &self.grpc)
            .finish_non_exhaustive()
    }
}

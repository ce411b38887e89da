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
//!   whose deadline has passed: the call fails at once with the context's
//!   [`Error`] ([`Error::DeadlineExceeded`] for a deadline that passed).
//! - **K2** The header is the codec's encoding of the remaining time,
//!   measured just before the inner call (rounded up by the codec); an
//!   existing header of that name is replaced.
//! - **K3** If the context ends before the inner future completes, the
//!   inner future is dropped (hyper then resets the HTTP/2 stream) and the
//!   call fails with the context's [`Error`].

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use ::http::Request;
use ::tower_layer::Layer;
use ::tower_service::Service;

use super::budget::{BudgetCodec, GrpcTimeout};
use crate::{Context, DoneOwned, Error};

/// The error type of [`BudgetService`]: the inner service's error, or the
/// context's [`Error`] (downcast it to tell them apart).
///
/// Through tonic's client, the context's error arrives as a `Status` with
/// code UNKNOWN, message `context deadline exceeded` (or `context
/// canceled`) and the [`Error`] as its `source()`; tonic's own
/// `grpc-timeout` enforcement, which may fire first, reports CANCELLED.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// A [`Layer`] for outgoing HTTP requests (hyper, tonic's `Channel`, any
/// tower HTTP client) that sends the remaining budget of the caller's
/// context along and abandons the call when that context ends (K1-K3).
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
pub struct BudgetLayer {
    codec: Arc<dyn BudgetCodec>,
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
        }
    }

    /// Writes the budget with `codec` instead.
    ///
    /// ```
    /// use ctxtree::tower::{BudgetLayer, EnvoyUpstreamTimeout};
    ///
    /// let layer = BudgetLayer::new().codec(EnvoyUpstreamTimeout); // ask Envoy to enforce it
    /// assert!(format!("{layer:?}").contains("x-envoy-upstream-rq-timeout-ms"));
    /// ```
    pub fn codec(mut self, codec: impl BudgetCodec) -> BudgetLayer {
        self.codec = Arc::new(codec);
        self
    }
}

impl Default for BudgetLayer {
    fn default() -> BudgetLayer {
        BudgetLayer::new()
    }
}

impl fmt::Debug for BudgetLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetLayer")
            .field("header", &self.codec.header_name())
            .finish()
    }
}

impl<S> Layer<S> for BudgetLayer {
    type Service = BudgetService<S>;

    fn layer(&self, inner: S) -> BudgetService<S> {
        BudgetService {
            inner,
            codec: self.codec.clone(),
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
pub struct BudgetService<S> {
    inner: S,
    codec: Arc<dyn BudgetCodec>,
}

impl<S: fmt::Debug> fmt::Debug for BudgetService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetService")
            .field("inner", &self.inner)
            .field("header", &self.codec.header_name())
            .finish()
    }
}

impl<S, B> Service<Request<B>> for BudgetService<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BudgetFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let ctx = req
            .extensions()
            .get::<Context>()
            .cloned()
            .or_else(Context::current);
        let Some(ctx) = ctx else {
            return BudgetFuture {
                state: Call::Inner(self.inner.call(req)),
                done: None,
            };
        };
        let fail = |err: Error| BudgetFuture {
            state: Call::Failed(Some(err)),
            done: None,
        };
        if let Some(err) = ctx.err() {
            return fail(err); // K1
        }
        if let Some(remaining) = ctx.remaining() {
            if remaining.is_zero() {
                return fail(Error::DeadlineExceeded); // K1
            }
            let header = self.codec.header_name();
            req.headers_mut()
                .insert(header, self.codec.encode(remaining)); // K2
        }
        BudgetFuture {
            state: Call::Inner(self.inner.call(req)),
            done: Some(ctx.done_owned()),
        }
    }
}

/// The response future of [`BudgetService`]: the inner call, abandoned
/// when the context ends (K3).
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
pub struct BudgetFuture<F> {
    /// Structurally pinned (the future in `Call::Inner`): never moved out,
    /// replaced only through `Pin::set` (drop in place).
    state: Call<F>,
    /// Not pinned (`DoneOwned` is `Unpin`): the caller's context ending.
    done: Option<DoneOwned>,
}

enum Call<F> {
    Inner(F),
    Failed(Option<Error>),
}

impl<F, T, E> Future for BudgetFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
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
                return Poll::Ready(Err(Box::new(err)));
            }
        };
        if let Poll::Ready(output) = inner.poll(cx) {
            this.done = None;
            return Poll::Ready(output.map_err(Into::into));
        }
        match this.done.as_mut().map(|done| Pin::new(done).poll(cx)) {
            Some(Poll::Ready(err)) => {
                // K3: drop the call in place, then fail.
                state.set(Call::Failed(None));
                this.done = None;
                Poll::Ready(Err(Box::new(err)))
            }
            _ => Poll::Pending,
        }
    }
}

impl<F> fmt::Debug for BudgetFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetFuture")
            .field("failed", &matches!(self.state, Call::Failed(_)))
            .field("done", &self.done)
            .finish()
    }
}

//! Request contexts that live until the response body ends:
//! [`ContextLayer::until_body_end`](crate::tower::ContextLayer::until_body_end).
//!
//! [`BodyContextService`] runs [`ContextService`](crate::tower::ContextService)'s request path unchanged
//! and, instead of canceling the request context when the response head is
//! ready, moves its [`CancelHandle`] into the response body, a
//! [`ContextBody`]. Invariants:
//! - **R1** The request context ends exactly once, at the first of: the
//!   body ends (it returns `None` or an error, or reports `is_end_stream`
//!   after a frame or when dropped, as hyper drops a finished body without
//!   polling it again) with err [`Error::Canceled`](crate::Error::Canceled);
//!   the body is dropped before its end (cause [`RequestAborted`]); the
//!   response future fails or is dropped (as with
//!   [`ContextLayer`](crate::tower::ContextLayer)).
//! - **R2** The layer's own replies carry no handle (their context, if any,
//!   already ended).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use ::http::{Request, Response};
use ::http_body::{Body, Frame, SizeHint};
use ::tower_layer::Layer;
use ::tower_service::Service;

use super::layer::{ContextLayer, RequestAborted};
use super::response::ResponseFuture;
use super::service::ContextService;
use crate::tree::state::How;
use crate::CancelHandle;

/// A [`ContextLayer`] whose request contexts live until the response body
/// ends: made by [`ContextLayer::until_body_end`].
///
/// ```
/// use ctxtree::{tower::ContextLayer, Context};
///
/// let layer = ContextLayer::new(Context::background()).until_body_end();
/// let _ = format!("{layer:?}");
/// ```
#[derive(Clone, Debug)]
pub struct BodyContextLayer {
    pub(super) layer: ContextLayer,
}

impl BodyContextLayer {
    pub(crate) fn new(layer: ContextLayer) -> BodyContextLayer {
        BodyContextLayer { layer }
    }
}

impl<S> Layer<S> for BodyContextLayer {
    type Service = BodyContextService<S>;

    fn layer(&self, inner: S) -> BodyContextService<S> {
        BodyContextService {
            inner: ContextService {
                inner,
                layer: self.layer.clone(),
            },
        }
    }
}

/// The [`Service`] made by [`BodyContextLayer`]: [`ContextService`](crate::tower::ContextService) with a
/// [`ContextBody`] around each response body.
///
/// ```
/// use ctxtree::{tower::{BodyContextService, ContextLayer}, Context, Error};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # futures::executor::block_on(async {
/// let svc: BodyContextService<_> = ContextLayer::new(Context::background())
///     .until_body_end()
///     .layer(service_fn(|_req: http::Request<String>| async {
///         Ok::<_, Error>(http::Response::new(String::from("ok")))
///     }));
/// let res = svc.oneshot(http::Request::new(String::new())).await.unwrap();
/// assert_eq!(res.body().get_ref(), "ok");
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct BodyContextService<S> {
    pub(super) inner: ContextService<S>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BodyContextService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body + Default,
{
    type Response = Response<ContextBody<ResBody>>;
    type Error = S::Error;
    type Future = BodyResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        BodyResponseFuture {
            inner: self.inner.call(req),
        }
    }
}

/// The response future of [`BodyContextService`]: [`ResponseFuture`], with
/// the request context's handle moved into the response's [`ContextBody`].
///
/// ```
/// use ctxtree::{tower::{request_context, ContextLayer, RequestAborted}, Context, Error};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # futures::executor::block_on(async {
/// let (tx, rx) = std::sync::mpsc::channel();
/// let svc = ContextLayer::new(Context::background()).until_body_end().layer(service_fn(
///     move |req: http::Request<String>| {
///         tx.send(request_context(&req).unwrap().clone()).unwrap();
///         async { Ok::<_, Error>(http::Response::new(String::from("never read"))) }
///     },
/// ));
/// let res = svc.oneshot(http::Request::new(String::new())).await.unwrap();
/// drop(res); // the client went away before the body was sent
/// let cause = rx.recv().unwrap().cause().unwrap();
/// assert!(cause.downcast_ref::<RequestAborted>().is_some());
/// # });
/// ```
pub struct BodyResponseFuture<F, B> {
    /// Structurally pinned.
    pub(super) inner: ResponseFuture<F, B>,
}

impl<F, B, E> Future for BodyResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body + Default,
{
    type Output = Result<Response<ContextBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        // SAFETY: pin projection of the only field, which is structurally
        // pinned: never moved out of `self`, no `Drop` impl here, and
        // `BodyResponseFuture` is `Unpin` only when the inner future is.
        let inner = unsafe { self.map_unchecked_mut(|this| &mut this.inner) };
        let (output, handle) = std::task::ready!(inner.poll_parts(cx));
        Poll::Ready(match output {
            Ok(res) => Ok(res.map(|body| ContextBody {
                body,
                handle,
                ended: B::is_end_stream,
            })),
            Err(err) => {
                drop(handle); // cancels (R1)
                Err(err)
            }
        })
    }
}

impl<F, B> fmt::Debug for BodyResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyResponseFuture")
            .field("inner", &self.inner)
            .finish()
    }
}

/// A response body that holds its request context's [`CancelHandle`]: the
/// context ends when the body does (R1). Every frame, the size hint and
/// `is_end_stream` are the wrapped body's.
///
/// ```
/// use ctxtree::tower::ContextBody;
///
/// let body: ContextBody<String> = ContextBody::default(); // no context held
/// assert_eq!(body.get_ref(), "");
/// assert_eq!(body.into_inner(), "");
/// ```
pub struct ContextBody<B> {
    /// Structurally pinned.
    pub(super) body: B,
    /// Not pinned. Taken when the body ends or fails (R1).
    pub(super) handle: Option<CancelHandle>,
    /// `B::is_end_stream`, for `Drop` (which cannot require `B: Body`).
    pub(super) ended: fn(&B) -> bool,
}

impl<B> ContextBody<B> {
    /// The wrapped body.
    ///
    /// ```
    /// let body = ctxtree::tower::ContextBody::<String>::default();
    /// assert!(body.get_ref().is_empty());
    /// ```
    pub fn get_ref(&self) -> &B {
        &self.body
    }

    /// The wrapped body; the request context ends now (as if dropped: cause
    /// [`RequestAborted`], unless the body had already ended).
    ///
    /// ```
    /// let body = ctxtree::tower::ContextBody::<String>::default();
    /// assert_eq!(body.into_inner(), "");
    /// ```
    pub fn into_inner(mut self) -> B
    where
        B: Default,
    {
        std::mem::take(&mut self.body)
    }
}

impl<B: Default> Default for ContextBody<B> {
    fn default() -> ContextBody<B> {
        ContextBody {
            body: B::default(),
            handle: None,
            ended: |_| true,
        }
    }
}

impl<B: Body> Body for ContextBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        // SAFETY: pin projection: `body` is structurally pinned (never moved
        // out while pinned: `into_inner` takes `self` by value, so only an
        // unpinned `ContextBody`), `handle` is not; `Drop` below touches only
        // `handle`, and `ContextBody` is `Unpin` only when `B` is.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above.
        let body = unsafe { Pin::new_unchecked(&mut this.body) };
        let frame = std::task::ready!(body.poll_frame(cx));
        if matches!(frame, None | Some(Err(_))) || this.body.is_end_stream() {
            if let Some(handle) = this.handle.take() {
                handle.cancel(); // the body ended (R1)
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B> Drop for ContextBody<B> {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            if (self.ended)(&self.body) {
                handle.cancel(); // finished, not polled to `None` (R1)
            } else {
                handle.cancel_as(How::RequestAborted, Some(RequestAborted.into()));
                // dropped early (R1)
            }
        }
    }
}

impl<B> fmt::Debug for ContextBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextBody")
            .field("holds_context", &self.handle.is_some())
            .finish_non_exhaustive()
    }
}

impl ContextLayer {
    /// A layer whose request contexts live until the response *body* ends
    /// (or is dropped), not only until the response head is ready: for
    /// streaming responses (server-streaming RPCs, server-sent events,
    /// large downloads) whose producer works under the request context. The
    /// response body becomes a [`ContextBody`] holding the context's
    /// [`CancelHandle`]: the context is canceled with [`Error::Canceled`](crate::Error::Canceled)
    /// when the body ends or fails, and with cause [`RequestAborted`] when
    /// it is dropped before that (the client went away).
    ///
    /// ```
    /// use ctxtree::{tower::{request_context, ContextLayer}, Context, Error};
    /// use http_body_util::BodyExt;
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # futures::executor::block_on(async {
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let svc = ContextLayer::new(Context::background()).until_body_end().layer(service_fn(
    ///     move |req: http::Request<String>| {
    ///         tx.send(request_context(&req).unwrap().clone()).unwrap();
    ///         async { Ok::<_, Error>(http::Response::new(String::from("streamed"))) }
    ///     },
    /// ));
    /// let res = svc.oneshot(http::Request::new(String::new())).await.unwrap();
    /// let ctx = rx.recv().unwrap();
    /// assert!(!ctx.is_done()); // the head is ready, the body still to come
    /// let body = res.into_body().collect().await.unwrap().to_bytes();
    /// assert_eq!(&body[..], b"streamed");
    /// assert_eq!(ctx.err(), Some(Error::Canceled)); // ended with the body
    /// # });
    /// ```
    pub fn until_body_end(self) -> BodyContextLayer {
        BodyContextLayer::new(self)
    }
}

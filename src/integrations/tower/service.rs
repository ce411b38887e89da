//! The service the layer wraps a handler in: one request context per
//! request.

use std::marker::PhantomData;
use std::task::{Context as TaskContext, Poll};

use ::http::{Request, Response};
use ::tower_layer::Layer;
use ::tower_service::Service;

use super::layer::ContextLayer;
use super::reply::{is_grpc, Reply};
use super::response::{Grace, ResponseFuture, State};
use crate::Error;

/// The [`Service`] made by [`ContextLayer`]: gives each request a
/// [`Context`](crate::Context) in its extensions, then calls the inner service.
///
/// ```
/// use ctxtree::{tower::{request_context, ContextLayer}, Context, Error};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # futures::executor::block_on(async {
/// let svc = ContextLayer::new(Context::background()).layer(service_fn(
///     |req: http::Request<String>| async move {
///         let ctx = request_context(&req).unwrap();
///         Ok::<_, Error>(http::Response::new(format!("done: {}", ctx.is_done())))
///     },
/// ));
/// let res = svc.oneshot(http::Request::new(String::new())).await.unwrap();
/// assert_eq!(res.body(), "done: false");
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct ContextService<S> {
    pub(crate) inner: S,
    pub(crate) layer: ContextLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ContextService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let grpc = is_grpc(req.headers());
        let reject = |reply: Reply| ResponseFuture {
            state: State::Reply(reply),
            handle: None,
            done: None,
            grace: Grace::default(),
            grpc,
            _body: PhantomData,
        };
        let timeout = match self.layer.timeout_for(req.headers()) {
            Ok(timeout) => timeout,
            Err(err) => return reject(Reply::InvalidArgument(err.to_string())),
        };
        // The budget on the request's span, if it declared the field
        // (`ctxtree.budget_ms = tracing::field::Empty`).
        #[cfg(feature = "tracing")]
        tracing::Span::current().record(
            "ctxtree.budget_ms",
            timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        );
        if let (Some(timeout), Some(min)) = (timeout, self.layer.min_timeout) {
            if timeout < min {
                return reject(Reply::DeadlineExceeded);
            }
        }
        let (ctx, handle) = match timeout {
            Some(timeout) => self.layer.root.with_timeout(timeout),
            None => self.layer.root.with_cancel(),
        };
        match ctx.err() {
            // Shutting down (or the root's own deadline passed): don't start.
            Some(Error::Canceled) => return reject(Reply::Unavailable),
            Some(Error::DeadlineExceeded) => return reject(Reply::DeadlineExceeded),
            None => {}
        }
        // Without a grace, nothing to watch: the handler always answers.
        let done = self.layer.handler_grace.map(|_| ctx.done_owned());
        req.extensions_mut().insert(ctx.clone());
        // The handler runs with its request context as `Context::current`.
        let inner = &mut self.inner;
        let future = ctx.in_scope(|| inner.call(req));
        ResponseFuture {
            state: State::Inner(ctx.scope(future)),
            handle: Some(handle),
            done,
            grace: Grace {
                period: self.layer.handler_grace.unwrap_or_default(),
                ..Grace::default()
            },
            grpc,
            _body: PhantomData,
        }
    }
}

impl<S> Layer<S> for ContextLayer {
    type Service = ContextService<S>;

    fn layer(&self, inner: S) -> ContextService<S> {
        ContextService {
            inner,
            layer: self.clone(),
        }
    }
}

//! A tower [`Layer`] that gives each HTTP request its own [`Context`], with
//! the deadline its client sent in a `grpc-timeout` header.
//!
//! [`ContextLayer`] wraps a service; for every request it derives a child of
//! its root context, bounded by the request's `grpc-timeout` header (capped
//! by [`ContextLayer::max_timeout`]) or by [`ContextLayer::default_timeout`],
//! and puts it in the request's extensions, where handlers read it with
//! [`request_context`]. On the client side, [`set_grpc_timeout`] writes a
//! context's remaining time into an outgoing request's headers.
//!
//! ```
//! use std::time::Duration;
//! use ctxtree::{tower::{request_context, set_grpc_timeout, ContextLayer}, Context, Error};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # futures::executor::block_on(async {
//! // Client side: this call must finish within 5 s; send that along.
//! let (call, _end_call) = Context::background().with_timeout(Duration::from_secs(5));
//! let client_deadline = call.deadline().unwrap();
//! let mut req = http::Request::new(String::new());
//! set_grpc_timeout(&call, req.headers_mut()).unwrap();
//!
//! // Server side: the handler's context ends when the client gives up.
//! let (root, _shutdown) = Context::background().with_cancel();
//! let server = ContextLayer::new(root).layer(service_fn(move |req: http::Request<String>| async move {
//!     let deadline = request_context(&req).unwrap().deadline().unwrap();
//!     assert!(deadline >= client_deadline); // never earlier (rounded up)...
//!     assert!(deadline < client_deadline + Duration::from_secs(1)); // ...and close to it
//!     Ok::<_, Error>(http::Response::new(String::from("ok")))
//! }));
//! assert_eq!(server.oneshot(req).await.unwrap().body(), "ok");
//! # });
//! ```
//!
//! Invariants:
//! - Every request that reaches the inner service carries a fresh child of
//!   the layer's root context; canceling the root cancels every in-flight
//!   request context (graceful shutdown).
//! - A request context never outlives its [`ResponseFuture`]: it is canceled
//!   with [`Error::Canceled`] when the future completes (`Ok` or `Err`), and
//!   with cause [`RequestAborted`] when the future is dropped before that
//!   (hyper drops it when the client goes away). A streaming response body
//!   outlives it.
//! - A request's deadline is never later than `now + max_timeout`.
//! - [`encode_grpc_timeout`] rounds up: a deadline sent on the wire is never
//!   earlier than the sender's.
//! - Parsing is strict (1 to 8 ASCII digits, then one unit) and never panics.
//!   A malformed `grpc-timeout` gets a 400 with a text body and the inner
//!   service is not called (with [`InvalidTimeoutPolicy::Ignore`], the
//!   header is treated as absent).
//!
//! This module has no locks and one `unsafe` block (the pin projection of
//! [`ResponseFuture`]).

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use ::http::header::CONTENT_TYPE;
use ::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use ::tower_layer::Layer;
use ::tower_service::Service;

use crate::{CancelHandle, Context, Error};

pub use super::budget::{
    BudgetCodec, ConnectTimeout, EnvoyExpectedTimeout, EnvoyUpstreamTimeout, GrpcTimeout,
    InvalidBudget,
};

/// The `grpc-timeout` header name.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// headers.insert(ctxtree::tower::GRPC_TIMEOUT, http::HeaderValue::from_static("5S"));
/// assert_eq!(headers["grpc-timeout"], "5S");
/// ```
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The largest `TimeoutValue` the wire format allows: at most 8 digits.
const MAX_VALUE: u64 = 99_999_999;

/// The format of `grpc-timeout`, as the messages of [`InvalidGrpcTimeout`]
/// and [`InvalidBudget`] state it.
macro_rules! grpc_timeout_format {
    () => {
        "1 to 8 digits followed by one of H, M, S, m, u, n"
    };
}

pub(crate) const GRPC_TIMEOUT_FORMAT: &str = grpc_timeout_format!();

/// The message of [`InvalidGrpcTimeout`]; the 400 body is this plus `\n`.
macro_rules! malformed_message {
    () => {
        concat!(
            "malformed grpc-timeout header: expected ",
            grpc_timeout_format!()
        )
    };
}

const REJECT_BODY: &str = concat!(malformed_message!(), "\n");

/// A `grpc-timeout` value that does not follow the gRPC wire format: 1 to 8
/// ASCII digits followed by exactly one unit, `H`, `M`, `S`, `m`, `u` or `n`.
///
/// ```
/// use http::HeaderValue;
/// use ctxtree::tower::parse_grpc_timeout;
///
/// let err = parse_grpc_timeout(&HeaderValue::from_static("1.5S")).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "malformed grpc-timeout header: expected 1 to 8 digits followed by one of H, M, S, m, u, n",
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidGrpcTimeout {
    _private: (),
}

impl fmt::Display for InvalidGrpcTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(malformed_message!())
    }
}

impl StdError for InvalidGrpcTimeout {}

/// Parses a `grpc-timeout` header value (gRPC over HTTP/2: `TimeoutValue`,
/// 1 to 8 ASCII digits, then `TimeoutUnit`: `H`our, `M`inute, `S`econd,
/// `m`illisecond, `u` microsecond or `n`anosecond).
///
/// Strict: no sign, whitespace, fraction or lower-case `s`. Never panics; the
/// largest value, `99999999H`, is about 11,400 years.
///
/// ```
/// use std::time::Duration;
/// use http::HeaderValue;
/// use ctxtree::tower::parse_grpc_timeout;
///
/// assert_eq!(parse_grpc_timeout(&HeaderValue::from_static("50m")), Ok(Duration::from_millis(50)));
/// assert_eq!(parse_grpc_timeout(&HeaderValue::from_static("2M")), Ok(Duration::from_secs(120)));
/// assert!(parse_grpc_timeout(&HeaderValue::from_static("100000000n")).is_err()); // 9 digits
/// assert!(parse_grpc_timeout(&HeaderValue::from_static("1s")).is_err());
/// ```
pub fn parse_grpc_timeout(value: &HeaderValue) -> Result<Duration, InvalidGrpcTimeout> {
    let invalid = InvalidGrpcTimeout { _private: () };
    let (unit, digits) = match value.as_bytes().split_last() {
        Some(split) => split,
        None => return Err(invalid),
    };
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid);
    }
    // At most 8 digits: no overflow in u64.
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Ok(match unit {
        b'H' => Duration::from_secs(n.saturating_mul(3600)),
        b'M' => Duration::from_secs(n.saturating_mul(60)),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return Err(invalid),
    })
}

/// Encodes `timeout` as a `grpc-timeout` value, in the finest unit
/// (`n`, `u`, `m`, `S`, `M`, `H`) whose value fits in 8 digits.
///
/// Rounds up, so the receiver's deadline is never earlier than the sender's;
/// the result is at most one unit longer than `timeout`. Timeouts beyond
/// `99999999H` are clamped to it; zero is `0n`.
///
/// ```
/// use std::time::Duration;
/// use ctxtree::tower::encode_grpc_timeout;
///
/// assert_eq!(encode_grpc_timeout(Duration::from_millis(50)), "50000000n");
/// assert_eq!(encode_grpc_timeout(Duration::from_secs(30)), "30000000u");
/// assert_eq!(encode_grpc_timeout(Duration::from_nanos(100_000_001)), "100001u"); // rounded up
/// assert_eq!(encode_grpc_timeout(Duration::ZERO), "0n");
/// assert_eq!(encode_grpc_timeout(Duration::MAX), "99999999H");
/// ```
pub fn encode_grpc_timeout(timeout: Duration) -> HeaderValue {
    const UNITS: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    let nanos = timeout.as_nanos();
    let (value, unit) = UNITS
        .iter()
        .map(|&(per, unit)| (nanos.div_ceil(per), unit))
        .find(|&(value, _)| value <= u128::from(MAX_VALUE))
        .unwrap_or((u128::from(MAX_VALUE), 'H'));
    HeaderValue::try_from(format!("{value}{unit}"))
        .expect("digits and an ASCII letter are a valid header value")
}

/// Writes `ctx`'s remaining time into `headers` as `grpc-timeout`, for an
/// outgoing request (Go's gRPC client does the same).
///
/// Returns `ctx`'s [`Error`] if it is done, and [`Error::DeadlineExceeded`]
/// if its deadline has passed; leaves `headers` untouched then, and when
/// `ctx` has no deadline.
///
/// ```
/// use std::time::Duration;
/// use ctxtree::{tower::{parse_grpc_timeout, set_grpc_timeout, GRPC_TIMEOUT}, Context, Error};
///
/// let (ctx, cancel) = Context::background().with_timeout(Duration::from_secs(5));
/// let mut headers = http::HeaderMap::new();
/// set_grpc_timeout(&ctx, &mut headers)?;
/// let sent = parse_grpc_timeout(&headers[GRPC_TIMEOUT]).unwrap();
/// assert!(sent <= Duration::from_secs(5) && sent > Duration::from_secs(4));
///
/// cancel.cancel();
/// assert_eq!(set_grpc_timeout(&ctx, &mut headers), Err(Error::Canceled));
/// # Ok::<(), Error>(())
/// ```
pub fn set_grpc_timeout(ctx: &Context, headers: &mut HeaderMap) -> Result<(), Error> {
    if let Some(err) = ctx.err() {
        return Err(err);
    }
    if let Some(deadline) = ctx.deadline() {
        let remaining = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(Error::DeadlineExceeded)?;
        headers.insert(GRPC_TIMEOUT, encode_grpc_timeout(remaining));
    }
    Ok(())
}

/// The context [`ContextLayer`] derived for `req`, if any.
///
/// ```
/// use ctxtree::{tower::request_context, Context};
///
/// let mut req = http::Request::new(());
/// assert!(request_context(&req).is_none());
/// req.extensions_mut().insert(Context::background());
/// assert!(request_context(&req).is_some());
/// ```
pub fn request_context<B>(req: &Request<B>) -> Option<&Context> {
    req.extensions().get::<Context>()
}

/// The cause of a request context canceled because its response future was
/// dropped before it completed: the client went away (hyper drops the
/// future when the connection closes) or a timeout layer gave up.
///
/// ```
/// use ctxtree::tower::RequestAborted;
///
/// let cause = ctxtree::Cause::from(RequestAborted);
/// assert!(cause.downcast_ref::<RequestAborted>().is_some());
/// assert_eq!(cause.to_string(), "request aborted before its response was ready");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RequestAborted;

impl fmt::Display for RequestAborted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request aborted before its response was ready")
    }
}

impl StdError for RequestAborted {}

/// What [`ContextLayer`] does with a malformed `grpc-timeout` header.
///
/// ```
/// use ctxtree::{tower::{ContextLayer, InvalidTimeoutPolicy}, Context, Error};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # futures::executor::block_on(async {
/// assert_eq!(InvalidTimeoutPolicy::default(), InvalidTimeoutPolicy::Reject);
/// let svc = ContextLayer::new(Context::background()).layer(service_fn(
///     |_req: http::Request<String>| async { Ok::<_, Error>(http::Response::new(String::from("handled"))) },
/// ));
/// let bad = http::Request::builder().header("grpc-timeout", "1.5S").body(String::new()).unwrap();
/// let res = svc.oneshot(bad).await.unwrap(); // the handler was not called
/// assert_eq!(res.status(), http::StatusCode::BAD_REQUEST);
/// assert_eq!(res.headers()["content-type"], "text/plain");
/// assert!(res.body().starts_with("malformed grpc-timeout header"));
/// # });
/// ```
///
/// `#[non_exhaustive]`: a later release may add a policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InvalidTimeoutPolicy {
    /// Answer `400 Bad Request` (`text/plain`, the [`InvalidGrpcTimeout`]
    /// message) without calling the inner service. The default.
    #[default]
    Reject,
    /// Treat the header as absent.
    Ignore,
}

/// A [`Layer`] that gives each HTTP request a [`Context`]: a child of `root`,
/// bounded by the request's `grpc-timeout` header or a default timeout, in
/// the request's extensions (read it with [`request_context`]).
///
/// - Graceful shutdown: cancel `root`; every in-flight request context is a
///   descendant of it and is canceled with the root's err and cause.
/// - The request context ends when the inner service's response future
///   completes, that is when the response *head* is ready, like Go's
///   `net/http` ending a request's context when its handler returns. A
///   streaming body outlives it: work that produces the body after that must
///   not rely on the request context (derive its own context, and bound it).
/// - A malformed header is answered with `400 Bad Request` unless the policy
///   is [`InvalidTimeoutPolicy::Ignore`].
///
/// ```
/// use std::time::Duration;
/// use ctxtree::{tower::{request_context, ContextLayer}, Context, Error};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # futures::executor::block_on(async {
/// let (root, _shutdown) = Context::background().with_cancel();
/// let layer = ContextLayer::new(root)
///     .default_timeout(Duration::from_secs(30))
///     .max_timeout(Duration::from_secs(60));
/// let svc = layer.layer(service_fn(|req: http::Request<String>| async move {
///     let ctx = request_context(&req).expect("set by ContextLayer").clone();
///     let left = ctx.deadline().unwrap() - std::time::Instant::now();
///     assert!(left <= Duration::from_millis(50)); // from the header
///     Ok::<_, Error>(http::Response::new(String::from("ok")))
/// }));
///
/// let req = http::Request::builder()
///     .header("grpc-timeout", "50m")
///     .body(String::new())
///     .unwrap();
/// let res = svc.oneshot(req).await.unwrap();
/// assert_eq!(res.body(), "ok");
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct ContextLayer {
    root: Context,
    default_timeout: Option<Duration>,
    max_timeout: Option<Duration>,
    on_invalid: InvalidTimeoutPolicy,
}

impl ContextLayer {
    /// A layer deriving each request's context from `root`; no default or
    /// maximum timeout, and malformed headers rejected.
    ///
    /// ```
    /// use ctxtree::{tower::{request_context, ContextLayer}, Context, Error};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # futures::executor::block_on(async {
    /// let root = Context::background().with_value("app config");
    /// let svc = ContextLayer::new(root).layer(service_fn(|req: http::Request<String>| async move {
    ///     let ctx = request_context(&req).unwrap();
    ///     assert_eq!(ctx.value::<&str>(), Some(&"app config")); // a child of the root
    ///     assert_eq!(ctx.deadline(), None); // no header, no default or maximum
    ///     Ok::<_, Error>(http::Response::new(String::new()))
    /// }));
    /// let plain = http::Request::new(String::new());
    /// assert_eq!(svc.clone().oneshot(plain).await.unwrap().status(), http::StatusCode::OK);
    /// let bad = http::Request::builder().header("grpc-timeout", "soon").body(String::new()).unwrap();
    /// assert_eq!(svc.oneshot(bad).await.unwrap().status(), http::StatusCode::BAD_REQUEST);
    /// # });
    /// ```
    pub fn new(root: Context) -> ContextLayer {
        ContextLayer {
            root,
            default_timeout: None,
            max_timeout: None,
            on_invalid: InvalidTimeoutPolicy::Reject,
        }
    }

    /// The timeout of requests without a (valid) `grpc-timeout` header.
    /// Without one, such a request gets a plain
    /// [`with_cancel`](Context::with_cancel) child of the root, which still
    /// inherits any deadline the root has. [`max_timeout`](Self::max_timeout)
    /// caps it too.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use ctxtree::{tower::{request_context, ContextLayer}, Context, Error};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # futures::executor::block_on(async {
    /// let svc = ContextLayer::new(Context::background())
    ///     .default_timeout(Duration::from_secs(10))
    ///     .layer(service_fn(|req: http::Request<String>| async move {
    ///         let left = request_context(&req).unwrap().deadline().unwrap() - Instant::now();
    ///         assert!(left <= Duration::from_secs(10) && left > Duration::from_secs(9));
    ///         Ok::<_, Error>(http::Response::new(String::new()))
    ///     }));
    /// svc.oneshot(http::Request::new(String::new())).await.unwrap(); // no grpc-timeout header
    /// # });
    /// ```
    pub fn default_timeout(mut self, timeout: Duration) -> ContextLayer {
        self.default_timeout = Some(timeout);
        self
    }

    /// Caps the timeout a request gets from its header (or the default),
    /// and is the timeout of a request that has neither: a client cannot
    /// hold a request open longer than this.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use ctxtree::{tower::{request_context, ContextLayer}, Context, Error};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # futures::executor::block_on(async {
    /// let svc = ContextLayer::new(Context::background())
    ///     .max_timeout(Duration::from_secs(60))
    ///     .layer(service_fn(|req: http::Request<String>| async move {
    ///         let left = request_context(&req).unwrap().deadline().unwrap() - Instant::now();
    ///         assert!(left <= Duration::from_secs(60));
    ///         Ok::<_, Error>(http::Response::new(String::new()))
    ///     }));
    /// let greedy = http::Request::builder().header("grpc-timeout", "99999999H").body(String::new()).unwrap();
    /// svc.clone().oneshot(greedy).await.unwrap(); // 60 s, not 11,400 years
    /// svc.oneshot(http::Request::new(String::new())).await.unwrap(); // no header: 60 s too
    /// # });
    /// ```
    pub fn max_timeout(mut self, timeout: Duration) -> ContextLayer {
        self.max_timeout = Some(timeout);
        self
    }

    /// What to do with a malformed `grpc-timeout` header (default:
    /// [`InvalidTimeoutPolicy::Reject`]).
    ///
    /// ```
    /// use ctxtree::{tower::{request_context, ContextLayer, InvalidTimeoutPolicy}, Context, Error};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # futures::executor::block_on(async {
    /// let svc = ContextLayer::new(Context::background())
    ///     .on_invalid_timeout(InvalidTimeoutPolicy::Ignore)
    ///     .layer(service_fn(|req: http::Request<String>| async move {
    ///         assert_eq!(request_context(&req).unwrap().deadline(), None); // as if absent
    ///         Ok::<_, Error>(http::Response::new(String::from("ok")))
    ///     }));
    /// let bad = http::Request::builder().header("grpc-timeout", "1.5S").body(String::new()).unwrap();
    /// assert_eq!(svc.oneshot(bad).await.unwrap().body(), "ok"); // not a 400
    /// # });
    /// ```
    pub fn on_invalid_timeout(mut self, policy: InvalidTimeoutPolicy) -> ContextLayer {
        self.on_invalid = policy;
        self
    }

    /// The timeout for a request with these headers; `Err` to reject it.
    fn timeout_for(&self, headers: &HeaderMap) -> Result<Option<Duration>, InvalidGrpcTimeout> {
        let from_header = match headers.get(GRPC_TIMEOUT).map(parse_grpc_timeout) {
            Some(Ok(timeout)) => Some(timeout),
            Some(Err(err)) if self.on_invalid == InvalidTimeoutPolicy::Reject => return Err(err),
            Some(Err(_)) | None => None,
        };
        let timeout = from_header.or(self.default_timeout);
        Ok(match (timeout, self.max_timeout) {
            (Some(t), Some(max)) => Some(t.min(max)),
            // No header (or an ignored malformed one) and no default: the
            // cap still bounds the request, as documented.
            (None, max) => max,
            (t, None) => t,
        })
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

/// The [`Service`] made by [`ContextLayer`]: gives each request a
/// [`Context`] in its extensions, then calls the inner service.
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
    inner: S,
    layer: ContextLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ContextService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<&'static str>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let timeout = match self.layer.timeout_for(req.headers()) {
            Ok(timeout) => timeout,
            Err(_) => {
                return ResponseFuture {
                    kind: Kind::Reject,
                    handle: None,
                    _body: PhantomData,
                }
            }
        };
        let (ctx, handle) = match timeout {
            Some(timeout) => self.layer.root.with_timeout(timeout),
            None => self.layer.root.with_cancel(),
        };
        req.extensions_mut().insert(ctx);
        ResponseFuture {
            kind: Kind::Inner(self.inner.call(req)),
            handle: Some(handle),
            _body: PhantomData,
        }
    }
}

/// The response future of [`ContextService`]. It owns the request context's
/// [`CancelHandle`]: completing cancels the context with
/// [`Error::Canceled`]; dropping it before completion cancels it with cause
/// [`RequestAborted`].
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
    /// Structurally pinned (in `Kind::Inner`); never moved out or replaced.
    kind: Kind<F>,
    /// Not pinned. `None` once the future has completed (or was rejected).
    handle: Option<CancelHandle>,
    _body: PhantomData<fn() -> B>,
}

enum Kind<F> {
    Inner(F),
    Reject,
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<&'static str>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        // SAFETY: pin projection. `kind` is structurally pinned: the inner
        // future is only ever reached through the `Pin` made below, never
        // moved out or replaced (not in `Drop` either), and `ResponseFuture`
        // is `Unpin` only when `F` is (auto trait, no manual impl).
        // `handle` and `_body` are not pinned and may be moved freely.
        let this = unsafe { self.get_unchecked_mut() };
        let output = match &mut this.kind {
            // SAFETY: `future` lives in `*this`, which is pinned, and is not
            // moved until it is dropped in place (see above).
            Kind::Inner(future) => match unsafe { Pin::new_unchecked(future) }.poll(cx) {
                Poll::Ready(output) => output,
                Poll::Pending => return Poll::Pending,
            },
            Kind::Reject => Ok(bad_request()),
        };
        if let Some(handle) = this.handle.take() {
            handle.cancel();
        }
        Poll::Ready(output)
    }
}

impl<F, B> Drop for ResponseFuture<F, B> {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.cancel_with_cause(RequestAborted);
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("rejected", &matches!(self.kind, Kind::Reject))
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

fn bad_request<B: From<&'static str>>() -> Response<B> {
    let mut res = Response::new(B::from(REJECT_BODY));
    *res.status_mut() = StatusCode::BAD_REQUEST;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    res
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Duration, InvalidGrpcTimeout> {
        parse_grpc_timeout(&HeaderValue::from_str(s).unwrap())
    }

    #[test]
    fn parses_valid_values() {
        let cases: &[(&str, Duration)] = &[
            ("0n", Duration::ZERO),
            ("1n", Duration::from_nanos(1)),
            ("7u", Duration::from_micros(7)),
            ("50m", Duration::from_millis(50)),
            ("1S", Duration::from_secs(1)),
            ("2M", Duration::from_secs(120)),
            ("3H", Duration::from_secs(3 * 3600)),
            ("00000001S", Duration::from_secs(1)),
            ("99999999n", Duration::from_nanos(99_999_999)),
            ("99999999H", Duration::from_secs(99_999_999 * 3600)),
            ("99999999M", Duration::from_secs(99_999_999 * 60)),
        ];
        for (s, want) in cases {
            assert_eq!(parse(s), Ok(*want), "{s:?}");
        }
    }

    #[test]
    fn rejects_invalid_values() {
        let cases = [
            "",
            "1",
            "12",
            "m",
            "S",
            "-1S",
            "+1S",
            " 1S",
            "1S ",
            "1 S",
            "1s",
            "1h",
            "1U",
            "1N",
            "1.5S",
            "1e3m",
            "100000000n",
            "999999999H",
            "1SS",
            "1mS",
            "0x1S",
            "１S",
        ];
        for s in cases {
            let Ok(value) = HeaderValue::from_bytes(s.as_bytes()) else {
                continue;
            };
            assert!(parse_grpc_timeout(&value).is_err(), "{s:?} parsed");
        }
        // Non-UTF-8 and high bytes: no panic, rejected.
        for bytes in [&b"1\xffS"[..], b"\xff", b"1\x80"] {
            let value = HeaderValue::from_bytes(bytes).unwrap();
            assert!(parse_grpc_timeout(&value).is_err());
        }
    }

    #[test]
    fn error_message_and_reject_body() {
        let err = parse("1s").unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed grpc-timeout header: expected 1 to 8 digits followed by one of H, M, S, m, u, n"
        );
        assert_eq!(REJECT_BODY, format!("{err}\n"));
        let res: Response<String> = bad_request();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(res.headers()[CONTENT_TYPE], "text/plain");
    }

    #[test]
    fn encodes_in_the_finest_unit_that_fits() {
        let cases: &[(Duration, &str)] = &[
            (Duration::ZERO, "0n"),
            (Duration::from_nanos(1), "1n"),
            (Duration::from_nanos(99_999_999), "99999999n"),
            (Duration::from_nanos(100_000_000), "100000u"),
            (Duration::from_nanos(100_000_001), "100001u"),
            (Duration::from_millis(50), "50000000n"),
            (Duration::from_secs(1), "1000000u"),
            (Duration::from_secs(100), "100000m"),
            (Duration::from_secs(100_000), "100000S"),
            (Duration::from_secs(100_000_000), "1666667M"),
            (Duration::from_secs(99_999_999 * 60 + 1), "1666667H"),
            (Duration::from_secs(99_999_999 * 3600), "99999999H"),
            (Duration::from_secs(99_999_999 * 3600 + 1), "99999999H"),
            (Duration::MAX, "99999999H"),
        ];
        for (d, want) in cases {
            assert_eq!(encode_grpc_timeout(*d), *want, "{d:?}");
        }
    }

    #[test]
    fn round_trip_is_never_shorter_and_within_one_unit() {
        let unit_of = |v: &HeaderValue| match v.as_bytes().last() {
            Some(b'n') => Duration::from_nanos(1),
            Some(b'u') => Duration::from_micros(1),
            Some(b'm') => Duration::from_millis(1),
            Some(b'S') => Duration::from_secs(1),
            Some(b'M') => Duration::from_secs(60),
            Some(b'H') => Duration::from_secs(3600),
            _ => unreachable!(),
        };
        let mut nanos: u64 = 0;
        let mut samples = vec![];
        // Powers of 10 and their neighbours, and a pseudo-random walk.
        for exp in 0..19u32 {
            let p = 10u64.pow(exp);
            samples.extend([p - 1, p, p + 1, p.saturating_mul(7) / 3]);
        }
        for _ in 0..if cfg!(miri) { 200 } else { 10_000 } {
            nanos = nanos
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            samples.push(nanos >> (nanos % 64));
        }
        for n in samples {
            let d = Duration::from_nanos(n);
            let v = encode_grpc_timeout(d);
            let back = parse_grpc_timeout(&v).unwrap();
            assert!(back >= d, "{d:?} -> {v:?} -> {back:?}");
            assert!(back - d < unit_of(&v), "{d:?} -> {v:?} -> {back:?}");
        }
    }
}

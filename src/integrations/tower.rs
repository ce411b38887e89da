//! A tower [`Layer`] that gives each HTTP request its own [`Context`], with
//! the deadline its client sent in a budget header (`grpc-timeout` by
//! default; any [`BudgetCodec`]).
//!
//! [`ContextLayer`] wraps a service (axum, hyper, tonic: any body type with
//! `Default`); for every request it derives a child of its root context,
//! bounded by the request's budget (capped by [`ContextLayer::max_timeout`])
//! or by [`ContextLayer::default_timeout`], and puts it in the request's
//! extensions, where handlers read it with [`request_context`]. The replies
//! it makes itself are in the request's protocol: a trailers-only gRPC
//! status for `content-type: application/grpc*`, an HTTP status otherwise.
//! On the client side, [`set_grpc_timeout`] (or any codec's `encode` with
//! [`Context::remaining`]) writes a context's remaining time into an
//! outgoing request's headers.
//!
//! With tonic: `Server::builder().layer(ContextLayer::new(root))`, and the
//! handler reads `request.extensions().get::<Context>()`.
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
//! - Parsing is strict (B1-B3 of the codecs) and never panics. A malformed
//!   budget header gets INVALID_ARGUMENT / 400 and the inner service is not
//!   called (with [`InvalidTimeoutPolicy::Ignore`], the header is treated
//!   as absent). A budget below [`ContextLayer::min_timeout`], or a request
//!   context born done, gets DEADLINE_EXCEEDED / 504 (UNAVAILABLE / 503 if
//!   the root is canceled) without calling the inner service.
//! - Once the request context ends and the
//!   [handler's grace](ContextLayer::handler_grace) passes, the inner future
//!   is dropped and the layer answers DEADLINE_EXCEEDED / 504 (deadline) or
//!   UNAVAILABLE / 503 (root canceled). A gRPC reply is trailers-only: HTTP
//!   200, `content-type: application/grpc`, `grpc-status` and a
//!   percent-encoded `grpc-message`, empty body; an HTTP reply has an empty
//!   (`Default`) body.
//!
//! This module has no locks; its `unsafe` is the pin projection of
//! [`ResponseFuture`].

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use ::http::header::CONTENT_TYPE;
use ::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use ::tower_layer::Layer;
use ::tower_service::Service;

use crate::{CancelHandle, Context, DoneOwned, Error, Scoped};

pub use super::body::{BodyContextLayer, BodyContextService, BodyResponseFuture, ContextBody};
pub use super::budget::{
    BudgetCodec, ConnectTimeout, EnvoyExpectedTimeout, EnvoyUpstreamTimeout, GrpcTimeout,
    InvalidBudget,
};
pub use super::client::{BoxError, BudgetFuture, BudgetLayer, BudgetService};

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

/// The message of [`InvalidGrpcTimeout`] (and of the layer's gRPC reply).
macro_rules! malformed_message {
    () => {
        concat!(
            "malformed grpc-timeout header: expected ",
            grpc_timeout_format!()
        )
    };
}

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
/// let res = svc.clone().oneshot(bad).await.unwrap(); // the handler was not called
/// assert_eq!(res.status(), http::StatusCode::BAD_REQUEST);
/// assert_eq!(res.body(), ""); // a `Default` body: the layer works with any body type
///
/// // A gRPC client gets a gRPC status it can decode instead.
/// let bad = http::Request::builder()
///     .header("content-type", "application/grpc")
///     .header("grpc-timeout", "1.5S")
///     .body(String::new())
///     .unwrap();
/// let res = svc.oneshot(bad).await.unwrap();
/// assert_eq!(res.status(), http::StatusCode::OK); // trailers-only
/// assert_eq!(res.headers()["grpc-status"], "3"); // INVALID_ARGUMENT
/// assert!(res.headers()["grpc-message"].to_str().unwrap().starts_with("malformed grpc-timeout"));
/// # });
/// ```
///
/// `#[non_exhaustive]`: a later release may add a policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InvalidTimeoutPolicy {
    /// Answer INVALID_ARGUMENT (gRPC, with the [`InvalidBudget`] message in
    /// `grpc-message`) or `400 Bad Request` (empty body) without calling the
    /// inner service. The default.
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
///   streaming body (a server-streaming RPC) outlives it: work that produces
///   the body after that must not rely on the request context (derive its
///   own context, and bound it).
/// - A malformed header is answered with INVALID_ARGUMENT / `400 Bad
///   Request` unless the policy is [`InvalidTimeoutPolicy::Ignore`]; a
///   request whose context ended before its handler answered gets
///   DEADLINE_EXCEEDED / 504 or UNAVAILABLE / 503 (see
///   [`handler_grace`](Self::handler_grace)).
/// - The handler runs with its request context as [`Context::current`]
///   (its `call` and every poll of its future), so outgoing calls made deep
///   inside it find the budget ([`BudgetLayer`]); tasks it spawns do not
///   inherit it (wrap them in [`Context::scope`]).
/// - Budgets: the smallest of the configured headers' ([`budget_codec`](Self::budget_codec)),
///   else the default, capped by the maximum; below the
///   [minimum](Self::min_timeout), rejected.
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
#[derive(Clone)]
pub struct ContextLayer {
    root: Context,
    default_timeout: Option<Duration>,
    max_timeout: Option<Duration>,
    min_timeout: Option<Duration>,
    /// How long a handler may still answer after its request context ended;
    /// `None`: the layer never answers in its place.
    handler_grace: Option<Duration>,
    on_invalid: InvalidTimeoutPolicy,
    /// The headers read for the caller's budget, in order; the smallest wins.
    codecs: Arc<[Arc<dyn BudgetCodec>]>,
}

impl fmt::Debug for ContextLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<HeaderName> = self.codecs.iter().map(|c| c.header_name()).collect();
        f.debug_struct("ContextLayer")
            .field("root", &self.root)
            .field("default_timeout", &self.default_timeout)
            .field("max_timeout", &self.max_timeout)
            .field("min_timeout", &self.min_timeout)
            .field("handler_grace", &self.handler_grace)
            .field("on_invalid", &self.on_invalid)
            .field("budget_headers", &headers)
            .finish()
    }
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
            min_timeout: None,
            handler_grace: Some(Duration::ZERO),
            on_invalid: InvalidTimeoutPolicy::Reject,
            codecs: Arc::new([Arc::new(GrpcTimeout) as Arc<dyn BudgetCodec>]),
        }
    }

    /// Also reads the caller's budget from `codec`'s header. A new layer
    /// reads `grpc-timeout` ([`GrpcTimeout`]) only; with several headers
    /// present, the smallest budget wins, and a malformed one is handled by
    /// the [policy](Self::on_invalid_timeout) like a malformed
    /// `grpc-timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxtree::{tower::{request_context, ContextLayer, EnvoyExpectedTimeout}, Context, Error};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # futures::executor::block_on(async {
    /// let svc = ContextLayer::new(Context::background())
    ///     .budget_codec(EnvoyExpectedTimeout) // behind Envoy
    ///     .layer(service_fn(|req: http::Request<String>| async move {
    ///         let left = request_context(&req).unwrap().remaining().unwrap();
    ///         assert!(left <= Duration::from_millis(200)); // the smaller of the two
    ///         Ok::<_, Error>(http::Response::new(String::new()))
    ///     }));
    /// let req = http::Request::builder()
    ///     .header("x-envoy-expected-rq-timeout-ms", "200")
    ///     .header("grpc-timeout", "5S")
    ///     .body(String::new())
    ///     .unwrap();
    /// svc.oneshot(req).await.unwrap();
    /// # });
    /// ```
    pub fn budget_codec(mut self, codec: impl BudgetCodec) -> ContextLayer {
        let mut codecs = self.codecs.to_vec();
        codecs.push(Arc::new(codec));
        self.codecs = codecs.into();
        self
    }

    /// Reads no budget header at all (not even `grpc-timeout`): only the
    /// [default](Self::default_timeout) and [maximum](Self::max_timeout)
    /// bound a request. Add headers back with
    /// [`budget_codec`](Self::budget_codec).
    ///
    /// ```
    /// use ctxtree::{tower::{request_context, ConnectTimeout, ContextLayer}, Context, Error};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # futures::executor::block_on(async {
    /// let svc = ContextLayer::new(Context::background())
    ///     .without_budget_codecs()
    ///     .budget_codec(ConnectTimeout) // a Connect server: connect-timeout-ms only
    ///     .layer(service_fn(|req: http::Request<String>| async move {
    ///         assert_eq!(request_context(&req).unwrap().deadline(), None);
    ///         Ok::<_, Error>(http::Response::new(String::new()))
    ///     }));
    /// let req = http::Request::builder().header("grpc-timeout", "1S").body(String::new()).unwrap();
    /// svc.oneshot(req).await.unwrap(); // grpc-timeout is not read
    /// # });
    /// ```
    pub fn without_budget_codecs(mut self) -> ContextLayer {
        self.codecs = Arc::new([]);
        self
    }

    /// Rejects, before the handler runs, a request whose budget (after the
    /// [maximum](Self::max_timeout)) is below `timeout`: it could not be
    /// served in time anyway. The reply is DEADLINE_EXCEEDED for gRPC and
    /// `504 Gateway Timeout` otherwise. A request without a budget is never
    /// rejected by this.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxtree::{tower::ContextLayer, Context, Error};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # futures::executor::block_on(async {
    /// let svc = ContextLayer::new(Context::background())
    ///     .min_timeout(Duration::from_millis(10))
    ///     .layer(service_fn(|_req: http::Request<String>| async {
    ///         Ok::<_, Error>(http::Response::new(String::from("served")))
    ///     }));
    /// let hopeless = http::Request::builder().header("grpc-timeout", "2m").body(String::new()).unwrap();
    /// let res = svc.oneshot(hopeless).await.unwrap();
    /// assert_eq!(res.status(), http::StatusCode::GATEWAY_TIMEOUT);
    /// assert_eq!(res.body(), ""); // the handler did not run
    /// # });
    /// ```
    pub fn min_timeout(mut self, timeout: Duration) -> ContextLayer {
        self.min_timeout = Some(timeout);
        self
    }

    /// How long a handler may still answer after its request context ended
    /// (its deadline passed, or the root was canceled), before the layer
    /// drops the handler's future and answers in its place:
    /// DEADLINE_EXCEEDED / `504 Gateway Timeout` for a deadline,
    /// UNAVAILABLE / `503 Service Unavailable` for a canceled root. `None`:
    /// never; the handler always makes the response, as in Go's `net/http`
    /// (then a handler that ignores its context runs on).
    ///
    /// The default is `Some(Duration::ZERO)`: a handler that answers as soon
    /// as it sees its context end still wins (it is polled first), one that
    /// needs to wait for its subtasks to report needs a grace. The grace
    /// timer is the crate's own (any executor).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxtree::{tower::ContextLayer, Context, Error};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # futures::executor::block_on(async {
    /// let stuck = service_fn(|_req: http::Request<String>| {
    ///     std::future::pending::<Result<http::Response<String>, Error>>() // ignores its context
    /// });
    /// let svc = ContextLayer::new(Context::background()).layer(stuck);
    /// let req = http::Request::builder().header("grpc-timeout", "20m").body(String::new()).unwrap();
    /// let res = svc.oneshot(req).await.unwrap(); // answered at the deadline
    /// assert_eq!(res.status(), http::StatusCode::GATEWAY_TIMEOUT);
    ///
    /// let patient = ContextLayer::new(Context::background())
    ///     .handler_grace(Some(Duration::from_millis(500)))
    ///     .layer(service_fn(|req: http::Request<String>| async move {
    ///         let ctx = ctxtree::tower::request_context(&req).unwrap().clone();
    ///         ctx.done().await;
    ///         // Wait for subtasks to report (after the deadline), then answer.
    ///         std::thread::sleep(Duration::from_millis(5));
    ///         Ok::<_, Error>(http::Response::new(String::from("partial results")))
    ///     }));
    /// let req = http::Request::builder().header("grpc-timeout", "20m").body(String::new()).unwrap();
    /// assert_eq!(patient.oneshot(req).await.unwrap().body(), "partial results");
    /// # });
    /// ```
    pub fn handler_grace(mut self, grace: Option<Duration>) -> ContextLayer {
        self.handler_grace = grace;
        self
    }

    /// A layer whose request contexts live until the response *body* ends
    /// (or is dropped), not only until the response head is ready: for
    /// streaming responses (server-streaming RPCs, server-sent events,
    /// large downloads) whose producer works under the request context. The
    /// response body becomes a [`ContextBody`] holding the context's
    /// [`CancelHandle`]: the context is canceled with [`Error::Canceled`]
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
    fn timeout_for(&self, headers: &HeaderMap) -> Result<Option<Duration>, InvalidBudget> {
        let mut from_header: Option<Duration> = None;
        for codec in self.codecs.iter() {
            let Some(value) = headers.get(codec.header_name()) else {
                continue;
            };
            match codec.decode(value) {
                Ok(Some(budget)) => {
                    from_header = Some(from_header.map_or(budget, |b| b.min(budget)));
                }
                Ok(None) => {}
                Err(err) if self.on_invalid == InvalidTimeoutPolicy::Reject => return Err(err),
                Err(_) => {}
            }
        }
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

/// True for gRPC requests (`content-type: application/grpc`, with any
/// `+format` or `-web` suffix), which get their replies as gRPC statuses.
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// A reply the layer makes itself, instead of the inner service's.
#[derive(Debug)]
enum Reply {
    /// A malformed budget header: INVALID_ARGUMENT / 400.
    InvalidArgument(String),
    /// The budget ran out (or is below the minimum): DEADLINE_EXCEEDED / 504.
    DeadlineExceeded,
    /// The root was canceled (shutdown): UNAVAILABLE / 503.
    Unavailable,
}

impl Reply {
    fn for_err(err: Error) -> Reply {
        match err {
            Error::DeadlineExceeded => Reply::DeadlineExceeded,
            Error::Canceled => Reply::Unavailable,
        }
    }

    /// The response: for gRPC, a trailers-only response (HTTP 200, the
    /// status in `grpc-status` and `grpc-message` headers, an empty body);
    /// otherwise the HTTP status with an empty body.
    fn into_response<B: Default>(self, grpc: bool) -> Response<B> {
        let (code, status, message) = match self {
            Reply::InvalidArgument(message) => (3u8, StatusCode::BAD_REQUEST, message),
            Reply::DeadlineExceeded => (
                4,
                StatusCode::GATEWAY_TIMEOUT,
                String::from("request deadline exceeded"),
            ),
            Reply::Unavailable => (
                14,
                StatusCode::SERVICE_UNAVAILABLE,
                String::from("server shutting down"),
            ),
        };
        let mut res = Response::new(B::default());
        if grpc {
            let headers = res.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            headers.insert(GRPC_STATUS, HeaderValue::from(u16::from(code)));
            headers.insert(GRPC_MESSAGE, percent_encode(&message));
        } else {
            *res.status_mut() = status;
        }
        res
    }
}

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// `grpc-message` encoding: bytes outside printable ASCII, and `%`, as
/// `%XX` (gRPC over HTTP/2, "Percent-Encoded").
fn percent_encode(message: &str) -> HeaderValue {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::try_from(out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The response future of [`ContextService`]. It owns the request context's
/// [`CancelHandle`]: completing cancels the context with
/// [`Error::Canceled`]; dropping it before completion cancels it with cause
/// [`RequestAborted`]. If the request context ends before the inner service
/// answers (its deadline passed, or the root was canceled), it drops the
/// inner future and answers itself (see [`ContextService`]).
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
    state: State<Scoped<F>>,
    /// Not pinned. `None` once the future has completed (or was rejected).
    handle: Option<CancelHandle>,
    /// Not pinned (`DoneOwned` is `Unpin`): wakes this task when the request
    /// context ends before the inner service answers.
    done: Option<DoneOwned>,
    /// Not pinned: the handler's grace once the request context ended.
    grace: Grace,
    /// Answer in gRPC's form.
    grpc: bool,
    _body: PhantomData<fn() -> B>,
}

enum State<F> {
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
struct Grace {
    period: Duration,
    /// The request context's err, once it ended.
    ended: Option<Error>,
    /// The grace timer: a context of its own that ends `period` after
    /// `ended` was set (its handle disarms it when dropped).
    timer: Option<(DoneOwned, CancelHandle)>,
}

impl Grace {
    /// Ready with the request context's err once the context ended and the
    /// grace passed; `done` is `None` when the layer never answers.
    fn poll(&mut self, done: Option<&mut DoneOwned>, cx: &mut TaskContext<'_>) -> Poll<Error> {
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
            handle.cancel_with_cause(RequestAborted);
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
    fn inner(self: Pin<&mut Self>) -> Option<Pin<&mut F>> {
        // SAFETY: the future is structurally pinned in `State::Inner`; it
        // is only handed out pinned.
        match unsafe { self.get_unchecked_mut() } {
            // SAFETY: see above.
            State::Inner(future) => Some(unsafe { Pin::new_unchecked(future) }),
            _ => None,
        }
    }
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
    fn error_message_and_replies() {
        let err = parse("1s").unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed grpc-timeout header: expected 1 to 8 digits followed by one of H, M, S, m, u, n"
        );
        let budget_err = GrpcTimeout
            .decode(&HeaderValue::from_static("1s"))
            .unwrap_err();
        assert_eq!(budget_err.to_string(), err.to_string());

        let res: Response<String> = Reply::InvalidArgument(err.to_string()).into_response(false);
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(res.body(), "");
        let res: Response<String> = Reply::DeadlineExceeded.into_response(false);
        assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
        let res: Response<String> = Reply::Unavailable.into_response(false);
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);

        let res: Response<String> = Reply::InvalidArgument(err.to_string()).into_response(true);
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[CONTENT_TYPE], "application/grpc");
        assert_eq!(res.headers()["grpc-status"], "3");
        assert_eq!(res.headers()["grpc-message"], err.to_string().as_str());
        let res: Response<String> = Reply::DeadlineExceeded.into_response(true);
        assert_eq!(res.headers()["grpc-status"], "4");
        let res: Response<String> = Reply::Unavailable.into_response(true);
        assert_eq!(res.headers()["grpc-status"], "14");
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(percent_encode("plain text: ok"), "plain text: ok");
        assert_eq!(percent_encode("100% ü\n"), "100%25 %C3%BC%0A");
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

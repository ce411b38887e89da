//! The server layer: its configuration (`ContextLayer`), the request
//! context it attaches, and the policy for malformed budgets.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::http::{HeaderMap, HeaderName, Request};

use super::budget::{BudgetCodec, GrpcTimeout, InvalidBudget};
use crate::Context;

/// The context [`ContextLayer`] derived for `req`, if any. In a tonic
/// handler, whose `tonic::Request` is not an `http::Request`, the same is
/// `request.extensions().get::<Context>()` (tonic moves the extensions
/// over).
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

/// A [`Layer`](::tower_layer::Layer) that gives each HTTP request a [`Context`](crate::Context): a child of `root`,
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
///   inside it find the budget ([`BudgetLayer`](crate::tower::BudgetLayer)); tasks it spawns do not
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
    pub(super) root: Context,
    pub(super) default_timeout: Option<Duration>,
    pub(super) max_timeout: Option<Duration>,
    pub(super) min_timeout: Option<Duration>,
    /// How long a handler may still answer after its request context ended;
    /// `None`: the layer never answers in its place.
    pub(super) handler_grace: Option<Duration>,
    pub(super) on_invalid: InvalidTimeoutPolicy,
    /// The headers read for the caller's budget, in order; the smallest wins.
    pub(super) codecs: Arc<[Arc<dyn BudgetCodec>]>,
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
    pub(super) fn timeout_for(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<Duration>, InvalidBudget> {
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

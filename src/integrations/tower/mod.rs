//! A tower [`Layer`](::tower_layer::Layer) that gives each HTTP request its own [`Context`](crate::Context), with
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
//! [`Context::remaining`](crate::Context::remaining)) writes a context's remaining time into an
//! outgoing request's headers.
//!
//! With tonic: `Server::builder().layer(ContextLayer::new(root))`, and the
//! handler reads `request.extensions().get::<Context>()`; on the client,
//! `BudgetLayer::new().on_ended(AsGrpcStatus).layer(channel)`. The header
//! helpers take an `http::HeaderMap`; tonic's `MetadataMap` hands out its
//! own with `as_mut()` / `as_ref()` (see [`set_grpc_timeout`]).
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
//!   with [`Error::Canceled`](crate::Error::Canceled) when the future completes (`Ok` or `Err`), and
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

mod body;
mod budget;
mod client;
mod ended;
mod grpc_timeout;
mod layer;
mod reply;
mod response;
mod service;
#[cfg(all(test, not(loom)))]
mod tests;

pub use body::{BodyContextLayer, BodyContextService, BodyResponseFuture, ContextBody};
pub use budget::{
    BudgetCodec, ConnectTimeout, EnvoyExpectedTimeout, EnvoyUpstreamTimeout, GrpcTimeout,
    InvalidBudget,
};
pub use client::{BudgetFuture, BudgetLayer, BudgetService};
pub use ended::{AsError, AsGrpcStatus, BoxError, OnEnded};
pub use grpc_timeout::{
    encode_grpc_timeout, parse_grpc_timeout, set_grpc_timeout, InvalidGrpcTimeout, GRPC_TIMEOUT,
};
pub use layer::{request_context, ContextLayer, InvalidTimeoutPolicy, RequestAborted};
pub use response::ResponseFuture;
pub use service::ContextService;

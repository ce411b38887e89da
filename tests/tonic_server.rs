//! `ContextLayer` on a real tonic server over 127.0.0.1, called by tonic's
//! client: `Server::builder().layer(ContextLayer::new(root))` compiles as is,
//! the caller's `grpc-timeout` reaches the handler, and the layer's own
//! replies are gRPC statuses the client decodes (INVALID_ARGUMENT,
//! DEADLINE_EXCEEDED, UNAVAILABLE); with `until_body_end`, a server
//! stream's context lives as long as the stream. No protobuf: a bytes-in,
//! bytes-out codec.

// The example's services; this file uses their message codec.
#[allow(dead_code)]
#[path = "../examples/three_hops/hops.rs"]
mod hops;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ctxtree::tower::{
    AsError, AsGrpcStatus, BudgetLayer, BudgetService, ContextLayer, OnEnded, RequestAborted,
};
use ctxtree::{CancelHandle, Context, Error};
use futures::future::BoxFuture;
use hops::RawCodec;
use http::uri::PathAndQuery;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Notify;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Status};
use tower::Service;

/// How long the tests wait for something the other side of the loopback
/// does (a call reaching its handler, a context observing its end).
const BOUND: Duration = Duration::from_secs(1);

/// One unary method, `/test.Raw/Call`. The request says what to do:
/// `remaining` answers the request context's remaining milliseconds,
/// `stuck` never answers (it ignores its context). One server-streaming
/// method, `/test.Raw/Stream`, which streams the messages of `feed` until
/// its sender is dropped.
#[derive(Clone, Default)]
struct Raw {
    seen: Arc<Mutex<Vec<Context>>>,
    /// Notified each time a unary call reaches its handler.
    arrived: Arc<Notify>,
    feed: Arc<Mutex<Option<UnboundedReceiver<Bytes>>>>,
}

impl NamedService for Raw {
    const NAME: &'static str = "test.Raw";
}

impl Service<http::Request<tonic::body::Body>> for Raw {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path() == "/test.Raw/Stream" {
            return Box::pin(stream(self.clone(), req));
        }
        let (seen, arrived) = (self.seen.clone(), self.arrived.clone());
        Box::pin(async move {
            let method = tower::service_fn(move |req: tonic::Request<Bytes>| {
                let (seen, arrived) = (seen.clone(), arrived.clone());
                async move {
                    let ctx = req
                        .extensions()
                        .get::<Context>()
                        .cloned()
                        .ok_or_else(|| Status::internal("no request context"))?;
                    seen.lock().unwrap().push(ctx.clone());
                    arrived.notify_one();
                    match &req.get_ref()[..] {
                        b"remaining" => {
                            let ms = ctx.remaining().map_or(u128::MAX, |d| d.as_millis());
                            Ok(tonic::Response::new(Bytes::from(ms.to_string())))
                        }
                        b"stuck" => std::future::pending().await,
                        b"current" => {
                            // Set by the layer for the handler's whole run.
                            let current = Context::current().is_some_and(|c| c.same(&ctx));
                            Ok(tonic::Response::new(Bytes::from(current.to_string())))
                        }
                        _ => Err(Status::unimplemented("unknown request")),
                    }
                }
            });
            Ok(tonic::server::Grpc::new(RawCodec).unary(method, req).await)
        })
    }
}

/// `/test.Raw/Stream`: records its request context, then streams `feed`.
async fn stream(
    raw: Raw,
    req: http::Request<tonic::body::Body>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let method = tower::service_fn(move |req: tonic::Request<Bytes>| {
        let raw = raw.clone();
        async move {
            let ctx = req.extensions().get::<Context>().cloned();
            raw.seen.lock().unwrap().extend(ctx);
            let feed = raw.feed.lock().unwrap().take();
            let feed = feed.ok_or_else(|| Status::failed_precondition("no feed"))?;
            let messages = futures::stream::unfold(feed, |mut feed| async move {
                let message = feed.recv().await?;
                Some((Ok(message), feed))
            });
            Ok::<_, Status>(tonic::Response::new(Box::pin(messages)))
        }
    });
    Ok(tonic::server::Grpc::new(RawCodec)
        .server_streaming(method, req)
        .await)
}

struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Context>>>,
    arrived: Arc<Notify>,
    feed: Arc<Mutex<Option<UnboundedReceiver<Bytes>>>>,
    shutdown: CancelHandle,
    served: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

async fn start() -> Server {
    start_with(|layer| layer).await
}

/// A server whose layer `configure` sets up.
async fn start_with(configure: impl FnOnce(ContextLayer) -> ContextLayer) -> Server {
    let (root, shutdown) = Context::background().with_cancel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let raw = Raw::default();
    let (seen, arrived, feed) = (raw.seen.clone(), raw.arrived.clone(), raw.feed.clone());
    let served = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(configure(ContextLayer::new(root.clone()))) // as a user writes it
            .add_service(raw)
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), root.cancelled_owned()),
    );
    Server {
        addr,
        seen,
        arrived,
        feed,
        shutdown,
        served,
    }
}

/// A server whose request contexts live until the response body ends.
async fn start_until_body_end() -> Server {
    let (root, shutdown) = Context::background().with_cancel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let raw = Raw::default();
    let (seen, arrived, feed) = (raw.seen.clone(), raw.arrived.clone(), raw.feed.clone());
    let served = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(ContextLayer::new(root.clone()).until_body_end())
            .add_service(raw)
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), root.cancelled_owned()),
    );
    Server {
        addr,
        seen,
        arrived,
        feed,
        shutdown,
        served,
    }
}

async fn call(
    addr: SocketAddr,
    body: &'static str,
    timeout: Option<&'static str>,
) -> Result<String, Status> {
    call_with(addr, body, |req| {
        if let Some(timeout) = timeout {
            req.metadata_mut()
                .insert("grpc-timeout", timeout.parse().unwrap());
        }
    })
    .await
}

/// A call whose request `prepare` sets up.
async fn call_with(
    addr: SocketAddr,
    body: &'static str,
    prepare: impl FnOnce(&mut tonic::Request<Bytes>),
) -> Result<String, Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let mut req = tonic::Request::new(Bytes::from_static(body.as_bytes()));
    prepare(&mut req);
    let res = client
        .unary(req, PathAndQuery::from_static("/test.Raw/Call"), RawCodec)
        .await?;
    Ok(String::from_utf8(res.into_inner().to_vec()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_budget_reaches_the_handler() {
    let server = start().await;
    let left: u64 = call(server.addr, "remaining", Some("300m"))
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert!(left <= 300 && left > 200, "{left} ms left of 300");
    // No budget: no deadline.
    let left = call(server.addr, "remaining", None).await.unwrap();
    assert_eq!(left, u128::MAX.to_string());
    drop(server.shutdown);
    server.served.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_grpc_timeout_writes_into_tonic_metadata() {
    let server = start().await;
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(300));
    let left: u64 = call_with(server.addr, "remaining", |req| {
        // `MetadataMap: AsMut<http::HeaderMap>`: no tonic-specific helper.
        ctxtree::tower::set_grpc_timeout(&ctx, req.metadata_mut().as_mut()).unwrap();
    })
    .await
    .unwrap()
    .parse()
    .unwrap();
    assert!(left <= 300 && left > 200, "{left} ms left of 300");
    drop(server.shutdown);
    server.served.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_budget_is_an_invalid_argument_the_client_decodes() {
    let server = start().await;
    let status = call(server.addr, "remaining", Some("1.5S"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("malformed grpc-timeout header"),
        "{status:?}"
    );
    assert!(server.seen.lock().unwrap().is_empty(), "handler not called");
    drop(server.shutdown);
    server.served.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_past_its_deadline_is_answered_deadline_exceeded() {
    // The deadline is the server's cap: a `grpc-timeout` sent by tonic's
    // client is also enforced by the client itself, which reports CANCELLED
    // ("Timeout expired") when it fires first.
    let server = start_with(|layer| layer.max_timeout(Duration::from_millis(100))).await;
    let sent = Instant::now();
    let status = call(server.addr, "stuck", Some("10S")).await.unwrap_err();
    let elapsed = sent.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(status.message(), "request deadline exceeded");
    assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1000), "{elapsed:?}");
    let ctx = server.seen.lock().unwrap()[0].clone();
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));

    // Below a minimum budget: refused before the handler.
    let server = start_with(|layer| layer.min_timeout(Duration::from_millis(500))).await;
    let status = call(server.addr, "remaining", Some("400m"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(server.seen.lock().unwrap().is_empty());
    drop(server.shutdown);
    server.served.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_in_flight_calls_unavailable_and_stops_the_server() {
    let server = start().await;
    let addr = server.addr;
    let in_flight = tokio::spawn(async move { call(addr, "stuck", None).await });
    tokio::time::timeout(BOUND, server.arrived.notified())
        .await
        .expect("the call never reached the handler");
    server.shutdown.cancel(); // root.cancelled_owned() is the server's signal
    let status = in_flight.await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    tokio::time::timeout(Duration::from_secs(10), server.served)
        .await
        .expect("the server drained")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_body_end_compiles_on_tonic_and_ends_with_the_response() {
    let server = start_until_body_end().await;
    let left: u64 = call(server.addr, "remaining", Some("5S"))
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert!(left > 4000, "{left}");
    let ctx = server.seen.lock().unwrap()[0].clone();
    // The body (message and trailers) was sent in full: ended, not aborted.
    assert_ended(&ctx).await;
    server.shutdown.cancel();
    server.served.await.unwrap().unwrap();
}

/// Waits (within [`BOUND`]) for `ctx` to end because its response body
/// was sent in full.
async fn assert_ended(ctx: &Context) {
    tokio::time::timeout(BOUND, ctx.done())
        .await
        .expect("the context outlived the body");
    assert_eq!(ctx.err(), Some(Error::Canceled));
    let cause = ctx.cause().unwrap();
    assert!(cause.downcast_ref::<RequestAborted>().is_none(), "{cause}");
}

/// Opens `/test.Raw/Stream` on `server` with a new feed: the stream, its
/// feed and the handler's request context.
async fn open_stream(
    server: &Server,
) -> (tonic::Streaming<Bytes>, UnboundedSender<Bytes>, Context) {
    let (feed, messages) = unbounded_channel();
    *server.feed.lock().unwrap() = Some(messages);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let req = tonic::Request::new(Bytes::new());
    let path = PathAndQuery::from_static("/test.Raw/Stream");
    let stream = client.server_streaming(req, path, RawCodec).await.unwrap();
    // The handler recorded its context before answering the head.
    let ctx = server.seen.lock().unwrap().pop().unwrap();
    (stream.into_inner(), feed, ctx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stream_keeps_its_context_until_it_ends_or_the_client_drops_it() {
    let server = start_until_body_end().await;

    // The context lives past the head, between messages, until the end.
    let (mut stream, feed, ctx) = open_stream(&server).await;
    for message in ["one", "two"] {
        assert!(!ctx.is_done(), "ended before {message}");
        feed.send(Bytes::from(message)).unwrap();
        assert_eq!(stream.message().await.unwrap().unwrap(), message);
    }
    assert!(!ctx.is_done(), "ended before the stream");
    drop(feed); // the handler's stream ends: trailers, end of body
    assert_eq!(stream.message().await.unwrap(), None);
    assert_ended(&ctx).await;

    // The client drops the stream mid-way: HTTP/2 resets it, hyper drops
    // the body, and the context is canceled as aborted.
    let (mut stream, feed, ctx) = open_stream(&server).await;
    feed.send(Bytes::from("one")).unwrap();
    assert_eq!(stream.message().await.unwrap().unwrap(), "one");
    drop(stream);
    tokio::time::timeout(BOUND, ctx.done())
        .await
        .expect("the context outlived the dropped stream");
    let cause = ctx.cause().unwrap();
    assert!(cause.downcast_ref::<RequestAborted>().is_some(), "{cause}");
    drop(feed);

    server.shutdown.cancel();
    server.served.await.unwrap().unwrap();
}

/// A tonic client whose channel goes through `BudgetLayer`, answering
/// calls whose context ended with `on_ended`.
async fn budget_client<R: Clone>(
    addr: SocketAddr,
    on_ended: R,
) -> tonic::client::Grpc<BudgetService<tonic::transport::Channel, R>> {
    use tower::Layer;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic::client::Grpc::new(BudgetLayer::new().on_ended(on_ended).layer(channel))
}

/// A call through `BudgetLayer::new().on_ended(AsGrpcStatus)`, as a tonic
/// user sets it up.
async fn call_with_budget(addr: SocketAddr, body: &'static str) -> Result<String, Status> {
    call_with_budget_ended(addr, body, AsGrpcStatus).await
}

async fn call_with_budget_ended<R>(
    addr: SocketAddr,
    body: &'static str,
    on_ended: R,
) -> Result<String, Status>
where
    R: OnEnded<http::Response<tonic::body::Body>>,
{
    let mut client = budget_client(addr, on_ended).await;
    client.ready().await.map_err(Status::from_error)?;
    let req = tonic::Request::new(Bytes::from_static(body.as_bytes()));
    let res = client
        .unary(req, PathAndQuery::from_static("/test.Raw/Call"), RawCodec)
        .await?;
    Ok(String::from_utf8(res.into_inner().to_vec()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_runs_with_its_request_context_as_current() {
    let server = start().await;
    assert_eq!(call(server.addr, "current", None).await.unwrap(), "true");
    drop(server.shutdown);
    server.served.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_layer_sends_the_current_contexts_remaining_time() {
    let server = start().await;
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(300));
    // No context passed by hand: the scope makes it current.
    let left: u64 = ctx
        .scope(call_with_budget(server.addr, "remaining"))
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert!(left <= 300 && left > 200, "{left} ms left of 300");
    // Outside any scope: no budget sent.
    let left = call_with_budget(server.addr, "remaining").await.unwrap();
    assert_eq!(left, u128::MAX.to_string());
    drop(server.shutdown);
    server.served.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_layer_fails_fast_on_a_done_context_without_sending() {
    let server = start().await;
    // A deadline that passed: DEADLINE_EXCEEDED, decoded by tonic's client
    // from the trailers-only response `AsGrpcStatus` makes.
    let (expired, _cancel) = Context::background().with_timeout(Duration::ZERO);
    let status = expired
        .scope(call_with_budget(server.addr, "remaining"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(status.message(), "context deadline exceeded");
    // Canceled: CANCELLED.
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    let status = ctx
        .scope(call_with_budget(server.addr, "remaining"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    assert_eq!(status.message(), "context canceled");
    // The default policy: the `Error`, which tonic reports as UNKNOWN with
    // the error as its source.
    let status = expired
        .scope(call_with_budget_ended(server.addr, "remaining", AsError))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unknown, "{status:?}");
    let source = std::error::Error::source(&status).unwrap();
    assert_eq!(
        source.downcast_ref::<Error>(),
        Some(&Error::DeadlineExceeded)
    );
    assert!(server.seen.lock().unwrap().is_empty(), "nothing was sent");
    drop(server.shutdown);
    server.served.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_layer_abandons_the_call_when_the_context_ends_and_the_server_sees_it() {
    // The server's layer never answers in the handler's place, so the
    // client's deadline (sent as grpc-timeout, watched by BudgetLayer) is
    // what ends the call.
    let server = start_with(|layer| layer.handler_grace(None)).await;
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(100));
    let sent = Instant::now();
    let status = ctx
        .scope(call_with_budget(server.addr, "stuck"))
        .await
        .unwrap_err();
    let elapsed = sent.elapsed();
    assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1000), "{elapsed:?}");
    // Whichever fired first, BudgetLayer's watch of the context (K3) or
    // tonic's own grpc-timeout timer (CANCELLED, replaced by the context's
    // end: K4), the caller sees DEADLINE_EXCEEDED.
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(status.message(), "context deadline exceeded");
    // The server's request context ended too (its copy of the deadline, or
    // the stream reset when the client dropped the call).
    let server_ctx = server.seen.lock().unwrap()[0].clone();
    tokio::time::timeout(BOUND, server_ctx.done())
        .await
        .expect("the server's work was not canceled");
    drop(server.shutdown);
    server.served.await.unwrap().unwrap();
}

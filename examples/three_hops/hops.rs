//! The three services of the example (and of `tests/three_hops.rs`): C
//! (axum over HTTP), B (tonic, calling C) and A (axum over HTTP, calling B),
//! and the clients between them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use axum::extract::Path;
use axum::{routing::get, Extension, Router};
use bytes::{Buf, BufMut, Bytes};
use ctxtree::tower::{AsGrpcStatus, BudgetLayer, ConnectTimeout, ContextLayer};
use ctxtree::{CancelHandle, Context, Error};
use futures::future::BoxFuture;
use http::uri::PathAndQuery;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::Status;
use tower::{service_fn, Layer, Service, ServiceExt};

/// A running server: its address, the handle that cancels its root
/// (graceful shutdown: in-flight requests are answered, then it stops) and
/// its task, which ends once it has drained.
pub struct Hop {
    pub addr: SocketAddr,
    pub shutdown: CancelHandle,
    pub served: JoinHandle<()>,
}

#[derive(Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

type BoxError = ctxtree::tower::BoxError;

/// An HTTP/1 client (hyper), one connection per request: B's toward C
/// (behind `BudgetLayer`), and the caller's toward A. Answers the status and
/// the whole body; a body cut short is an error.
pub async fn http_get(
    addr: SocketAddr,
    req: http::Request<Empty<Bytes>>,
) -> Result<(u16, String), BoxError> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let res = sender.send_request(req).await?;
    let status = res.status().as_u16();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8(body.to_vec())?))
}

/// How long C's `/slow/{n}` takes to answer.
pub const SLOW: Duration = Duration::from_millis(50);

/// C: `/remaining` answers its request context's remaining milliseconds;
/// `/slow/{n}` answers `n` after [`SLOW`]; `/stuck` sends its request
/// context to `seen` and never answers.
pub async fn start_c(seen: UnboundedSender<Context>) -> Hop {
    let (root, shutdown) = Context::background().with_cancel();
    let app = Router::new()
        .route(
            "/remaining",
            get(|Extension(ctx): Extension<Context>| async move {
                ctx.remaining()
                    .map_or(u128::MAX, |d| d.as_millis())
                    .to_string()
            }),
        )
        .route(
            "/slow/{n}",
            get(|Path(n): Path<String>| async move {
                tokio::time::sleep(SLOW).await;
                n
            }),
        )
        .route(
            "/stuck",
            get(move |Extension(ctx): Extension<Context>| {
                let _ = seen.send(ctx);
                std::future::pending::<String>()
            }),
        )
        .layer(
            ContextLayer::new(root.clone())
                .without_budget_codecs()
                .budget_codec(ConnectTimeout),
        );
    serve_http(app, root, shutdown).await
}

/// Serves `app` over HTTP on 127.0.0.1 until `root` is canceled (by
/// `shutdown`), then drains: in-flight requests are answered, then it stops.
async fn serve_http(app: Router, root: Context, shutdown: CancelHandle) -> Hop {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(root.cancelled_owned())
            .await
            .unwrap();
    });
    Hop {
        addr,
        shutdown,
        served,
    }
}

/// B: one unary method; the request names C's path to call. Each request
/// context is sent to `seen`.
#[derive(Clone)]
pub struct B {
    c: SocketAddr,
    seen: UnboundedSender<Context>,
}

impl NamedService for B {
    const NAME: &'static str = "test.B";
}

impl Service<http::Request<tonic::body::Body>> for B {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let (c, seen) = (self.c, self.seen.clone());
        Box::pin(async move {
            let method = service_fn(move |req: tonic::Request<Bytes>| {
                if let Some(ctx) = req.extensions().get::<Context>() {
                    let _ = seen.send(ctx.clone());
                }
                call_c(c, String::from_utf8(req.into_inner().to_vec()).unwrap())
            });
            Ok(tonic::server::Grpc::new(RawCodec).unary(method, req).await)
        })
    }
}

/// B's handler: GET `path` on C, within the request's context.
async fn call_c(c: SocketAddr, path: String) -> Result<tonic::Response<Bytes>, Status> {
    // No context in sight: BudgetLayer finds the request's.
    let client = BudgetLayer::new()
        .codec(ConnectTimeout)
        .layer(service_fn(move |req| http_get(c, req)));
    let req = http::Request::get(path)
        .header("host", c.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    match client.oneshot(req).await {
        Ok((200, body)) => Ok(tonic::Response::new(Bytes::from(body))),
        Ok((504, _)) => Err(Status::deadline_exceeded("C timed out")),
        Ok((status, body)) => Err(Status::internal(format!("C: {status} {body}"))),
        Err(err) => match err.downcast_ref::<Error>() {
            Some(Error::DeadlineExceeded) => Err(Status::deadline_exceeded(err.to_string())),
            _ => Err(Status::unavailable(err.to_string())),
        },
    }
}

pub async fn start_b(c: SocketAddr, seen: UnboundedSender<Context>) -> Hop {
    let (root, shutdown) = Context::background().with_cancel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = tonic::transport::Server::builder()
        .layer(ContextLayer::new(root.clone()))
        .add_service(B { c, seen })
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), root.cancelled_owned());
    let served = tokio::spawn(async move { serve.await.unwrap() });
    Hop {
        addr,
        shutdown,
        served,
    }
}

/// A's call into B, asking B to GET `path` on C: through `BudgetLayer`,
/// within the context of `Context::current()` (the caller's scope, or in
/// A's handler the request's); a call whose context ended is answered
/// DEADLINE_EXCEEDED (or CANCELLED) by `AsGrpcStatus`.
pub async fn call_b(b: SocketAddr, path: &str) -> Result<String, Status> {
    // Connects on the first call: a refused connection is UNAVAILABLE.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{b}"))
        .unwrap()
        .connect_lazy();
    let mut client =
        tonic::client::Grpc::new(BudgetLayer::new().on_ended(AsGrpcStatus).layer(channel));
    client.ready().await.map_err(Status::from_error)?;
    let req = tonic::Request::new(Bytes::copy_from_slice(path.as_bytes()));
    let res = client
        .unary(req, PathAndQuery::from_static("/test.B/Call"), RawCodec)
        .await?;
    Ok(String::from_utf8(res.into_inner().to_vec()).unwrap())
}

/// A: `GET /via-b/{*path}` calls B, which GETs `/{path}` on C, and answers
/// C's body. Each answer the handler completes (a 200 with C's body) is
/// counted in `completed`. `shutdown` drains A: in-flight requests are
/// answered (503 if their call to B was cut short), then A stops.
pub async fn start_a(b: SocketAddr, completed: Arc<AtomicUsize>) -> Hop {
    let (root, shutdown) = Context::background().with_cancel();
    let app = Router::new()
        .route(
            "/via-b/{*path}",
            get(move |Path(path): Path<String>| via_b(b, path, completed.clone())),
        )
        .layer(ContextLayer::new(root.clone()));
    serve_http(app, root, shutdown).await
}

/// A's handler: no context passed by hand; `call_b` finds the request's
/// through `Context::current()` (set by `ContextLayer`).
async fn via_b(b: SocketAddr, path: String, completed: Arc<AtomicUsize>) -> (StatusCode, String) {
    match call_b(b, &format!("/{path}")).await {
        Ok(body) => {
            completed.fetch_add(1, Ordering::SeqCst);
            (StatusCode::OK, body)
        }
        Err(status) => (http_status(&status), status.message().to_owned()),
    }
}

/// The HTTP status A answers for B's gRPC status.
fn http_status(status: &Status) -> StatusCode {
    match status.code() {
        tonic::Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        tonic::Code::Unavailable | tonic::Code::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    }
}

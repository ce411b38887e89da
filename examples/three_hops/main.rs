//! Deadlines and graceful shutdown across three services, all on 127.0.0.1
//! in one process: a client sends A (an axum HTTP server) a 300 ms budget
//! in `grpc-timeout`; A's handler calls B (a tonic server), whose handler
//! calls C (an axum HTTP server), neither passing any context by hand.
//! Copy the three parts you need:
//! - servers: `.layer(ContextLayer::new(root))` (A, B: `grpc-timeout`; C:
//!   `connect-timeout-ms`), and `root.cancelled_owned()` as the shutdown
//!   signal;
//! - clients: `BudgetLayer::new()` (A, B), which sends the remaining budget
//!   of `Context::current()` (inside a handler: the request's context) and
//!   drops the call when it ends; on tonic's `Channel` (A) with
//!   `.on_ended(AsGrpcStatus)`, so that A sees DEADLINE_EXCEEDED.
//!
//! ```sh
//! cargo run --example three_hops --features tower
//! ```

mod hops;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use hops::{http_get, start_a, start_b, start_c};
use http_body_util::Empty;
use tokio::sync::mpsc::unbounded_channel;

/// GET `path` on A with a 300 ms budget; its status and body.
async fn get_a(a: std::net::SocketAddr, path: &str) -> (u16, String) {
    let req = http::Request::get(path)
        .header("host", a.to_string())
        .header("grpc-timeout", "300m")
        .body(Empty::<Bytes>::new())
        .unwrap();
    http_get(a, req).await.expect("A answered")
}

#[tokio::main]
async fn main() {
    let (c_seen, mut c_contexts) = unbounded_channel();
    let (b_seen, _b_contexts) = unbounded_channel();
    let completed = Arc::new(AtomicUsize::new(0));
    let c = start_c(c_seen).await;
    let b = start_b(c.addr, b_seen).await;
    let a = start_a(b.addr, completed.clone()).await;
    println!(
        "A (HTTP) on {}, B (gRPC) on {}, C (HTTP) on {}",
        a.addr, b.addr, c.addr
    );

    let (status, left) = get_a(a.addr, "/via-b/remaining").await;
    println!("client -> A -> B -> C /remaining: {status}, C had {left} ms of the client's 300");

    // Whichever gives up first (A's BudgetLayer, tonic's grpc-timeout timer,
    // B, or A's layer), the client sees 504.
    let (status, message) = get_a(a.addr, "/via-b/stuck").await;
    println!("client -> A -> B -> C /stuck: {status} {message}");
    if let Ok(c_ctx) = c_contexts.try_recv() {
        c_ctx.done().await;
        println!("C's request context ended: {:?}", c_ctx.err());
    }

    // Graceful shutdown of A with a request in flight: it is answered (503
    // if its call to B was cut short), then A stops.
    let in_flight = tokio::spawn(get_a(a.addr, "/via-b/slow/1"));
    tokio::time::sleep(hops::SLOW / 2).await;
    a.shutdown.cancel();
    let (status, _) = in_flight.await.unwrap();
    a.served.await.unwrap();
    println!("A ({}) drained: the request in flight got {status}", a.addr);
    println!("A completed {} answers", completed.load(Ordering::SeqCst));
    // Then B and C: cancel each root, wait for the server to drain.
    for (name, hop) in [("B", b), ("C", c)] {
        hop.shutdown.cancel();
        hop.served.await.unwrap();
        println!("{name} ({}) drained", hop.addr);
    }
}

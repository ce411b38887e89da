//! Deadlines across three services, all on 127.0.0.1 in one process:
//! A (a tonic client) calls B (a tonic server) with a 300 ms budget; B's
//! handler calls C (an axum HTTP server) without passing any context by
//! hand. Copy the three parts you need:
//! - servers: `.layer(ContextLayer::new(root))` (B: `grpc-timeout`; C:
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

use std::time::Duration;

use ctxtree::Context;
use hops::{call_b, start_b, start_c};
use tokio::sync::mpsc::unbounded_channel;

#[tokio::main]
async fn main() {
    let (c_seen, mut c_contexts) = unbounded_channel();
    let (b_seen, _b_contexts) = unbounded_channel();
    let c = start_c(c_seen).await;
    let b = start_b(c.addr, b_seen).await;
    println!("B (gRPC) on {}, C (HTTP) on {}", b.addr, c.addr);

    // A: a 300 ms budget for the whole chain.
    let (a, _cancel) = Context::background().with_timeout(Duration::from_millis(300));
    let left = a
        .scope(call_b(b.addr, "/remaining"))
        .await
        .expect("C answered");
    println!("A -> B -> C /remaining: C had {left} ms of A's 300");

    let (a, _cancel) = Context::background().with_timeout(Duration::from_millis(300));
    let result = a.scope(call_b(b.addr, "/stuck")).await;
    // Whichever gives up first (A's BudgetLayer, tonic's grpc-timeout timer
    // or B), A sees DEADLINE_EXCEEDED.
    let status = result.expect_err("C never answers /stuck");
    println!(
        "A -> B -> C /stuck: A got {:?}: {}",
        status.code(),
        status.message()
    );
    if let Ok(c_ctx) = c_contexts.try_recv() {
        c_ctx.done().await;
        println!("C's request context ended: {:?}", c_ctx.err());
    }
    // Graceful shutdown: cancel each root, wait for the server to drain.
    for (name, hop) in [("B", b), ("C", c)] {
        hop.shutdown.cancel();
        hop.served.await.unwrap();
        println!("{name} ({}) drained", hop.addr);
    }
}

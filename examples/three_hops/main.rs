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

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ctxtree::Context;
use hops::{call_b, start_b, start_c};

#[tokio::main]
async fn main() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (c, stop_c) = start_c(seen.clone()).await;
    let (b, stop_b) = start_b(c).await;
    println!("B (gRPC) on {b}, C (HTTP) on {c}");

    // A: a 300 ms budget for the whole chain.
    let (a, _cancel) = Context::background().with_timeout(Duration::from_millis(300));
    let left = a.scope(call_b(b, "/remaining")).await.expect("C answered");
    println!("A -> B -> C /remaining: C had {left} ms of A's 300");

    let (a, _cancel) = Context::background().with_timeout(Duration::from_millis(300));
    let result = a.scope(call_b(b, "/stuck")).await;
    // Whichever gives up first (A's BudgetLayer, tonic's grpc-timeout timer
    // or B), A sees DEADLINE_EXCEEDED.
    let status = result.expect_err("C never answers /stuck");
    println!(
        "A -> B -> C /stuck: A got {:?}: {}",
        status.code(),
        status.message()
    );
    let c_ctx = seen.lock().unwrap().pop();
    if let Some(c_ctx) = c_ctx {
        c_ctx.done().await;
        println!("C's request context ended: {:?}", c_ctx.err());
    }
    drop((stop_b, stop_c)); // graceful shutdown of B and C
}

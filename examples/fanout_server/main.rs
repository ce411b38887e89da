//! A fan-out HTTP server: every request to `/fanout` starts thousands of
//! subtasks, each under a context derived from the request's, so a client
//! that goes away, a `grpc-timeout` deadline or a shutdown cancels all of
//! them at once. `GET /stats` shows the counters, `GET /debug/contexts` the
//! live context tree. Ctrl-C cancels the root
//! context: in-flight requests answer 503 and the server drains.
//!
//! ```text
//! cargo run --release --example fanout_server --features tower -- 127.0.0.1:3000
//! curl '127.0.0.1:3000/fanout?tasks=5000&work_ms=20'
//! curl -H 'grpc-timeout: 50m' '127.0.0.1:3000/fanout?tasks=5000&work_ms=10000'
//! curl 127.0.0.1:3000/stats
//! ```

mod app;

use std::sync::Arc;

use ctxtree::{Cause, Context};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_string());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!(
        "fanout_server listening on http://{}",
        listener.local_addr()?
    );

    let (root, shutdown) = Context::background().with_cancel();
    let stats = Arc::new(app::Stats::default());
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("ctrl-c: canceling the root context and draining");
            shutdown.cancel_with_cause(Cause::msg("server shutting down"));
        }
        // Keep the handle alive until then (dropping it would cancel).
        std::future::pending::<()>().await
    });
    app::serve(listener, root, stats.clone(), app::Config::default()).await?;
    eprintln!("drained; final stats: {}", stats_line(&stats));
    Ok(())
}

fn stats_line(stats: &app::Stats) -> String {
    use std::sync::atomic::Ordering::SeqCst;
    format!(
        "started {} finished {} canceled {} max cancel latency {} us",
        stats.started.load(SeqCst),
        stats.finished.load(SeqCst),
        stats.canceled.load(SeqCst),
        stats.max_cancel_latency_us.load(SeqCst)
    )
}

//! What the integrations cost: `ctx.run`, the tokio-util token bridges, the
//! done channel and the tower layers' per-request work (server and
//! client), each next to the operation it wraps (figures in
//! docs/benchmarks.md).
//!
//! `cargo bench --all-features --bench integrations`
//! (`-- --test` runs each once as a smoke test; `-- tower` only the tower
//! layers).

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context as TaskContext, Poll};

use criterion::{criterion_group, criterion_main, Criterion};
use ctxtree::tower::{AsGrpcStatus, BudgetLayer, ContextLayer};
use ctxtree::{Context, Error};
use tokio_util::sync::CancellationToken;
use tower::{service_fn, Layer, Service};

fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
    let mut cx = TaskContext::from_waker(futures::task::noop_waker_ref());
    pin!(future).poll(&mut cx)
}

/// `ctx.run` on a future that is ready at once, against polling it bare;
/// and a pending `run` that a cancel ends (register, wake, `Err`).
fn run(c: &mut Criterion) {
    let (ctx, _h) = Context::background().with_cancel();
    c.bench_function("integrations/ready_future_bare", |b| {
        b.iter(|| poll_once(async { black_box(1) }))
    });
    c.bench_function("integrations/ctx_run_ready_future", |b| {
        b.iter(|| poll_once(black_box(&ctx).run(async { black_box(1) })))
    });
    c.bench_function("integrations/derive_run_pending_cancel", |b| {
        let mut cx = TaskContext::from_waker(futures::task::noop_waker_ref());
        b.iter(|| {
            let (child, handle) = ctx.with_cancel();
            let mut run = pin!(child.run(std::future::pending::<()>()));
            assert!(run.as_mut().poll(&mut cx).is_pending());
            handle.cancel();
            assert_eq!(
                run.as_mut().poll(&mut cx),
                Poll::Ready(Err(Error::Canceled))
            );
        })
    });
}

fn tokio_bridges(c: &mut Criterion) {
    let (ctx, _h) = Context::background().with_cancel();
    c.bench_function(
        "integrations/token_new_child_cancel (tokio-util alone)",
        |b| {
            let parent = CancellationToken::new();
            b.iter(|| {
                let child = parent.child_token();
                child.cancel();
            })
        },
    );
    c.bench_function("integrations/derive_cancellation_token_cancel", |b| {
        b.iter(|| {
            let (child, handle) = ctx.with_cancel();
            let token = child.cancellation_token();
            handle.cancel();
            assert!(token.is_cancelled());
        })
    });
    c.bench_function("integrations/linked_cancellation_token_drop", |b| {
        b.iter(|| drop(black_box(&ctx).linked_cancellation_token()))
    });
    let token = CancellationToken::new();
    c.bench_function("integrations/with_cancellation_token_drop", |b| {
        b.iter(|| {
            let (child, handle) = ctx.with_cancellation_token(&token);
            drop(handle);
            black_box(child);
        })
    });
    c.bench_function("integrations/with_cancellation_token_token_cancel", |b| {
        b.iter(|| {
            let token = CancellationToken::new();
            let (child, _handle) = ctx.with_cancellation_token(&token);
            token.cancel();
            assert!(child.is_done());
        })
    });
}

fn done_channel(c: &mut Criterion) {
    let (ctx, _h) = Context::background().with_cancel();
    c.bench_function("integrations/done_channel_drop", |b| {
        b.iter(|| drop(black_box(&ctx).done_channel()))
    });
    c.bench_function("integrations/derive_done_channel_cancel_recv", |b| {
        b.iter(|| {
            let (child, handle) = ctx.with_cancel();
            let done = child.done_channel();
            handle.cancel();
            assert!(done.receiver().recv().is_err());
        })
    });
}

/// The layer's per-request work (derive, extension insert, cancel on
/// completion) on top of an inner service that answers at once.
fn tower_layer(c: &mut Criterion) {
    let inner = || {
        service_fn(|req: http::Request<String>| async move {
            Ok::<_, std::convert::Infallible>(http::Response::new(req.into_body()))
        })
    };
    let mut bare = inner();
    c.bench_function("integrations/tower_inner_service_bare", |b| {
        b.iter(|| poll_once(bare.call(http::Request::new(String::new()))))
    });
    let (root, _h) = Context::background().with_cancel();
    let mut layered = ContextLayer::new(root).layer(inner());
    c.bench_function("integrations/tower_context_layer", |b| {
        b.iter(|| poll_once(layered.call(http::Request::new(String::new()))))
    });
    let mut timed = ContextLayer::new(Context::background()).layer(inner());
    c.bench_function("integrations/tower_context_layer_grpc_timeout", |b| {
        b.iter(|| {
            let req = http::Request::builder()
                .header("grpc-timeout", "50m")
                .body(String::new())
                .unwrap();
            poll_once(timed.call(req))
        })
    });
}

/// The client layer's per-request work on top of an inner service that
/// answers at once: no context (passed through), and the current context
/// with a deadline (clock read, `grpc-timeout` encoded and inserted, the
/// context's done future made and dropped).
fn tower_budget_layer(c: &mut Criterion) {
    let inner = || {
        service_fn(|req: http::Request<String>| async move {
            Ok::<_, std::convert::Infallible>(http::Response::new(req.into_body()))
        })
    };
    let mut bare = BudgetLayer::new().on_ended(AsGrpcStatus).layer(inner());
    c.bench_function("integrations/tower_budget_layer_no_context", |b| {
        b.iter(|| poll_once(bare.call(http::Request::new(String::new()))))
    });
    let (ctx, _h) = Context::background().with_timeout(std::time::Duration::from_secs(3600));
    let mut client = BudgetLayer::new().on_ended(AsGrpcStatus).layer(inner());
    c.bench_function("integrations/tower_budget_layer_deadline", |b| {
        b.iter(|| ctx.in_scope(|| poll_once(client.call(http::Request::new(String::new())))))
    });
}

criterion_group!(
    benches,
    run,
    tokio_bridges,
    done_channel,
    tower_layer,
    tower_budget_layer
);
criterion_main!(benches);

//! Criterion benchmarks of ctxtree on its own (no peers; the side-by-side
//! comparison with tokio-util and a mutex tree lives elsewhere).
//!
//! Run with `cargo bench --bench core`; `cargo bench --bench core -- --test`
//! runs every benchmark once as a smoke test.

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::{Arc, Barrier};
use std::task::Context as TaskContext;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use ctxtree::{CancelHandle, Context};

/// A live parent shared by the derive benchmarks; its handle must outlive them.
fn live_parent() -> (Context, CancelHandle) {
    Context::background().with_cancel()
}

/// Derive a child from a live parent, cancel it explicitly, drop both halves.
fn derive_cancel_drop(c: &mut Criterion) {
    let (parent, _parent_handle) = live_parent();
    c.bench_function("derive_cancel_drop", |b| {
        b.iter(|| {
            let (child, handle) = black_box(&parent).with_cancel();
            handle.cancel();
            drop(handle);
            drop(black_box(child));
        })
    });
}

/// Derive a child and let dropping the handle cancel it.
fn derive_drop_handle(c: &mut Criterion) {
    let (parent, _parent_handle) = live_parent();
    c.bench_function("derive_drop_handle", |b| {
        b.iter(|| {
            let (child, handle) = black_box(&parent).with_cancel();
            drop(handle);
            drop(black_box(child));
        })
    });
}

/// `is_done` on a context that is not canceled.
fn is_done_live(c: &mut Criterion) {
    let (ctx, _handle) = live_parent();
    c.bench_function("is_done_live", |b| b.iter(|| black_box(&ctx).is_done()));
}

/// `err` on a context that is not canceled.
fn err_live(c: &mut Criterion) {
    let (ctx, _handle) = live_parent();
    c.bench_function("err_live", |b| b.iter(|| black_box(&ctx).err()));
}

/// A parent with `n` live children, built outside the timed region.
struct Fanout {
    parent: Context,
    handle: CancelHandle,
    children: Vec<(Context, CancelHandle)>,
}

fn build_fanout(n: usize) -> Fanout {
    let (parent, handle) = Context::background().with_cancel();
    let children = (0..n).map(|_| parent.with_cancel()).collect();
    Fanout {
        parent,
        handle,
        children,
    }
}

/// Time only the parent's `cancel()` over `n` children; building the tree
/// and dropping it happen outside the measurement.
fn cancel_fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("cancel_fanout");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sampling_mode(SamplingMode::Flat);
    for (n, batch) in [
        (1_000usize, BatchSize::LargeInput),
        (100_000, BatchSize::PerIteration),
    ] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(n.to_string(), |b| {
            b.iter_batched(
                || build_fanout(n),
                |tree| {
                    tree.handle.cancel();
                    tree // dropped by criterion after the timer stops
                },
                batch,
            )
        });
    }
    group.finish();

    // Not timed: the tree really is canceled once cancel() returns.
    let tree = build_fanout(1_000);
    tree.handle.cancel();
    assert!(tree.parent.is_done());
    assert!(tree.children.iter().all(|(child, _)| child.is_done()));
}

/// Go's `BenchmarkCancelTree` (Root=OpenCanceler, depth 1000): derive a root,
/// build a 1000-deep chain under it, cancel the root, drop everything. All of
/// it is timed.
fn chain(c: &mut Criterion) {
    const DEPTH: usize = 1_000;
    let mut group = c.benchmark_group("chain");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(DEPTH as u64));
    group.bench_function(DEPTH.to_string(), |b| {
        // Handles keep the chain alive (dropping one cancels it); the vector
        // is reused so its allocation is not part of the figure.
        let mut handles: Vec<CancelHandle> = Vec::with_capacity(DEPTH);
        b.iter(|| {
            let (root, root_handle) = Context::background().with_cancel();
            let mut ctx = root;
            for _ in 0..DEPTH {
                let (child, handle) = ctx.with_cancel();
                handles.push(handle);
                ctx = child;
            }
            root_handle.cancel();
            debug_assert!(ctx.is_done());
            drop(black_box(ctx));
            drop(root_handle);
            handles.clear();
        })
    });
    group.finish();
}

/// `N` threads blocked in `wait()`; time from `cancel()` until every thread
/// has woken and been joined. Spawning and parking are outside the timer.
fn wake_blocked_threads(c: &mut Criterion) {
    const THREADS: usize = 8;
    let mut group = c.benchmark_group("wake_blocked_threads");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sampling_mode(SamplingMode::Flat);
    group.bench_function(THREADS.to_string(), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (ctx, handle) = Context::background().with_cancel();
                let barrier = Arc::new(Barrier::new(THREADS + 1));
                let workers: Vec<_> = (0..THREADS)
                    .map(|_| {
                        let ctx = ctx.clone();
                        let barrier = Arc::clone(&barrier);
                        thread::spawn(move || {
                            barrier.wait();
                            ctx.wait()
                        })
                    })
                    .collect();
                barrier.wait();
                // Give every thread time to get from the barrier into wait().
                thread::sleep(Duration::from_millis(5));
                let start = Instant::now();
                handle.cancel();
                for w in workers {
                    assert_eq!(w.join().unwrap(), ctxtree::Error::Canceled);
                }
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
}

/// Create `done()` on a live context, poll it once (it registers a waiter
/// and returns Pending), drop it (abandoning the waiter).
fn done_future_poll_drop(c: &mut Criterion) {
    let (ctx, _handle) = live_parent();
    let waker = futures::task::noop_waker();
    {
        // Not timed: on a live context the first poll really is Pending.
        let mut fut = ctx.done();
        let poll = Pin::new(&mut fut).poll(&mut TaskContext::from_waker(&waker));
        assert!(poll.is_pending());
    }
    c.bench_function("done_future_poll_drop", |b| {
        b.iter(|| {
            let mut cx = TaskContext::from_waker(&waker);
            let mut fut = black_box(&ctx).done();
            let poll = Pin::new(&mut fut).poll(&mut cx);
            drop(fut);
            poll // black-boxed by criterion
        })
    });
}

/// A timeout that never fires during a run (Go's benchmarks use an hour).
const LONG_TIMEOUT: Duration = Duration::from_secs(3600);

/// One `with_timeout` child of a live parent, canceled explicitly, both
/// halves dropped. Nothing else is armed in the driver beforehand.
fn with_timeout_cancel_drop(c: &mut Criterion) {
    let (parent, _parent_handle) = live_parent();
    c.bench_function("with_timeout_cancel_drop", |b| {
        b.iter(|| {
            let (child, handle) = black_box(&parent).with_timeout(LONG_TIMEOUT);
            handle.cancel();
            drop(handle);
            drop(black_box(child));
        })
    });
}

/// Go's `BenchmarkWithTimeout` shape: per op, create 10 `with_timeout(1h)`
/// children of a shared parent and cancel all 10 (so one op is 10 creates +
/// 10 cancels, as in Go), with 40 / 4,000 / 400,000 other timeouts of the
/// same parent armed and live throughout. The other timeouts are armed once
/// per benchmark, outside the measurement. Single-threaded (Go's runs on
/// every P with `RunParallel`).
fn with_timeout_cancel(c: &mut Criterion) {
    const PER_OP: usize = 10;
    let mut group = c.benchmark_group("with_timeout_cancel");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let (parent, _parent_handle) = live_parent();
    for others in [40usize, 4_000, 400_000] {
        let live: Vec<(Context, CancelHandle)> = (0..others)
            .map(|_| parent.with_timeout(LONG_TIMEOUT))
            .collect();
        group.bench_function(BenchmarkId::from_parameter(others), |b| {
            // Go keeps the 10 CancelFuncs in an array; reuse one vector.
            let mut handles: Vec<CancelHandle> = Vec::with_capacity(PER_OP);
            b.iter(|| {
                for _ in 0..PER_OP {
                    let (ctx, handle) = black_box(&parent).with_timeout(LONG_TIMEOUT);
                    drop(black_box(ctx));
                    handles.push(handle);
                }
                for handle in handles.drain(..) {
                    handle.cancel();
                }
            })
        });
        // Not timed: the other timeouts stayed armed and live throughout.
        assert!(live.iter().all(|(ctx, _)| !ctx.is_done()));
        drop(live);
    }
    group.finish();
}

/// Go's `BenchmarkWithTimeout` exactly: the root is `Background`, the other
/// live timeouts are spread over the threads, and the measured loop runs on
/// every core at once (Go's `b.RunParallel` with GOMAXPROCS = cores); one op
/// is 10 `with_timeout` + 10 cancels, and time per op is wall time divided by
/// the ops of all threads, as Go reports it. This is the figure to set beside
/// Go's ≈5.6 µs/op on this machine.
fn with_timeout_cancel_go_shape(c: &mut Criterion) {
    const PER_OP: usize = 10;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut group = c.benchmark_group("with_timeout_cancel_go_shape");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let root = Context::background();
    for others in [40usize, 4_000, 400_000] {
        let live: Vec<(Context, CancelHandle)> = std::thread::scope(|s| {
            let spawned: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        (0..others / threads)
                            .map(|_| root.with_timeout(Duration::from_secs(3600)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            spawned
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        group.bench_function(BenchmarkId::from_parameter(others), |b| {
            b.iter_custom(|iters| {
                let per_thread = iters.div_ceil(threads as u64);
                let start = Barrier::new(threads + 1);
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        s.spawn(|| {
                            let mut handles: Vec<CancelHandle> = Vec::with_capacity(PER_OP);
                            start.wait();
                            for _ in 0..per_thread {
                                for _ in 0..PER_OP {
                                    let (ctx, handle) = root.with_timeout(LONG_TIMEOUT);
                                    drop(black_box(ctx));
                                    handles.push(handle);
                                }
                                for handle in handles.drain(..) {
                                    handle.cancel();
                                }
                            }
                        });
                    }
                    start.wait();
                    let began = Instant::now();
                    // The scope joins every thread before it returns.
                    (began, per_thread * threads as u64)
                })
                .0
                .elapsed()
                .mul_f64(iters as f64 / (per_thread * threads as u64) as f64)
            })
        });
        assert!(live.iter().all(|(ctx, _)| !ctx.is_done()));
        drop(live);
    }
    group.finish();
}

/// `with_value` on a context that already has values, then drop: one
/// layer allocation (plus a table every 8th layer, amortized here over the
/// 3 layers below).
fn with_value_drop(c: &mut Criterion) {
    let base = Context::background()
        .with_value(1u8)
        .with_value(2u16)
        .with_value("x");
    c.bench_function("with_value_drop", |b| {
        b.iter(|| drop(black_box(black_box(&base).with_value(7u64))))
    });
}

/// Register an `after_func` on a live context and stop it (a request's
/// cleanup hook that did not fire).
fn after_func_register_stop(c: &mut Criterion) {
    let (ctx, _h) = live_parent();
    c.bench_function("after_func_register_stop", |b| {
        b.iter(|| {
            let registration = black_box(&ctx).after_func(|| {});
            black_box(registration.stop())
        })
    });
}

/// Derive a child, register an `after_func`, cancel (runs it), drop.
fn after_func_register_cancel(c: &mut Criterion) {
    let (parent, _h) = live_parent();
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    c.bench_function("after_func_derive_register_cancel", |b| {
        b.iter(|| {
            let (ctx, handle) = parent.with_cancel();
            let count = counter.clone();
            let _registration = ctx.after_func(move || {
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            });
            handle.cancel();
        })
    });
}

criterion_group!(
    benches,
    with_value_drop,
    after_func_register_stop,
    after_func_register_cancel,
    derive_cancel_drop,
    derive_drop_handle,
    is_done_live,
    err_live,
    cancel_fanout,
    chain,
    wake_blocked_threads,
    done_future_poll_drop,
    with_timeout_cancel_drop,
    with_timeout_cancel,
    with_timeout_cancel_go_shape
);
criterion_main!(benches);

//! Ports of Go's `context/benchmark_test.go` shapes, so ctxtree's figures can be
//! set beside `go test -bench . context` on the same machine
//! (`scripts/go-bench.sh` runs Go's own; docs/benchmarks.md has both).
//!
//! Run with `cargo bench --bench go_shapes`; `-- --test` runs each once.
//! Go's `b.RunParallel` runs GOMAXPROCS goroutines; the parallel ports run one
//! thread per core and report wall time per operation across all threads, as
//! Go does. (`WithTimeout` is in `benches/core.rs`: `with_timeout_cancel_go_shape`.)

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ctxtree::{CancelHandle, Context};

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Runs `op` `iters` times split over one thread per core, all starting
/// together; returns the wall time scaled to `iters` operations.
fn parallel(iters: u64, op: impl Fn() + Sync) -> Duration {
    let threads = cores();
    let per_thread = iters.div_ceil(threads as u64);
    let start = Barrier::new(threads + 1);
    let began = std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                start.wait();
                for _ in 0..per_thread {
                    op();
                }
            });
        }
        start.wait();
        Instant::now()
    });
    began
        .elapsed()
        .mul_f64(iters as f64 / (per_thread * threads as u64) as f64)
}

/// Go's dummy work between the steps of `BenchmarkCommonParentCancel`: a
/// dependent chain of 100 signed divisions (`x /= x + 1`), checked for
/// division by zero as Go's are; `x` is opaque to the optimizer.
#[inline]
fn divisions(x: &mut i64) {
    let mut v = black_box(*x);
    for _ in 0..100 {
        v /= v + 1;
    }
    *x = black_box(v);
}

#[derive(Debug)]
struct Key(&'static str);

/// `BenchmarkCommonParentCancel`: every core derives a child of one shared
/// parent (under a value layer), reads a value through it, cancels it, with
/// 2×100 divisions of dummy work per op.
fn common_parent_cancel(c: &mut Criterion) {
    let root = Context::background().with_value(Key("value"));
    let (shared, _shared_cancel) = root.with_cancel();
    c.bench_function("go/CommonParentCancel", |b| {
        b.iter_custom(|iters| {
            parallel(iters, || {
                let mut x = 0i64;
                let (ctx, cancel) = shared.with_cancel();
                assert_eq!(ctx.value::<Key>().map(|k| k.0), Some("value"));
                divisions(&mut x);
                cancel.cancel();
                divisions(&mut x);
            })
        })
    });
    // The two halves on their own, to read the figure above: the context
    // operations without Go's dummy work, and the dummy work alone.
    c.bench_function("go/CommonParentCancel/contexts_only", |b| {
        b.iter_custom(|iters| {
            parallel(iters, || {
                let (ctx, cancel) = shared.with_cancel();
                assert_eq!(ctx.value::<Key>().map(|k| k.0), Some("value"));
                cancel.cancel();
            })
        })
    });
    c.bench_function("go/CommonParentCancel/work_only", |b| {
        b.iter_custom(|iters| {
            parallel(iters, || {
                let mut x = 0i64;
                divisions(&mut x);
                divisions(&mut x);
            })
        })
    });
}

/// `BenchmarkCancelTree`: build a chain of `depth` cancel contexts under a
/// Background root, an open canceler (canceled after) or a closed one
/// (canceled before: every child is born canceled). Go leaves the
/// Background chains to the GC; here dropping the handles cancels them.
fn cancel_tree(c: &mut Criterion) {
    let mut group = c.benchmark_group("go/CancelTree");
    for depth in [1usize, 10, 100, 1000] {
        let mut handles: Vec<CancelHandle> = Vec::with_capacity(depth);
        let mut build = |root: Context| {
            let mut ctx = root;
            for _ in 0..depth {
                let (child, handle) = ctx.with_cancel();
                handles.push(handle);
                ctx = child;
            }
            handles.clear();
        };
        group.bench_function(BenchmarkId::new("Background", depth), |b| {
            b.iter(|| build(Context::background()))
        });
        group.bench_function(BenchmarkId::new("OpenCanceler", depth), |b| {
            b.iter(|| {
                let (ctx, cancel) = Context::background().with_cancel();
                build(ctx);
                cancel.cancel();
            })
        });
        group.bench_function(BenchmarkId::new("ClosedCanceler", depth), |b| {
            b.iter(|| {
                let (ctx, cancel) = Context::background().with_cancel();
                cancel.cancel();
                build(ctx);
            })
        });
    }
    group.finish();
}

/// `BenchmarkCheckCanceled`: `Err` and a non-blocking `Done` check on a
/// canceled context.
fn check_canceled(c: &mut Criterion) {
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    c.bench_function("go/CheckCanceled/Err", |b| b.iter(|| black_box(&ctx).err()));
    c.bench_function("go/CheckCanceled/Done", |b| {
        b.iter(|| black_box(&ctx).is_done())
    });
}

/// `BenchmarkContextCancelDone`: every core polls `Done` on one live context.
fn context_cancel_done(c: &mut Criterion) {
    let (ctx, _cancel) = Context::background().with_cancel();
    c.bench_function("go/ContextCancelDone", |b| {
        b.iter_custom(|iters| {
            parallel(iters, || {
                black_box(black_box(&ctx).is_done());
            })
        })
    });
}

/// One key type per `N`: Go's `WithValue(ctx, i, i)` keys become types.
struct Layer<const N: usize>(#[allow(dead_code)] usize);

/// A key bound nowhere: Go looks up `-1`.
struct Missing;

fn bind<const N: usize>(ctx: &Context, value: usize) -> Context {
    ctx.with_value(Layer::<N>(value))
}

const BINDERS: [fn(&Context, usize) -> Context; 100] = [
    bind::<0>, bind::<1>, bind::<2>, bind::<3>, bind::<4>, bind::<5>, bind::<6>, bind::<7>,
    bind::<8>, bind::<9>, bind::<10>, bind::<11>, bind::<12>, bind::<13>, bind::<14>, bind::<15>,
    bind::<16>, bind::<17>, bind::<18>, bind::<19>, bind::<20>, bind::<21>, bind::<22>, bind::<23>,
    bind::<24>, bind::<25>, bind::<26>, bind::<27>, bind::<28>, bind::<29>, bind::<30>, bind::<31>,
    bind::<32>, bind::<33>, bind::<34>, bind::<35>, bind::<36>, bind::<37>, bind::<38>, bind::<39>,
    bind::<40>, bind::<41>, bind::<42>, bind::<43>, bind::<44>, bind::<45>, bind::<46>, bind::<47>,
    bind::<48>, bind::<49>, bind::<50>, bind::<51>, bind::<52>, bind::<53>, bind::<54>, bind::<55>,
    bind::<56>, bind::<57>, bind::<58>, bind::<59>, bind::<60>, bind::<61>, bind::<62>, bind::<63>,
    bind::<64>, bind::<65>, bind::<66>, bind::<67>, bind::<68>, bind::<69>, bind::<70>, bind::<71>,
    bind::<72>, bind::<73>, bind::<74>, bind::<75>, bind::<76>, bind::<77>, bind::<78>, bind::<79>,
    bind::<80>, bind::<81>, bind::<82>, bind::<83>, bind::<84>, bind::<85>, bind::<86>, bind::<87>,
    bind::<88>, bind::<89>, bind::<90>, bind::<91>, bind::<92>, bind::<93>, bind::<94>, bind::<95>,
    bind::<96>, bind::<97>, bind::<98>, bind::<99>,
];

fn value_chain(depth: usize) -> Context {
    let mut ctx = Context::background();
    for (i, bind) in BINDERS.iter().take(depth).enumerate() {
        ctx = bind(&ctx, i);
    }
    ctx
}

/// `BenchmarkDeepValueSameGoRoutine`: a missing key looked up through
/// `depth` value layers with distinct keys. Also the deepest present key
/// (bound first, the worst case for a walk) and the nearest.
fn deep_value(c: &mut Criterion) {
    let mut group = c.benchmark_group("go/DeepValueSameGoRoutine");
    for depth in [10usize, 20, 30, 50, 100] {
        let ctx = value_chain(depth);
        assert!(ctx.value::<Layer<0>>().is_some());
        group.bench_function(BenchmarkId::new("missing", depth), |b| {
            b.iter(|| black_box(&ctx).value::<Missing>().is_some())
        });
        group.bench_function(BenchmarkId::new("first_bound", depth), |b| {
            b.iter(|| black_box(&ctx).value::<Layer<0>>().is_some())
        });
    }
    group.finish();
}

/// `BenchmarkDeepValueNewGoRoutine`: the same lookup from a freshly spawned
/// goroutine per op; in Rust a spawned thread (so this mostly measures
/// thread spawn, as Go's mostly measures goroutine start).
fn deep_value_new_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("go/DeepValueNewGoRoutine");
    group.sample_size(20);
    for depth in [10usize, 100] {
        let ctx = value_chain(depth);
        group.bench_function(BenchmarkId::from_parameter(depth), |b| {
            b.iter(|| {
                std::thread::scope(|s| {
                    s.spawn(|| black_box(&ctx).value::<Missing>().is_some());
                })
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    common_parent_cancel,
    cancel_tree,
    check_canceled,
    context_cancel_done,
    deep_value,
    deep_value_new_thread
);
criterion_main!(benches);

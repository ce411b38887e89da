//! criterion benchmarks of the comparison runner's timed scenarios, each
//! run for ctxtree, the Go-style mutex tree and tokio-util's
//! `CancellationToken` through the same code (`ctxtree_bench::ops` over the
//! `Tree` trait). Within a group the three implementations are benchmarked
//! one after the other, so compare them by ratio, and run the group again
//! where the machine is noisy. Times are wall time: where the runner
//! reports CPU time per call (`is_done` from several threads, the shared
//! parent's second column), this reports wall time per call on each thread
//! (`is_done`) or per operation of all threads together (shared parent).
//! The runner's extra row with tokio-util as one token is not repeated.
//!
//! `cargo bench -p ctxtree-bench --bench peers` (about 4 minutes on 2
//! cores); `cargo test -p ctxtree-bench --bench peers` runs every benchmark
//! once, unoptimized and with debug assertions, as a smoke test; a filter
//! such as `-- derive` runs one group. docs/benchmarks.md records a run.
//!
//! Not here, because they are not repeated timings: the 10⁶-deep chain and
//! the RSS after 10⁶ cycles (one fresh process per implementation) and the
//! live bytes and allocations per child (counts) — the runner has them.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode,
    Throughput,
};
use ctxtree_bench::ops::{self, build_chain, live_parent, one_child, Fanout};
use ctxtree_bench::tree::{CtxTree, MutexTree, TokioTree, Tree};

/// Registers `bench::<T>` for each implementation in `group`, under the
/// implementation's name (and `param`, when given).
macro_rules! for_each_tree {
    ($group:expr, $param:expr, $bench:ident) => {{
        $bench::<CtxTree>($group, $param);
        $bench::<MutexTree>($group, $param);
        $bench::<TokioTree>($group, $param);
    }};
}

fn id<T: Tree>(param: Option<usize>) -> BenchmarkId {
    match param {
        Some(p) => BenchmarkId::new(T::NAME, p),
        None => BenchmarkId::from_parameter(T::NAME),
    }
}

fn derive_one<T: Tree>(g: &mut BenchmarkGroup<'_, WallTime>, param: Option<usize>) {
    let (parent, _handle) = live_parent::<T>();
    g.bench_function(id::<T>(param), |b| b.iter(|| one_child::<T>(&parent)));
}

/// derive + cancel + drop of a child of a live parent, one thread.
fn derive_cancel_drop(c: &mut Criterion) {
    let mut g = c.benchmark_group("peers/derive_cancel_drop");
    for_each_tree!(&mut g, None, derive_one);
    g.finish();
}

fn shared_one<T: Tree>(g: &mut BenchmarkGroup<'_, WallTime>, threads: Option<usize>) {
    let threads = threads.expect("a thread count");
    let (parent, _handle) = live_parent::<T>();
    g.bench_function(id::<T>(Some(threads)), |b| {
        // `iters` operations in all, split over the threads: the time per
        // operation is the wall time over the total (throughput's inverse).
        b.iter_custom(|iters| {
            let per_thread = iters.div_ceil(threads as u64);
            let took = ops::on_threads(threads, per_thread, &parent, one_child::<T>);
            took.mul_f64(iters as f64 / (per_thread * threads as u64) as f64)
        })
    });
    assert!(!T::is_done(&parent));
}

/// The same from one shared parent on 1, 2 and 4 threads: wall time per
/// operation of all threads together (lower is more throughput).
fn shared_parent(c: &mut Criterion) {
    let mut g = c.benchmark_group("peers/shared_parent");
    for threads in [1, 2, 4] {
        for_each_tree!(&mut g, Some(threads), shared_one);
    }
    g.finish();
}

fn fanout_one<T: Tree>(g: &mut BenchmarkGroup<'_, WallTime>, n: Option<usize>) {
    let n = n.expect("a child count");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(id::<T>(Some(n)), |b| {
        // Only the cancel is timed; building and dropping the children is not.
        b.iter_custom(|iters| (0..iters).map(|_| Fanout::<T>::new(n).cancel()).sum())
    });
}

/// Cancel a parent with 10³ and 10⁵ live children (per child: the
/// throughput line, in elements).
fn cancel_fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("peers/cancel_fanout");
    g.sampling_mode(SamplingMode::Flat);
    for n in [1_000, 100_000] {
        if n > 1_000 {
            g.sample_size(20);
        }
        for_each_tree!(&mut g, Some(n), fanout_one);
    }
    g.finish();
}

fn chain_one<T: Tree>(g: &mut BenchmarkGroup<'_, WallTime>, depth: Option<usize>) {
    let depth = depth.expect("a depth");
    let mut handles = Vec::with_capacity(depth);
    g.bench_function(id::<T>(Some(depth)), |b| {
        b.iter(|| build_chain::<T>(depth, &mut handles))
    });
}

/// Go's CancelTree (OpenCanceler): a chain of 1 to 1000 under a live root,
/// built, canceled from the root and dropped.
fn chain(c: &mut Criterion) {
    let mut g = c.benchmark_group("peers/chain");
    for depth in [1, 10, 100, 1_000] {
        for_each_tree!(&mut g, Some(depth), chain_one);
    }
    g.finish();
}

fn is_done_one<T: Tree>(g: &mut BenchmarkGroup<'_, WallTime>, threads: Option<usize>) {
    let threads = threads.expect("a thread count");
    let (ctx, _handle) = live_parent::<T>();
    g.bench_function(id::<T>(Some(threads)), |b| {
        if threads == 1 {
            b.iter(|| T::is_done(black_box(&ctx)))
        } else {
            // Wall time per call on each thread (each runs `iters` calls).
            b.iter_custom(|iters| {
                ops::on_threads(threads, iters, &ctx, |c| {
                    black_box(T::is_done(black_box(c)));
                })
            })
        }
    });
}

/// `is_done()` on a live context from 1 and 2 threads (per call on one
/// thread, the threads running at once).
fn is_done(c: &mut Criterion) {
    let mut g = c.benchmark_group("peers/is_done");
    for threads in [1, 2] {
        for_each_tree!(&mut g, Some(threads), is_done_one);
    }
    g.finish();
}

fn wake_threads_one<T: Tree>(g: &mut BenchmarkGroup<'_, WallTime>, n: Option<usize>) {
    let n = n.expect("a thread count");
    g.bench_function(id::<T>(Some(n)), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| ops::wake_blocked_threads::<T>(n)).sum())
    });
}

/// Time from `cancel()` until the last of 1, 8 or 64 threads blocked in
/// `wait()` is awake.
fn wake_blocked_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("peers/wake_blocked_threads");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in [1, 8, 64] {
        for_each_tree!(&mut g, Some(n), wake_threads_one);
    }
    g.finish();
}

fn wake_tasks_one<T: Tree>(g: &mut BenchmarkGroup<'_, WallTime>, n: Option<usize>) {
    let n = n.expect("a task count");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio current_thread runtime");
    g.bench_function(id::<T>(Some(n)), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| ops::wake_tasks::<T>(&rt, n)).sum())
    });
}

/// Time from `cancel()` until 10⁴ tasks awaiting `done()` on a tokio
/// current_thread runtime have all finished.
fn wake_async_tasks(c: &mut Criterion) {
    let mut g = c.benchmark_group("peers/wake_async_tasks");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for_each_tree!(&mut g, Some(10_000), wake_tasks_one);
    g.finish();
}

fn timeout_one<T: Tree>(g: &mut BenchmarkGroup<'_, WallTime>, param: Option<usize>) {
    let (parent, _handle) = live_parent::<T>();
    if ops::one_timeout::<T>(&parent).is_none() {
        return; // no deadlines in this implementation (tokio-util)
    }
    g.bench_function(id::<T>(param), |b| {
        b.iter(|| ops::one_timeout::<T>(&parent).expect("checked above"))
    });
}

/// `with_timeout(1 h)` + cancel + drop, one thread (tokio-util has no
/// deadlines and is left out).
fn with_timeout_cancel_drop(c: &mut Criterion) {
    let mut g = c.benchmark_group("peers/with_timeout_cancel_drop");
    for_each_tree!(&mut g, None, timeout_one);
    g.finish();
}

fn value_one<T: Tree>(g: &mut BenchmarkGroup<'_, WallTime>, depth: Option<usize>) {
    let depth = depth.expect("a depth");
    let Some(values) = T::value_chain(depth) else {
        return; // no values in this implementation (tokio-util)
    };
    assert!(!T::value_missing(&values));
    g.bench_function(id::<T>(Some(depth)), |b| {
        b.iter(|| T::value_missing(black_box(&values)))
    });
}

/// Lookup of a key bound nowhere through 10 and 100 value layers (Go's
/// DeepValue); tokio-util has no values.
fn value_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("peers/value_missing");
    for depth in [10, 100] {
        for_each_tree!(&mut g, Some(depth), value_one);
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = peers;
    config = config();
    targets = derive_cancel_drop, shared_parent, cancel_fanout, chain, is_done,
        wake_blocked_threads, wake_async_tasks, with_timeout_cancel_drop, value_lookup
}
criterion_main!(peers);

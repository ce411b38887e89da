//! The scenario matrix. Every scenario is generic over [`Tree`] and runs the
//! same code for each implementation; a few run in a fresh child process (a
//! re-exec of this binary) so that peak and resident memory are not polluted
//! by the other implementations.

use std::cell::RefCell;
use std::hint::black_box;
use std::process::Command;
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use crate::alloc::Counting;
use crate::machine;
use crate::measure::{burst, interleave, per_op, per_op_rounds, Sampler, Sampling, Stats};
use crate::ops::{self, build_chain, live_parent, one_child};
use crate::progress::Progress;
use crate::report::{Cell, Row, Unit, IMPLS};
use crate::tree::{CtxTree, MutexTree, TokioTree, Tree};

/// Every scenario id, in run order, with a one-line description for `--help`.
pub const SCENARIOS: &[(&str, &str)] = &[
    ("derive", "derive a child + cancel + drop, 1 thread (ns/op)"),
    (
        "shared",
        "the same from one shared parent at each thread count (M ops/s, total)",
    ),
    (
        "fanout",
        "cancel a parent with 10^3 / 10^5 children (ns per child)",
    ),
    (
        "chain",
        "chains of 1, 10, 100, 1000: build + cancel + drop (us per chain; Go's CancelTree)",
    ),
    (
        "deep",
        "10^6-deep chain: build + cancel + drop (ms) and peak RSS (child process)",
    ),
    (
        "is_done",
        "is_done() on a live context from each thread count (ns per call)",
    ),
    (
        "wake",
        "wake 1 / 8 / 64 threads blocked in wait (us from cancel to all woken)",
    ),
    (
        "wake_async",
        "wake 10^4 tasks awaiting done() on a tokio current_thread runtime (us)",
    ),
    (
        "timeout",
        "with_timeout(1 h) + cancel + drop, 1 thread (ns/op)",
    ),
    (
        "value",
        "value lookup of a missing key through 10 / 100 value layers (Go's DeepValue)",
    ),
    (
        "churn",
        "cancel a 10^3 x 10^3 tree fresh and after 10^6 derive/drop churn (ns per leaf, with the \
         pointer-chase floor); single derives after 10^5 random drops (p99.9, max)",
    ),
    (
        "storm",
        "lateness of a 1 ms timeout armed as 10^6 deadlines fall due at once (ms)",
    ),
    (
        "memory",
        "live heap bytes and allocations per with_cancel child (10^4 children)",
    ),
    (
        "rss",
        "RSS after 10^6 derive/drop cycles (child process per implementation)",
    ),
];

/// What to run and how long.
#[derive(Clone, Debug)]
pub struct Config {
    pub sampling: Sampling,
    /// Duration of one multi-thread sample.
    pub burst: Duration,
    pub threads: Vec<usize>,
    pub only: Vec<String>,
    /// Samples of the 10^6-deep chain (each takes 0.1-0.5 s).
    pub deep_samples: usize,
    pub deep_depth: usize,
    pub rss_cycles: usize,
    pub async_tasks: usize,
    pub fanout: Vec<usize>,
    pub chains: Vec<usize>,
    pub wake_threads: Vec<usize>,
    pub value_depths: Vec<usize>,
}

impl Config {
    pub fn full(threads: Vec<usize>) -> Config {
        Config {
            sampling: Sampling {
                samples: 15,
                target: Duration::from_millis(50),
            },
            burst: Duration::from_millis(100),
            threads,
            only: Vec::new(),
            deep_samples: 7,
            deep_depth: 1_000_000,
            rss_cycles: 1_000_000,
            async_tasks: 10_000,
            fanout: vec![1_000, 100_000],
            chains: vec![1, 10, 100, 1_000],
            wake_threads: vec![1, 8, 64],
            value_depths: vec![10, 100],
        }
    }

    pub fn quick(threads: Vec<usize>) -> Config {
        Config {
            sampling: Sampling {
                samples: 5,
                target: Duration::from_millis(10),
            },
            burst: Duration::from_millis(20),
            deep_samples: 3,
            ..Config::full(threads)
        }
    }

    pub fn runs(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }

    /// Number of progress steps (one per row).
    pub fn steps(&self) -> usize {
        let t = self.threads.len();
        let rows = |id: &str| -> usize {
            match id {
                "derive" => 2,
                "timeout" | "wake_async" | "rss" => 1,
                "shared" | "is_done" => t,
                "fanout" => self.fanout.len(),
                "chain" => self.chains.len(),
                "deep" => 1,
                "wake" => self.wake_threads.len(),
                "memory" => 1,
                "churn" => 5,
                "storm" => 1,
                "value" => self.value_depths.len(),
                _ => 0,
            }
        };
        SCENARIOS
            .iter()
            .filter(|(id, _)| self.runs(id))
            .map(|(id, _)| rows(id))
            .sum()
    }
}

/// Runs every selected scenario for every implementation.
pub fn run_all(cfg: &Config, progress: &mut Progress) -> Vec<Row> {
    let mut rows = Vec::new();
    for (id, _) in SCENARIOS {
        if cfg.runs(id) {
            rows.extend(run_scenario(id, cfg, progress));
        }
    }
    rows
}

/// Builds a sampler per implementation (`f::<T>(args)` returns
/// `Option<Sampler>`, `None` where the implementation lacks the feature) and
/// samples them interleaved; a missing one shows `$na`.
macro_rules! compare {
    ($cfg:expr, $na:expr, $f:ident ( $($arg:expr),* )) => {{
        let samplers = vec![
            $f::<CtxTree>($($arg),*),
            $f::<MutexTree>($($arg),*),
            $f::<TokioTree>($($arg),*),
        ];
        interleave($cfg.sampling.samples, samplers)
            .into_iter()
            .map(|s| s.map_or_else(|| Cell::Na($na.into()), Cell::Value))
            .collect::<Vec<Cell>>()
    }};
    ($cfg:expr, $f:ident ( $($arg:expr),* )) => {
        compare!($cfg, "n/a", $f($($arg),*))
    };
}

fn run_scenario(id: &str, cfg: &Config, p: &mut Progress) -> Vec<Row> {
    let mut rows = Vec::new();
    match id {
        "derive" => {
            let label = "derive + cancel + drop, 1 thread";
            p.step(label);
            let cells = compare!(cfg, derive_cancel_drop(cfg));
            rows.push(Row::new(id, "1", label, Unit::Ns, cells));
            // tokio-util's cheapest form of the same work: one token, no
            // second token as a cancel-on-drop handle. ctxtree is sampled
            // again, interleaved with it.
            let label = "derive + cancel + drop, 1 thread, tokio-util as one token";
            p.step(label);
            let mut cells = interleave(
                cfg.sampling.samples,
                vec![derive_cancel_drop::<CtxTree>(cfg), tokio_single_token(cfg)],
            )
            .into_iter()
            .map(|s| s.map_or_else(|| Cell::Na("n/a".into()), Cell::Value))
            .collect::<Vec<_>>();
            cells.insert(1, Cell::Na("(see above)".into()));
            let mut r = Row::new(id, "tokio_single_token", label, Unit::Ns, cells);
            r.note = Some(
                "tokio-util's child_token() + cancel() + drop, without the cancel-on-drop handle the other \
                 rows give every implementation; ctxtree as above"
                    .into(),
            );
            rows.push(r);
        }
        "shared" => {
            let mut cpu_rows = Vec::new();
            for &t in &cfg.threads {
                let label = format!("shared parent, {t} thread{}, total", plural(t));
                p.step(&label);
                let cpu: Vec<CpuSide> = (0..IMPLS.len()).map(|_| CpuSide::default()).collect();
                let samplers = vec![
                    shared_parent::<CtxTree>(cfg, t, cpu[0].clone()),
                    shared_parent::<MutexTree>(cfg, t, cpu[1].clone()),
                    shared_parent::<TokioTree>(cfg, t, cpu[2].clone()),
                ];
                let cells = interleave(cfg.sampling.samples, samplers)
                    .into_iter()
                    .map(|s| s.map_or_else(|| Cell::Na("n/a".into()), Cell::Value))
                    .collect();
                rows.push(Row::new(
                    id,
                    &format!("threads={t}"),
                    &label,
                    Unit::Mops,
                    cells,
                ));
                let cells = cpu
                    .iter()
                    .map(|side| {
                        let v = side.take();
                        if v.is_empty() {
                            Cell::Na("n/a (no CPU time)".into())
                        } else {
                            Cell::Value(Stats::from_samples(v))
                        }
                    })
                    .collect();
                let mut r = Row::new(
                    id,
                    &format!("cpu,threads={t}"),
                    &format!("shared parent, {t} thread{}: CPU time per op", plural(t)),
                    Unit::Ns,
                    cells,
                );
                r.note = Some(
                    "CPU time of the benchmark threads per derive + cancel + drop, from the same samples as the \
                     throughput: it shows the cost of contention without the time-slicing of a loaded machine"
                        .into(),
                );
                cpu_rows.push(r);
            }
            rows.extend(cpu_rows);
        }
        "fanout" => {
            for &n in &cfg.fanout {
                let label = format!("cancel fan-out, {} children, per child", pow10(n));
                p.step(&label);
                let cells = compare!(cfg, fanout(cfg, n));
                rows.push(Row::new(
                    id,
                    &format!("children={n}"),
                    &label,
                    Unit::Ns,
                    cells,
                ));
            }
        }
        "churn" => rows.extend(churn_rows(id, cfg, p)),
        "storm" => {
            let label = format!(
                "a 1 ms timeout armed as {} deadlines fall due: lateness",
                pow10(crate::churn::STORM)
            );
            p.step(&label);
            let stats = interleave(
                cfg.deep_samples.min(3),
                vec![
                    crate::churn::storm_lateness::<CtxTree>(),
                    crate::churn::storm_lateness::<MutexTree>(),
                    crate::churn::storm_lateness::<TokioTree>(),
                ],
            );
            let cells = stats
                .into_iter()
                .map(|s| s.map_or_else(|| Cell::Na("n/a (no deadlines)".into()), Cell::Value))
                .collect();
            let mut r = Row::new(id, "lateness", &label, Unit::Ms, cells);
            r.note = Some(
                "from the timeout's deadline until a thread blocked on it wakes; idle, the same \
                 timeout is about 0.1 ms late"
                    .into(),
            );
            rows.push(r);
        }
        "chain" => {
            for &d in &cfg.chains {
                let label = format!("chain of {d}: build + cancel + drop");
                p.step(&label);
                let cells = compare!(cfg, chain(cfg, d));
                rows.push(Row::new(id, &format!("depth={d}"), &label, Unit::Us, cells));
            }
        }
        "deep" => {
            let label = format!("{}-deep chain", pow10(cfg.deep_depth));
            p.step(&label);
            let (times, peaks) = deep_chains(cfg);
            let mut r = Row::new(
                id,
                "time",
                &format!("{label}: build + cancel + drop"),
                Unit::Ms,
                times,
            );
            r.note = Some(
                "one fresh process per sample; ctxtree on a 256 KiB thread stack, the peers on a 1 GiB stack in case they recurse"
                    .into(),
            );
            rows.push(r);
            rows.push(Row::new(
                id,
                "peak_rss",
                &format!("{label}: peak RSS growth"),
                Unit::MiB,
                peaks,
            ));
        }
        "is_done" => {
            for &t in &cfg.threads {
                let label = format!("is_done() on a live context, {t} thread{}", plural(t));
                p.step(&label);
                let cells = compare!(cfg, is_done(cfg, t));
                let mut r = Row::new(id, &format!("threads={t}"), &label, Unit::Ns, cells);
                r.note = Some(
                    "CPU time of the calling threads per call, so time-slicing with other processes or \
                     surplus threads is not counted (tokio-util's lock may also sleep, which is not counted either)"
                        .into(),
                );
                rows.push(r);
            }
        }
        "wake" => {
            for &n in &cfg.wake_threads {
                let label = format!("wake {n} blocked thread{}", plural(n));
                p.step(&label);
                let cells = compare!(cfg, wake_threads(cfg, n));
                let mut r = Row::new(id, &format!("threads={n}"), &label, Unit::Us, cells);
                r.note = Some(
                    "tokio-util has no blocking wait: futures::executor::block_on(cancelled())"
                        .into(),
                );
                rows.push(r);
            }
        }
        "wake_async" => {
            let label = format!("wake {} async tasks", pow10(cfg.async_tasks));
            p.step(&label);
            let cells = compare!(cfg, wake_tasks(cfg));
            rows.push(Row::new(
                id,
                &format!("tasks={}", cfg.async_tasks),
                &label,
                Unit::Us,
                cells,
            ));
        }
        "timeout" => {
            let label = "with_timeout + cancel + drop, 1 thread";
            p.step(label);
            let cells = compare!(cfg, "n/a (no deadlines)", with_timeout(cfg));
            rows.push(Row::new(id, "1", label, Unit::Ns, cells));
        }
        "value" => {
            for &depth in &cfg.value_depths {
                let label = format!("value lookup through {depth} layers (missing key)");
                p.step(&label);
                let cells = compare!(cfg, "n/a (no values)", value_lookup(cfg, depth));
                rows.push(Row::new(
                    id,
                    &format!("depth={depth}"),
                    &label,
                    Unit::Ns,
                    cells,
                ));
            }
        }
        "memory" => {
            let label = "live heap per with_cancel child";
            p.step(label);
            let (bytes, allocs): (Vec<_>, Vec<_>) = vec![
                memory::<CtxTree>(),
                memory::<MutexTree>(),
                memory::<TokioTree>(),
            ]
            .into_iter()
            .unzip();
            rows.push(Row::new(
                id,
                "bytes",
                &format!("{label}: bytes"),
                Unit::Bytes,
                bytes,
            ));
            rows.push(Row::new(
                id,
                "allocs",
                &format!("{label}: allocations"),
                Unit::Allocs,
                allocs,
            ));
        }
        "rss" => {
            let label = format!("RSS after {} derive/drop cycles", pow10(cfg.rss_cycles));
            let mut after = Vec::new();
            let mut growth = Vec::new();
            p.step(&label);
            for name in IMPLS {
                match child_rss(name, cfg) {
                    Ok((a, g)) => {
                        after.push(Cell::Value(a));
                        growth.push(Cell::Value(g));
                    }
                    Err(e) => {
                        after.push(Cell::Na(e.clone()));
                        growth.push(Cell::Na(e));
                    }
                }
            }
            rows.push(Row::new(id, "after", &label, Unit::MiB, after));
            rows.push(Row::new(
                id,
                "growth",
                &format!("{label}: growth"),
                Unit::MiB,
                growth,
            ));
        }
        _ => unreachable!("unknown scenario {id}"),
    }
    rows
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `10^5` for exact powers of ten of 1000 and above, the number otherwise.
pub fn pow10(n: usize) -> String {
    let mut e = 0;
    let mut m = n;
    while m >= 10 && m % 10 == 0 {
        m /= 10;
        e += 1;
    }
    if m == 1 && e >= 3 {
        format!("10^{e}")
    } else {
        n.to_string()
    }
}

/// The churned-tree rows (`churn.rs`).
fn churn_rows(id: &str, cfg: &Config, p: &mut Progress) -> Vec<Row> {
    use crate::churn::{self, cancel_grid, derive_after_drops};
    let samples = cfg.deep_samples;
    let cells = |stats: Vec<Option<Stats>>| -> Vec<Cell> {
        stats
            .into_iter()
            .map(|s| s.map_or_else(|| Cell::Na("n/a".into()), Cell::Value))
            .collect()
    };
    let grid = format!("{} x {}", pow10(churn::MIDS), pow10(churn::LEAVES));
    let label = format!("cancel a fresh {grid} tree, per leaf");
    p.step(&label);
    let fresh = interleave(
        samples,
        vec![
            cancel_grid::<CtxTree>(false),
            cancel_grid::<MutexTree>(false),
            cancel_grid::<TokioTree>(false),
        ],
    );
    let mut rows = vec![Row::new(
        id,
        "fresh",
        &label,
        Unit::Ns,
        cells(fresh.clone()),
    )];
    let label = format!("cancel the {grid} tree after churn under it, per leaf");
    p.step(&label);
    let churned = interleave(
        samples,
        vec![
            cancel_grid::<CtxTree>(true),
            cancel_grid::<MutexTree>(true),
            cancel_grid::<TokioTree>(true),
        ],
    );
    let label_floor = format!(
        "pointer chase over {} scattered nodes, per node",
        pow10(churn::MIDS * churn::LEAVES)
    );
    p.step(&label_floor);
    let floor = interleave(samples, vec![Some(churn::pointer_chase())]).remove(0);
    let floor_median = floor.as_ref().map_or(f64::NAN, |s| s.median);
    let mut r = Row::new(id, "churned", &label, Unit::Ns, cells(churned.clone()));
    r.note = Some(churn::memory_note(&fresh, &churned, floor_median));
    rows.push(r);
    let mut floor_cells = vec![floor.map_or_else(|| Cell::Na("n/a".into()), Cell::Value)];
    floor_cells.extend((1..IMPLS.len()).map(|_| Cell::Na("(the floor)".into())));
    let mut r = Row::new(id, "floor", &label_floor, Unit::Ns, floor_cells);
    r.note = Some(
        "the memory-latency floor of the walks above: one dependent load per 64-byte node, in \
         shuffled order; the same for every implementation"
            .into(),
    );
    rows.push(r);
    for (case, pct, what) in [("p999", 99.9, "p99.9"), ("max", 100.0, "max")] {
        let label = format!(
            "single derives after {} children dropped in random order: {what}",
            pow10(churn::DROPPED)
        );
        p.step(&label);
        let stats = interleave(
            samples,
            vec![
                derive_after_drops::<CtxTree>(pct),
                derive_after_drops::<MutexTree>(pct),
                derive_after_drops::<TokioTree>(pct),
            ],
        );
        let mut r = Row::new(id, case, &label, Unit::Ns, cells(stats));
        r.note = Some(format!(
            "{} derives under the parent, each timed alone (about 20 ns of it is the clock); per \
             sample the {what}, then the median over samples",
            2 * churn::DROPPED
        ));
        rows.push(r);
    }
    rows
}

fn derive_cancel_drop<T: Tree>(cfg: &Config) -> Option<Sampler> {
    let (parent, handle) = live_parent::<T>();
    Some(per_op(cfg.sampling.target, move |n| {
        let _keep = &handle;
        for _ in 0..n {
            one_child::<T>(&parent);
        }
    }))
}

fn tokio_single_token(cfg: &Config) -> Option<Sampler> {
    let parent = tokio_util::sync::CancellationToken::new().child_token();
    Some(per_op(cfg.sampling.target, move |n| {
        for _ in 0..n {
            let child = black_box(&parent).child_token();
            child.cancel();
            drop(black_box(child));
        }
    }))
}

/// Where a sampler leaves a second metric of each sample.
type CpuSide = Rc<RefCell<Vec<f64>>>;

/// Total M ops/s; CPU ns per op goes to `cpu`.
fn shared_parent<T: Tree>(cfg: &Config, threads: usize, cpu: CpuSide) -> Option<Sampler> {
    let (parent, handle) = live_parent::<T>();
    let duration = cfg.burst;
    let _ = burst(threads, duration / 2, 64, parent.clone(), one_child::<T>); // warm-up
    Some(Box::new(move || {
        let _keep = &handle;
        let b = burst(threads, duration, 64, parent.clone(), one_child::<T>);
        assert!(!T::is_done(&parent));
        if let Some(c) = b.cpu.filter(|c| !c.is_zero()) {
            cpu.borrow_mut().push(c.as_nanos() as f64 / b.ops as f64);
        }
        b.ops as f64 / b.elapsed.as_secs_f64() / 1e6
    }))
}

fn fanout<T: Tree>(cfg: &Config, n: usize) -> Option<Sampler> {
    Some(per_op_rounds(cfg.sampling.target, move || {
        let t = ops::Fanout::<T>::new(n).cancel();
        (t, n as u64)
    }))
}

/// Microseconds per chain.
fn chain<T: Tree>(cfg: &Config, depth: usize) -> Option<Sampler> {
    let mut handles = Vec::with_capacity(depth);
    let mut ns = per_op(cfg.sampling.target, move |n| {
        for _ in 0..n {
            build_chain::<T>(depth, &mut handles);
        }
    });
    Some(Box::new(move || ns() / 1e3))
}

/// ns per call: CPU time of the calling threads / calls (wall time x
/// min(threads, cores) / calls where the OS does not tell CPU time).
fn is_done<T: Tree>(cfg: &Config, threads: usize) -> Option<Sampler> {
    let (ctx, handle) = live_parent::<T>();
    let op = |c: &T::Ctx| {
        black_box(T::is_done(c));
    };
    let busy = threads.min(machine::cores()) as f64;
    let duration = cfg.burst;
    let _ = burst(threads, duration / 2, 4096, ctx.clone(), op);
    Some(Box::new(move || {
        let _keep = &handle;
        let b = burst(threads, duration, 4096, ctx.clone(), op);
        match b.cpu {
            Some(cpu) if !cpu.is_zero() => cpu.as_nanos() as f64 / b.ops as f64,
            _ => b.elapsed.as_nanos() as f64 * busy / b.ops as f64,
        }
    }))
}

/// Microseconds from cancel() to the last of `n` blocked threads awake.
fn wake_threads<T: Tree>(_: &Config, n: usize) -> Option<Sampler> {
    Some(Box::new(move || {
        ops::wake_blocked_threads::<T>(n).as_nanos() as f64 / 1e3
    }))
}

/// Microseconds from cancel() until `cfg.async_tasks` tasks awaiting done()
/// have all finished, on a tokio current_thread runtime.
fn wake_tasks<T: Tree>(cfg: &Config) -> Option<Sampler> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("build a tokio current_thread runtime");
    let n = cfg.async_tasks;
    let sample = move || ops::wake_tasks::<T>(&rt, n).as_nanos() as f64 / 1e3;
    let _ = sample(); // warm-up
    Some(Box::new(sample))
}

fn with_timeout<T: Tree>(cfg: &Config) -> Option<Sampler> {
    let (parent, handle) = live_parent::<T>();
    ops::one_timeout::<T>(&parent)?;
    Some(per_op(cfg.sampling.target, move |n| {
        let _keep = &handle;
        for _ in 0..n {
            ops::one_timeout::<T>(&parent).expect("checked");
        }
    }))
}

/// One lookup of a key bound nowhere through `depth` value layers.
fn value_lookup<T: Tree>(cfg: &Config, depth: usize) -> Option<Sampler> {
    let values = T::value_chain(depth)?;
    assert!(!T::value_missing(&values));
    Some(per_op(cfg.sampling.target, move |n| {
        for _ in 0..n {
            black_box(T::value_missing(black_box(&values)));
        }
    }))
}

/// Live bytes and allocation calls per child, over 10^4 live children.
/// Live bytes and allocations per child, counted on a fresh thread: a
/// thread that already ran other scenarios keeps freed nodes in ctxtree's
/// node cache (docs/design.md §6), and children taking those blocks would
/// read as cheaper than they are.
fn memory<T: Tree>() -> (Cell, Cell) {
    std::thread::spawn(memory_on_this_thread::<T>)
        .join()
        .expect("the memory scenario's thread")
}

fn memory_on_this_thread<T: Tree>() -> (Cell, Cell) {
    const N: usize = 10_000;
    // Warm-up on another parent: thread-locals and lazily allocated
    // per-thread state, without leaving garbage in the measured parent.
    {
        let (other, _h) = live_parent::<T>();
        for _ in 0..100 {
            let _ = T::derive(&other);
        }
    }
    let (parent, _h) = live_parent::<T>();
    let mut children = Vec::with_capacity(N);
    Counting::start();
    for _ in 0..N {
        children.push(T::derive(&parent));
    }
    let (bytes, allocs) = Counting::read();
    Counting::stop();
    drop(children);
    (
        Cell::Value(Stats::single(bytes as f64 / N as f64)),
        Cell::Value(Stats::single(allocs as f64 / N as f64)),
    )
}

// ---------------------------------------------------------------------------
// Child processes: `ctxtree-bench __child deep|rss IMPL ARGS...`

/// The hidden subcommand's entry point. Prints one line of results.
pub fn child_main(args: &[String]) -> Result<(), String> {
    let [what, name, rest @ ..] = args else {
        return Err("usage: __child deep|rss|loop IMPL ARGS".into());
    };
    let num = |i: usize| -> Result<usize, String> {
        rest.get(i)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("__child {what}: missing or bad argument {i}"))
    };
    match (what.as_str(), name.as_str()) {
        ("deep", n) => {
            let (samples, depth) = (num(0)?, num(1)?);
            let line = match n {
                "ctxtree" => deep_child::<CtxTree>(samples, depth, 256 << 10),
                "mutex-tree" => deep_child::<MutexTree>(samples, depth, 1 << 30),
                "tokio-util" => deep_child::<TokioTree>(samples, depth, 1 << 30),
                _ => return Err(format!("unknown implementation {n}")),
            };
            println!("{line}");
        }
        ("rss", n) => {
            let cycles = num(0)?;
            let line = match n {
                "ctxtree" => rss_child::<CtxTree>(cycles),
                "mutex-tree" => rss_child::<MutexTree>(cycles),
                "tokio-util" => rss_child::<TokioTree>(cycles),
                _ => return Err(format!("unknown implementation {n}")),
            };
            println!("{line}");
        }
        ("loop", n) => {
            // For profilers (`valgrind --tool=callgrind ctxtree-bench __child
            // loop IMPL OP N`): OP's loop N times, untimed.
            let op = rest.first().map(String::as_str).unwrap_or("");
            let iters = num(1)?;
            match n {
                "ctxtree" => op_loop::<CtxTree>(op, iters)?,
                "mutex-tree" => op_loop::<MutexTree>(op, iters)?,
                "tokio-util" => op_loop::<TokioTree>(op, iters)?,
                _ => return Err(format!("unknown implementation {n}")),
            }
            println!("RESULT done");
        }
        _ => return Err(format!("unknown child job {what}")),
    }
    Ok(())
}

/// Runs one scenario's operation `iters` times: `derive` (derive + cancel +
/// drop), `fanout` (1000 children, cancel the parent), `chain1000`,
/// `is_done`, `timeout`.
fn op_loop<T: Tree>(op: &str, iters: usize) -> Result<(), String> {
    let (parent, _h) = live_parent::<T>();
    match op {
        "derive" => (0..iters).for_each(|_| one_child::<T>(&parent)),
        "fanout" => {
            for _ in 0..iters {
                ops::Fanout::<T>::new(1000).cancel();
            }
        }
        "chain1000" => {
            let mut handles = Vec::with_capacity(1000);
            (0..iters).for_each(|_| build_chain::<T>(1000, &mut handles));
        }
        "is_done" => (0..iters).for_each(|_| {
            black_box(T::is_done(black_box(&parent)));
        }),
        "timeout" => {
            for _ in 0..iters {
                ops::one_timeout::<T>(&parent).ok_or("no deadlines in this implementation")?;
            }
        }
        "shared2" => {
            // Two threads, each running `iters` derive + cancel + drop from
            // the one shared parent (the `shared` scenario at 2 threads).
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| (0..iters).for_each(|_| one_child::<T>(&parent)));
                }
            });
        }
        _ => {
            return Err(format!(
                "unknown op '{op}' (derive, fanout, chain1000, is_done, timeout, shared2)"
            ))
        }
    }
    Ok(())
}

/// `RESULT <ns> <ns> ... peak=<bytes> base=<bytes>`
fn deep_child<T: Tree>(samples: usize, depth: usize, stack: usize) -> String {
    let base = machine::rss_bytes().unwrap_or(0);
    let times = thread::Builder::new()
        .name("deep-chain".into())
        .stack_size(stack)
        .spawn(move || {
            let mut handles = Vec::with_capacity(depth);
            (0..samples)
                .map(|_| {
                    let start = Instant::now();
                    build_chain::<T>(depth, &mut handles);
                    start.elapsed().as_nanos()
                })
                .collect::<Vec<_>>()
        })
        .expect("spawn the deep-chain thread")
        .join()
        .expect("deep-chain thread panicked");
    let peak = machine::peak_rss_bytes().unwrap_or(0);
    let times: Vec<String> = times.iter().map(u128::to_string).collect();
    format!("RESULT {} peak={peak} base={base}", times.join(" "))
}

/// `RESULT before=<bytes> after=<bytes>`
fn rss_child<T: Tree>(cycles: usize) -> String {
    let (parent, _h) = live_parent::<T>();
    for _ in 0..1000 {
        let _ = T::derive(&parent);
    }
    let before = machine::rss_bytes().unwrap_or(0);
    for _ in 0..cycles {
        let (ctx, handle) = T::derive(black_box(&parent));
        drop(handle);
        drop(black_box(ctx));
    }
    let after = machine::rss_bytes().unwrap_or(0);
    format!("RESULT before={before} after={after}")
}

fn run_child(args: &[String]) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let out = Command::new(exe)
        .arg("__child")
        .args(args)
        .output()
        .map_err(|e| format!("spawn: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or("").to_string();
        return Err(format!("failed ({}) {last}", out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT ").map(str::to_string))
        .ok_or_else(|| "child printed no result".into())
}

fn field(line: &str, key: &str) -> Result<f64, String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("child result lacks {key}"))
}

const MIB: f64 = 1024.0 * 1024.0;

/// One deep chain in a fresh child process: (ms, peak RSS growth in MiB).
fn child_deep(name: &str, cfg: &Config) -> Result<(f64, f64), String> {
    let line = run_child(&[
        "deep".into(),
        name.into(),
        "1".into(),
        cfg.deep_depth.to_string(),
    ])?;
    let ns: f64 = line
        .split_whitespace()
        .find(|w| !w.contains('='))
        .and_then(|w| w.parse().ok())
        .ok_or("child reported no time")?;
    let peak = field(&line, "peak")? - field(&line, "base")?;
    Ok((ns / 1e6, peak / MIB))
}

/// `cfg.deep_samples` deep chains per implementation, each in its own
/// process (so the peak belongs to one chain), interleaved across
/// implementations. Returns (time cells, peak RSS cells).
fn deep_chains(cfg: &Config) -> (Vec<Cell>, Vec<Cell>) {
    let mut times = vec![Vec::new(); IMPLS.len()];
    let mut peaks = vec![Vec::new(); IMPLS.len()];
    let mut failed: Vec<Option<String>> = vec![None; IMPLS.len()];
    for _ in 0..cfg.deep_samples {
        for (i, name) in IMPLS.iter().enumerate() {
            if failed[i].is_some() {
                continue;
            }
            match child_deep(name, cfg) {
                Ok((t, peak)) => {
                    times[i].push(t);
                    peaks[i].push(peak);
                }
                Err(e) => failed[i] = Some(e),
            }
        }
    }
    let cells = |values: Vec<Vec<f64>>| -> Vec<Cell> {
        values
            .into_iter()
            .zip(&failed)
            .map(|(v, f)| match f {
                Some(e) => Cell::Na(e.clone()),
                None => Cell::Value(Stats::from_samples(v)),
            })
            .collect()
    };
    (cells(times), cells(peaks))
}

fn child_rss(name: &str, cfg: &Config) -> Result<(Stats, Stats), String> {
    let line = run_child(&["rss".into(), name.into(), cfg.rss_cycles.to_string()])?;
    let (before, after) = (field(&line, "before")?, field(&line, "after")?);
    Ok((
        Stats::single(after / MIB),
        Stats::single((after - before) / MIB),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_jobs_check_their_arguments() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(child_main(&args(&["loop", "ctxtree", "derive", "100"])).is_ok());
        assert!(child_main(&args(&["loop", "mutex-tree", "fanout", "2"])).is_ok());
        assert!(child_main(&args(&["loop", "tokio-util", "timeout", "1"])).is_err());
        assert!(child_main(&args(&["loop", "nope", "derive", "1"])).is_err());
        assert!(child_main(&args(&["loop", "ctxtree", "nope", "1"])).is_err());
        assert!(child_main(&args(&["rss", "ctxtree"])).is_err());
        assert!(child_main(&args(&["what"])).is_err());
    }

    #[test]
    fn powers_of_ten() {
        assert_eq!(pow10(1_000_000), "10^6");
        assert_eq!(pow10(100_000), "10^5");
        assert_eq!(pow10(1000), "10^3");
        assert_eq!(pow10(100), "100");
        assert_eq!(pow10(64), "64");
    }

    #[test]
    fn steps_match_rows() {
        let mut cfg = Config::quick(vec![1, 2]);
        cfg.sampling.samples = 1;
        cfg.sampling.target = Duration::from_micros(50);
        cfg.burst = Duration::from_millis(1);
        cfg.only = vec![
            "derive".into(),
            "fanout".into(),
            "memory".into(),
            "timeout".into(),
            "shared".into(),
        ];
        cfg.fanout = vec![10];
        let mut p = Progress::hidden(cfg.steps());
        let rows = run_all(&cfg, &mut p);
        assert_eq!(p.done(), cfg.steps());
        assert_eq!(rows.len(), 10);
        let cpu = rows.iter().find(|r| r.case == "cpu,threads=2").unwrap();
        assert!(cpu.cells.iter().all(|c| c.median().is_some()));
        assert!(rows.iter().all(|r| r.cells.len() == IMPLS.len()));
        let timeout = rows.iter().find(|r| r.scenario == "timeout").unwrap();
        assert_eq!(timeout.cells[2], Cell::Na("n/a (no deadlines)".into()));
        assert!(timeout.cells[0].median().is_some() && timeout.cells[1].median().is_some());
    }

    #[test]
    fn memory_counts_one_node_per_child() {
        let (bytes, allocs) = memory::<MutexTree>();
        let (Cell::Value(b), Cell::Value(a)) = (bytes, allocs) else {
            panic!("memory gave n/a");
        };
        assert!(b.median > 32.0 && b.median < 1024.0, "{}", b.median);
        assert!(a.median >= 1.0 && a.median < 1.1, "{}", a.median);
    }
}

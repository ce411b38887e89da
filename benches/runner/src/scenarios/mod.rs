//! The scenario matrix. Every scenario is generic over [`Tree`](crate::tree::Tree) and runs the
//! same code for each implementation; a few run in a fresh child process (a
//! re-exec of this binary) so that peak and resident memory are not polluted
//! by the other implementations.

mod child;
mod compose;
mod features;
mod samplers;
mod server;
mod tails;
mod wake;

use std::time::Duration;

use crate::measure::{interleave, Sampling, Stats};
use crate::progress::Progress;
use crate::report::{Cell, Row, Unit, IMPLS};
use crate::tree::{CtxTree, MutexTree, TokioTree};

pub use child::child_main;
use child::{child_rss, deep_chains};
pub use features::probe_main;
use samplers::*; // one sampler per scenario, named after it

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
        "10^6-deep chain (10^5 with --quick): build + cancel + drop (ms) and peak RSS (child \
         process)",
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
        "merge",
        "merge two live contexts, cancel the second, drop (ns/op; the peers as users hand-write it)",
    ),
    (
        "group",
        "group of 10^3 tokio tasks: spawn, first error cancels the rest, wait (us)",
    ),
    (
        "server",
        "fan-out HTTP server on 127.0.0.1, 10^3 subtasks per request, closed-loop load: \
         requests/s, p50/p99/p99.9 latency; cancel latency from a disconnect and a deadline",
    ),
    (
        "churn",
        "cancel a 10^3 x 10^3 tree fresh and after 10^6 derive/drop churn (ns per leaf, with the \
         pointer-chase floor); single derives after 10^5 random drops (p99.9, max)",
    ),
    (
        "storm",
        "lateness of a 1 ms timeout armed as 10^6 deadlines (10^5 with --quick) fall due at once, \
         and of one armed before them, due 5 ms after (ms)",
    ),
    (
        "features",
        "ctxtree's derive, is_done and with_timeout without and with its stats + tracing \
         features (a second build, run as a child; not in --quick unless named)",
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
    /// Deadlines falling due at once in the storm row.
    pub storm: usize,
    pub rss_cycles: usize,
    pub async_tasks: usize,
    pub fanout: Vec<usize>,
    pub chains: Vec<usize>,
    pub wake_threads: Vec<usize>,
    pub value_depths: Vec<usize>,
    pub group_tasks: usize,
    pub server_subtasks: usize,
    pub server_connections: usize,
    /// Load time of one server sample.
    pub server_duration: Duration,
    pub server_samples: usize,
    /// A quick run (`--quick`).
    pub quick: bool,
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
            storm: crate::churn::STORM,
            rss_cycles: 1_000_000,
            async_tasks: 10_000,
            fanout: vec![1_000, 100_000],
            chains: vec![1, 10, 100, 1_000],
            wake_threads: vec![1, 8, 64],
            value_depths: vec![10, 100],
            group_tasks: 1_000,
            server_subtasks: 1_000,
            server_connections: 8,
            server_duration: Duration::from_millis(500),
            server_samples: 5,
            quick: false,
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
            // A tenth of the full sizes: these two rows were most of the
            // quick run (a 10^6 storm alone took about 15 s on 2 cores).
            // Their cases and labels say so (`sized_case`).
            deep_depth: 100_000,
            storm: crate::churn::STORM / 10,
            server_duration: Duration::from_millis(100),
            server_samples: 3,
            quick: true,
            ..Config::full(threads)
        }
    }

    pub fn runs(&self, scenario: &str) -> bool {
        if self.only.is_empty() {
            // The features rows build the runner a second time: not in a
            // quick run unless asked for.
            return !(self.quick && scenario == "features");
        }
        self.only.iter().any(|s| s == scenario)
    }

    /// Number of progress steps (one per row).
    pub fn steps(&self) -> usize {
        let t = self.threads.len();
        let rows = |id: &str| -> usize {
            match id {
                "derive" => 2,
                "timeout" | "wake_async" | "rss" | "merge" => 1,
                "group" => 1,  // two rows from one sampling
                "server" => 1, // seven rows from one sampling
                "shared" | "is_done" => t,
                "fanout" => self.fanout.len(),
                "chain" => self.chains.len(),
                "deep" => 1,
                "wake" => self.wake_threads.len(),
                "memory" => 1,
                "churn" => 5,
                "storm" => 1,
                "features" => 2,
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
        "churn" => rows.extend(tails::churn_rows(id, cfg, p)),
        "merge" => rows.extend(compose::merge_rows(id, cfg, p)),
        "group" => rows.extend(compose::group_rows(id, cfg, p)),
        "server" => rows.extend(server::server_rows(id, cfg, p)),
        "storm" => rows.extend(tails::storm_rows(id, cfg, p)),
        "features" => rows.extend(features::feature_rows(id, cfg, p)),
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
            let (d, full) = (cfg.deep_depth, 1_000_000);
            let mut r = Row::new(
                id,
                &sized_case("time", "depth", d, full),
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
                &sized_case("peak_rss", "depth", d, full),
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
        "wake" => rows.extend(wake::wake_rows(id, cfg, p)),
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

/// A row's case id: `case` at the full run's size, `case,what=n` at any
/// other (`--quick`'s smaller sizes), so that a result of another size is
/// never read as the full one (the targets look rows up by case).
fn sized_case(case: &str, what: &str, n: usize, full: usize) -> String {
    if n == full {
        case.to_string()
    } else {
        format!("{case},{what}={n}")
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_of_ten() {
        assert_eq!(pow10(1_000_000), "10^6");
        assert_eq!(pow10(100_000), "10^5");
        assert_eq!(pow10(1000), "10^3");
        assert_eq!(pow10(100), "100");
        assert_eq!(pow10(64), "64");
    }

    #[test]
    fn quick_sizes_are_named_in_the_case() {
        let (full, quick) = (Config::full(vec![1]), Config::quick(vec![1]));
        assert_eq!((full.deep_depth, full.storm), (1_000_000, 1_000_000));
        assert!(quick.deep_depth < full.deep_depth && quick.storm < full.storm);
        assert_eq!(sized_case("time", "depth", 1_000_000, 1_000_000), "time");
        assert_eq!(
            sized_case("time", "depth", quick.deep_depth, full.deep_depth),
            "time,depth=100000"
        );
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
            "merge".into(),
            "group".into(),
            "server".into(),
        ];
        cfg.fanout = vec![10];
        cfg.group_tasks = 10;
        cfg.server_subtasks = 10;
        cfg.server_duration = Duration::from_millis(20);
        cfg.server_samples = 2;
        let mut p = Progress::hidden(cfg.steps());
        let rows = run_all(&cfg, &mut p);
        assert_eq!(p.done(), cfg.steps());
        assert_eq!(rows.len(), 20);
        let cpu = rows.iter().find(|r| r.case == "cpu,threads=2").unwrap();
        assert!(cpu.cells.iter().all(|c| c.median().is_some()));
        assert!(rows.iter().all(|r| r.cells.len() == IMPLS.len()));
        let timeout = rows.iter().find(|r| r.scenario == "timeout").unwrap();
        assert_eq!(timeout.cells[2], Cell::Na("n/a (no deadlines)".into()));
        assert!(timeout.cells[0].median().is_some() && timeout.cells[1].median().is_some());
        for id in ["merge", "group", "server"] {
            let row = rows.iter().find(|r| r.scenario == id).unwrap();
            assert!(row.cells.iter().all(|c| c.median().is_some()), "{id}");
        }
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

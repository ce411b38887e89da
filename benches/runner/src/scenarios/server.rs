//! The server rows (`server.rs`): the fan-out server under closed-loop load
//! for each tree; requests/s and latency percentiles.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::measure::Stats;
use crate::ops::live_parent;
use crate::progress::Progress;
use crate::report::{Cell, Row, Unit, IMPLS};
use crate::server::{self, Load, Probe};
use crate::tree::{CtxTree, MutexTree, TokioTree, Tree};

use super::{pow10, Config};

/// One tree's server, running on its own runtime until dropped.
struct Running {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    probe: Arc<Probe>,
    /// The server's root context and its handle, kept live.
    _root: Box<dyn Any>,
}

impl Running {
    fn start<T: Tree>(cfg: &Config) -> Running {
        // Server and load generator share 2 workers: the machine's cores
        // are the budget, and every tree pays the same client.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_io()
            .build()
            .expect("build a tokio multi-thread runtime");
        let root = live_parent::<T>();
        let (listener, addr) = rt.block_on(server::listen()).expect("bind 127.0.0.1:0");
        let probe = Arc::new(Probe::default());
        rt.spawn(server::serve::<T>(
            listener,
            root.0.clone(),
            cfg.server_subtasks,
            Arc::clone(&probe),
        ));
        let running = Running {
            rt,
            addr,
            probe,
            _root: Box::new(root),
        };
        let _ = running.load(cfg, cfg.server_duration / 2, 0.0); // warm-up
        running
    }

    /// One load run, and the µs per request its server spent in context
    /// operations (`clock_ns`: one timing's own cost, taken off).
    fn load(&self, cfg: &Config, duration: Duration, clock_ns: f64) -> (Load, f64) {
        let _ = self.probe.take_spent(clock_ns); // what came before
        let run = self
            .rt
            .block_on(server::load(
                self.addr,
                cfg.server_connections,
                duration,
                cfg.server_subtasks,
            ))
            .expect("the load generator failed");
        assert_eq!(run.wrong, 0, "a response did not report every subtask");
        assert!(!run.latencies.is_empty(), "no request completed");
        let spent = self.probe.take_spent(clock_ns);
        (run, spent)
    }

    /// µs from a client disconnect, and from the 50 ms deadline (`None`
    /// without deadlines), to the last subtask seeing the cancel.
    fn cancel_latencies(&self, cfg: &Config) -> (f64, Option<f64>) {
        let n = cfg.server_subtasks;
        let gone = self
            .rt
            .block_on(server::disconnect_latency(self.addr, &self.probe, n))
            .expect("the disconnect run failed");
        let late = self
            .rt
            .block_on(server::deadline_lateness(self.addr, &self.probe, n))
            .expect("the deadline run failed");
        let us = |d: Duration| d.as_nanos() as f64 / 1e3;
        (us(gone), late.map(us))
    }
}

/// The cost of timing one stretch: two clock reads, in ns.
fn clock_ns() -> f64 {
    const N: u32 = 100_000;
    let start = std::time::Instant::now();
    for _ in 0..N {
        let t = std::time::Instant::now();
        std::hint::black_box(t.elapsed());
    }
    start.elapsed().as_nanos() as f64 / f64::from(N)
}

/// Requests/s; in µs: context operations per request, p50, p99, p99.9,
/// the cancel latencies (the deadline's is NaN without deadlines).
const METRICS: usize = 7;

fn measure((run, spent): (Load, f64), (gone, late): (f64, Option<f64>)) -> [f64; METRICS] {
    [
        run.requests_per_second(),
        spent,
        run.percentile_us(50.0),
        run.percentile_us(99.0),
        run.percentile_us(99.9),
        gone,
        late.unwrap_or(f64::NAN),
    ]
}

pub(super) fn server_rows(id: &str, cfg: &Config, p: &mut Progress) -> Vec<Row> {
    let n = cfg.server_subtasks;
    let label = format!(
        "fan-out server, {} subtasks per request, {} connections",
        pow10(n),
        cfg.server_connections
    );
    p.step(&label);
    let servers = [
        Running::start::<CtxTree>(cfg),
        Running::start::<MutexTree>(cfg),
        Running::start::<TokioTree>(cfg),
    ];
    // values[metric][implementation]: the samples, interleaved.
    let clock = clock_ns();
    let mut values = vec![vec![Vec::new(); IMPLS.len()]; METRICS];
    for s in 0..cfg.server_samples {
        for j in 0..servers.len() {
            let i = (s + j) % servers.len();
            let load = servers[i].load(cfg, cfg.server_duration, clock);
            let m = measure(load, servers[i].cancel_latencies(cfg));
            for (k, v) in m.into_iter().enumerate() {
                values[k][i].push(v);
            }
        }
    }
    drop(servers);
    let cases = [
        ("rps", "requests/s", Unit::Rps),
        (
            "context_time",
            "time in context operations per request",
            Unit::Us,
        ),
        ("p50", "p50 latency", Unit::Us),
        ("p99", "p99 latency", Unit::Us),
        ("p999", "p99.9 latency", Unit::Us),
        (
            "disconnect",
            "cancel latency from a client disconnect",
            Unit::Us,
        ),
        ("deadline", "cancel latency from a 50 ms deadline", Unit::Us),
    ];
    let mut rows = Vec::new();
    for ((case, what, unit), samples) in cases.into_iter().zip(values) {
        let cells = samples
            .into_iter()
            .map(|v| {
                if v.iter().any(|x| x.is_nan()) {
                    Cell::Na("n/a (no deadlines)".into())
                } else {
                    Cell::Value(Stats::from_samples(v))
                }
            })
            .collect();
        rows.push(Row::new(id, case, &format!("{label}: {what}"), unit, cells));
    }
    rows[0].note = Some(format!(
        "hyper HTTP/1 on 127.0.0.1, server and a closed-loop load generator ({} keep-alive \
         connections, one request in flight on each) on one 2-worker tokio runtime per tree; \
         each request derives a request context and one child per subtask, spawns the subtasks \
         as tokio tasks (each checks its context, does a trivial step) and joins them; {} ms \
         per sample. Context operations are a small part of a request: tokio's spawn and join \
         of each subtask, HTTP and the client cost more, so the ratios here are much closer to \
         1 than in the micro rows. Percentiles are per sample (a few hundred requests at full \
         size, so p99.9 is near the sample's max), then the median over samples",
        cfg.server_connections,
        cfg.server_duration.as_millis()
    ));
    let note = format!(
        "one request of {} subtasks that wait for their context, per sample: from the moment \
         the client drops its connection (all subtasks waiting) to the last subtask seeing the \
         cancel (hyper notices the closed socket and drops the handler, whose request context \
         ends); and from the request context's 50 ms deadline to the last subtask seeing it",
        pow10(n)
    );
    rows[5].note = Some(note);
    rows[1].note = Some(format!(
        "measured in the server: each stretch of context operations with no .await inside \
         (the request's {} derives; each subtask's check and end; the request's end) is timed \
         by two clock reads on the worker that runs it, less {clock:.0} ns per stretch, the \
         clock's own cost measured in this run; wall time inside a stretch, which is CPU time \
         unless the OS preempts the worker there",
        pow10(n)
    ));
    rows
}

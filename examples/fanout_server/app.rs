//! The fan-out server behind `examples/fanout_server` (also driven by
//! `tests/fanout_server.rs`): an axum app whose handler fans each request
//! out to thousands of tokio tasks, each under a context derived from the
//! request's, and counts what they do.
//!
//! Contexts: `root` (cancel it to shut down) → one request context per
//! request, made by `ctxtree::tower::ContextLayer` (deadline from
//! `grpc-timeout` or the default; canceled when the client goes away or the
//! handler returns) → one child per subtask. A subtask ends when its work is
//! done or its context is (`ctx.run`), whichever is first; nothing else is
//! wired for cancellation: dropping the handler future does not abort the
//! subtasks, they see the canceled context.
//!
//! Routes: `GET /fanout?tasks=N&work_ms=M` (N subtasks sleeping M ms each;
//! 200 when all finished, 504 on the deadline, 503 on shutdown or any other
//! cancel), `GET /stats` (the counters, as JSON) and `GET /debug/contexts`
//! (the live context tree below the root, `Context::tree`, as text) and
//! `GET /metrics` (ctxtree's counters, with its `stats` feature).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Router};
use ctxtree::tokio::TaskGroup;
use ctxtree::tower::ContextLayer;
use ctxtree::{Context, Error};
use serde_free::FanoutParams;

/// Counters over the server's life. Latencies are in microseconds.
#[derive(Debug, Default)]
pub struct Stats {
    /// Subtasks started.
    pub started: AtomicUsize,
    /// Subtasks whose work completed.
    pub finished: AtomicUsize,
    /// Subtasks that ended because their context did.
    pub canceled: AtomicUsize,
    /// Requests whose handler is running.
    pub requests_in_flight: AtomicUsize,
    /// Worst time from a request context's cancel to the last of its
    /// subtasks observing it.
    pub max_cancel_latency_us: AtomicU64,
    /// Sum and count of those per-request latencies.
    pub cancel_latency_sum_us: AtomicU64,
    /// Requests whose subtasks were canceled.
    pub canceled_requests: AtomicU64,
}

impl Stats {
    /// Subtasks started and not yet ended.
    pub fn subtasks_running(&self) -> usize {
        let ended = self.finished.load(Ordering::SeqCst) + self.canceled.load(Ordering::SeqCst);
        self.started.load(Ordering::SeqCst).saturating_sub(ended)
    }

    fn to_json(&self) -> String {
        let requests = self.canceled_requests.load(Ordering::SeqCst);
        let mean = self.cancel_latency_sum_us.load(Ordering::SeqCst) / requests.max(1);
        let mut out = String::new();
        let _ = write!(
            out,
            "{{\"started\":{},\"finished\":{},\"canceled\":{},\"running\":{},\
             \"requests_in_flight\":{},\"canceled_requests\":{},\
             \"max_cancel_latency_us\":{},\"mean_cancel_latency_us\":{}}}",
            self.started.load(Ordering::SeqCst),
            self.finished.load(Ordering::SeqCst),
            self.canceled.load(Ordering::SeqCst),
            self.subtasks_running(),
            self.requests_in_flight.load(Ordering::SeqCst),
            requests,
            self.max_cancel_latency_us.load(Ordering::SeqCst),
            mean,
        );
        out
    }
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Deadline for requests without a `grpc-timeout` header.
    pub default_timeout: Duration,
    /// Upper bound on `tasks` per request.
    pub max_tasks: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            default_timeout: Duration::from_secs(30),
            max_tasks: 100_000,
        }
    }
}

#[derive(Clone)]
struct AppState {
    stats: Arc<Stats>,
    config: Config,
    root: Context,
}

/// The app: routes plus the context layer rooted at `root`.
pub fn router(root: Context, stats: Arc<Stats>, config: Config) -> Router {
    // The handler answers for itself once its context ends (it reports how
    // many subtasks finished), so it gets a grace before the layer would
    // answer 504/503 in its place.
    let layer = ContextLayer::new(root.clone())
        .default_timeout(config.default_timeout)
        .handler_grace(Some(Duration::from_secs(1)));
    Router::new()
        .route("/fanout", get(fanout))
        .route("/stats", get(stats_json))
        .route("/debug/contexts", get(contexts))
        .route("/metrics", get(metrics))
        .with_state(AppState {
            stats,
            config,
            root,
        })
        .layer(layer)
}

/// Serves `router` on `listener` until `root` is canceled, then drains:
/// in-flight requests see their contexts canceled, answer, and the server
/// returns once every connection is closed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    root: Context,
    stats: Arc<Stats>,
    config: Config,
) -> std::io::Result<()> {
    let app = router(root.clone(), stats, config);
    let shutdown = root.done_owned();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
        })
        .await
}

/// The live tree below the root: every in-flight request and its subtasks
/// (bounded by `TreeLimits`' defaults), this request's own context among
/// them.
async fn contexts(State(state): State<AppState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; charset=utf-8")],
        state.root.tree().to_string(),
    )
}

/// ctxtree's process-wide counters (`ctxtree::stats`, feature `stats`),
/// one `name value` line each; 404 without the feature.
async fn metrics() -> impl IntoResponse {
    #[cfg(feature = "stats")]
    {
        let s = ctxtree::stats::snapshot();
        let body = format!(
            "ctxtree_contexts_live {}\nctxtree_contexts_derived_total {}\n\
             ctxtree_contexts_canceled_total {}\nctxtree_contexts_deadline_exceeded_total {}\n\
             ctxtree_timers_armed_total {}\nctxtree_timers_fired_total {}\n\
             ctxtree_callbacks_run_total {}\nctxtree_waiters_woken_total {}\n",
            s.live(),
            s.derived,
            s.canceled,
            s.deadline_exceeded,
            s.timers_armed,
            s.timers_fired,
            s.callbacks_run,
            s.waiters_woken,
        );
        (StatusCode::OK, body)
    }
    #[cfg(not(feature = "stats"))]
    (
        StatusCode::NOT_FOUND,
        String::from("built without ctxtree's `stats` feature\n"),
    )
}

async fn stats_json(State(state): State<AppState>) -> impl IntoResponse {
    (
        [("content-type", "application/json")],
        state.stats.to_json(),
    )
}

/// Query parameters of `/fanout`, parsed by hand (no serde in this crate).
mod serde_free {
    use std::collections::HashMap;

    pub struct FanoutParams {
        pub tasks: usize,
        pub work: std::time::Duration,
    }

    impl FanoutParams {
        pub fn parse(query: &HashMap<String, String>) -> Result<FanoutParams, String> {
            let number = |key: &str, default: u64| -> Result<u64, String> {
                match query.get(key) {
                    None => Ok(default),
                    Some(text) => text
                        .parse()
                        .map_err(|_| format!("{key} must be a non-negative integer")),
                }
            };
            Ok(FanoutParams {
                tasks: number("tasks", 1000)? as usize,
                work: std::time::Duration::from_millis(number("work_ms", 10)?),
            })
        }
    }
}

/// Per-request bookkeeping for the cancel latency: the instant the request
/// context was canceled and the latest instant a subtask observed it; the
/// last of the subtasks and the stamp to arrive records the difference.
struct Probe {
    start: Instant,
    canceled_at_ns: OnceLock<u64>,
    last_observed_ns: AtomicU64,
    observers: AtomicUsize,
    /// Subtasks plus the stamp, counted down.
    remaining: AtomicUsize,
}

impl Probe {
    fn new(subtasks: usize) -> Probe {
        Probe {
            start: Instant::now(),
            canceled_at_ns: OnceLock::new(),
            last_observed_ns: AtomicU64::new(0),
            observers: AtomicUsize::new(0),
            remaining: AtomicUsize::new(subtasks + 1),
        }
    }

    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn stamp(&self, at_ns: u64, stats: &Stats) {
        let _ = self.canceled_at_ns.set(at_ns);
        self.count_down(stats);
    }

    fn subtask_ended(&self, observed_cancel: bool, stats: &Stats) {
        if observed_cancel {
            self.observers.fetch_add(1, Ordering::SeqCst);
            self.last_observed_ns
                .fetch_max(self.now_ns(), Ordering::SeqCst);
        }
        self.count_down(stats);
    }

    fn count_down(&self, stats: &Stats) {
        if self.remaining.fetch_sub(1, Ordering::SeqCst) != 1 {
            return;
        }
        let (Some(&canceled), true) = (
            self.canceled_at_ns.get(),
            self.observers.load(Ordering::SeqCst) > 0,
        ) else {
            return;
        };
        let latency_us = self
            .last_observed_ns
            .load(Ordering::SeqCst)
            .saturating_sub(canceled)
            / 1_000;
        stats
            .max_cancel_latency_us
            .fetch_max(latency_us, Ordering::SeqCst);
        stats
            .cancel_latency_sum_us
            .fetch_add(latency_us, Ordering::SeqCst);
        stats.canceled_requests.fetch_add(1, Ordering::SeqCst);
    }
}

async fn fanout(
    State(state): State<AppState>,
    Extension(ctx): Extension<Context>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> impl IntoResponse {
    let params = match FanoutParams::parse(&query) {
        Ok(params) if params.tasks <= state.config.max_tasks => params,
        Ok(_) => return (StatusCode::BAD_REQUEST, "too many tasks\n".to_string()),
        Err(message) => return (StatusCode::BAD_REQUEST, message + "\n"),
    };
    let stats = state.stats.clone();
    stats.requests_in_flight.fetch_add(1, Ordering::SeqCst);
    let _in_flight = InFlight(stats.clone());

    let probe = Arc::new(Probe::new(params.tasks));
    {
        // The cancel instant: the deadline itself for a timeout, else when
        // the cancel ran its functions (right after its walk).
        let (probe, stats, ctx_for_stamp) = (probe.clone(), stats.clone(), ctx.clone());
        drop(ctx.after_func(move || {
            let at = match (ctx_for_stamp.err(), ctx_for_stamp.deadline()) {
                (Some(Error::DeadlineExceeded), Some(deadline)) => {
                    deadline.saturating_duration_since(probe.start).as_nanos() as u64
                }
                _ => probe.now_ns(),
            };
            probe.stamp(at, &stats);
        }));
    }

    // The subtasks run as a task group under the request's context: each
    // gets a child of it; `wait` returns once all have ended. If the client
    // goes away the handler future is dropped, and with it the group, which
    // cancels the subtasks and gives them a moment to see it before it
    // aborts what is left.
    let mut group = TaskGroup::new(&ctx).drop_grace(Duration::from_millis(100));
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..params.tasks {
        let (stats, probe, done) = (stats.clone(), probe.clone(), done.clone());
        let work = params.work;
        group
            .spawn(move |sub| async move {
                if subtask(sub, work, stats, probe).await {
                    done.fetch_add(1, Ordering::SeqCst);
                }
                Ok::<(), Error>(())
            })
            .await;
    }
    let _ = group.wait().await;
    let finished = done.load(Ordering::SeqCst);
    let canceled = params.tasks - finished;
    let status = match ctx.err() {
        _ if canceled == 0 => StatusCode::OK,
        Some(Error::DeadlineExceeded) => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let err = ctx.err().map(|e| e.to_string()).unwrap_or_default();
    // A cause of our own making (no quotes or backslashes to escape).
    let cause = ctx.cause().map(|c| c.to_string()).unwrap_or_default();
    let body = format!(
        "{{\"tasks\":{},\"finished\":{finished},\"canceled\":{canceled},\"err\":\"{err}\",\"cause\":\"{cause}\"}}\n",
        params.tasks
    );
    (status, body)
}

/// One subtask: `work` unless its context ends first. Returns whether the
/// work finished.
async fn subtask(ctx: Context, work: Duration, stats: Arc<Stats>, probe: Arc<Probe>) -> bool {
    stats.started.fetch_add(1, Ordering::SeqCst);
    let finished = ctx.run(tokio::time::sleep(work)).await.is_ok();
    if finished {
        stats.finished.fetch_add(1, Ordering::SeqCst);
    } else {
        stats.canceled.fetch_add(1, Ordering::SeqCst);
    }
    probe.subtask_ended(!finished, &stats);
    finished
}

/// Decrements `requests_in_flight` when the handler returns or is dropped.
struct InFlight(Arc<Stats>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.requests_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

//! End-to-end: the fan-out server of `examples/fanout_server` on a real
//! loopback socket, driven by a real HTTP/1 client (hyper), checking that
//! cancellation crosses the process boundary:
//! - a client that disconnects mid-request makes every subtask observe
//!   cancellation within 100 ms;
//! - `grpc-timeout: 50m` cancels every subtask at ~50 ms;
//! - a graceful shutdown cancels in-flight work, loses no completed
//!   response, and the server drains.
//!
//! The tests in this file run one at a time (`serial()`): each starts
//! thousands of tasks, and the latency bounds are about this library, not
//! about how two servers share two cores.

#[path = "../examples/fanout_server/app.rs"]
#[allow(dead_code)]
mod app;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes_free::Body;
use ctxtree::{CancelHandle, Cause, Context};
use http_body_util::BodyExt;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

const SUBTASKS: usize = 2_000;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

mod bytes_free {
    /// An empty request body (hyper wants a `Body` type).
    pub type Body = http_body_util::Empty<hyper::body::Bytes>;
}

struct Server {
    addr: SocketAddr,
    stats: Arc<app::Stats>,
    shutdown: CancelHandle,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (root, shutdown) = Context::background().with_cancel();
    let stats = Arc::new(app::Stats::default());
    let served = tokio::spawn(app::serve(
        listener,
        root,
        stats.clone(),
        app::Config::default(),
    ));
    Server {
        addr,
        stats,
        shutdown,
        served,
    }
}

type ClientError = Box<dyn std::error::Error + Send + Sync>;

/// One GET on a fresh connection, driven entirely inside this future: drop
/// (or abort) it and the socket closes, as a client that goes away.
async fn get(
    addr: SocketAddr,
    path: &str,
    grpc_timeout: Option<&str>,
) -> Result<(StatusCode, String), ClientError> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let mut request = Request::get(path).header("host", addr.to_string());
    if let Some(timeout) = grpc_timeout {
        request = request.header("grpc-timeout", timeout);
    }
    let request = request.body(Body::new())?;
    let exchange = async {
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, ClientError>((status, String::from_utf8(body.to_vec())?))
    };
    tokio::pin!(conn, exchange);
    tokio::select! {
        result = &mut exchange => result,
        // The connection may end (cleanly, e.g. `connection: close`) with
        // the whole response already handed to `exchange`: finish reading.
        ended = &mut conn => match ended {
            Ok(()) => exchange.await,
            Err(e) => Err(format!("connection failed before the response: {e}").into()),
        },
    }
}

/// Polls `cond` every millisecond until it holds; panics after `limit`.
async fn until(limit: Duration, what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn field(body: &str, key: &str) -> usize {
    let at = body
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("{key} in {body}"));
    body[at + key.len() + 3..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_client_that_disconnects_cancels_every_subtask_within_100_ms() {
    let _serial = serial();
    runtime().block_on(async {
        let server = start().await;
        let path = format!("/fanout?tasks={SUBTASKS}&work_ms=60000");
        let client = tokio::spawn(async move { get(server.addr, &path, None).await });
        let stats = server.stats.clone();
        until(Duration::from_secs(20), "all subtasks started", || {
            stats.started.load(SeqCst) == SUBTASKS
        })
        .await;
        assert_eq!(stats.canceled.load(SeqCst), 0);

        let disconnected = Instant::now();
        client.abort(); // drops the connection: the socket closes
        until(Duration::from_secs(5), "all subtasks canceled", || {
            stats.canceled.load(SeqCst) == SUBTASKS
        })
        .await;
        let latency = disconnected.elapsed();
        eprintln!(
            "disconnect -> {SUBTASKS} subtasks canceled in {latency:?} (server-side max {} us)",
            stats.max_cancel_latency_us.load(SeqCst)
        );
        assert!(
            latency < Duration::from_millis(100),
            "subtasks saw the disconnect after {latency:?}"
        );
        assert_eq!(stats.finished.load(SeqCst), 0);
        until(Duration::from_secs(5), "handler gone", || {
            stats.requests_in_flight.load(SeqCst) == 0
        })
        .await;
        drop(server.shutdown);
        server.served.await.unwrap().unwrap();
    });
}

#[test]
fn grpc_timeout_50m_cancels_every_subtask_at_about_50_ms() {
    let _serial = serial();
    runtime().block_on(async {
        let server = start().await;
        let path = format!("/fanout?tasks={SUBTASKS}&work_ms=60000");
        let sent = Instant::now();
        let (status, body) = get(server.addr, &path, Some("50m")).await.unwrap();
        let elapsed = sent.elapsed();
        eprintln!(
            "grpc-timeout 50m: response after {elapsed:?}, server-side cancel latency max {} us: {body}",
            server.stats.max_cancel_latency_us.load(SeqCst)
        );
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(field(&body, "canceled"), SUBTASKS);
        assert_eq!(field(&body, "finished"), 0);
        assert!(body.contains("deadline exceeded"), "{body}");
        assert!(elapsed >= Duration::from_millis(50), "ended early: {elapsed:?}");
        assert!(
            elapsed < Duration::from_millis(300),
            "every subtask canceled only after {elapsed:?}"
        );
        // Server side: from the deadline to the last subtask seeing it.
        assert!(server.stats.max_cancel_latency_us.load(SeqCst) < 100_000);

        // A malformed header is refused before any subtask starts.
        let before = server.stats.started.load(SeqCst);
        let (status, body) = get(server.addr, "/fanout?tasks=10", Some("5 seconds"))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.is_empty(), "{body}");
        assert_eq!(server.stats.started.load(SeqCst), before);
        drop(server.shutdown);
        server.served.await.unwrap().unwrap();
    });
}

#[test]
fn graceful_shutdown_cancels_in_flight_work_and_loses_no_completed_response() {
    let _serial = serial();
    runtime().block_on(async {
        let server = start().await;
        let stats = server.stats.clone();
        // Long requests that can only end by the shutdown, and short ones
        // (0 to 57 ms of work) of which some finish before it and some race it.
        let long: Vec<_> = (0..4)
            .map(|_| {
                let path = format!("/fanout?tasks={}&work_ms=60000", SUBTASKS / 4);
                tokio::spawn(async move { get(server.addr, &path, None).await })
            })
            .collect();
        let short: Vec<_> = (0..20)
            .map(|i| {
                let path = format!("/fanout?tasks=50&work_ms={}", i * 3);
                tokio::spawn(async move { get(server.addr, &path, None).await })
            })
            .collect();
        // Every handler has started all its subtasks (4 x 500 + 20 x 50), so
        // every connection carries a request the server is answering.
        until(Duration::from_secs(20), "every request in flight", || {
            stats.started.load(SeqCst) >= SUBTASKS + 20 * 50
        })
        .await;
        tokio::time::sleep(Duration::from_millis(25)).await;
        server
            .shutdown
            .cancel_with_cause(Cause::msg("server shutting down"));

        let (mut finished, mut canceled, mut ok, mut unavailable) = (0, 0, 0, 0);
        for (i, request) in long.into_iter().chain(short).enumerate() {
            let (status, body) = request
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("request {i} lost its response: {e}"));
            match status {
                StatusCode::OK => ok += 1,
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert!(
                        body.contains("\"cause\":\"server shutting down\""),
                        "{body}"
                    );
                    unavailable += 1
                }
                other => panic!("request {i}: unexpected {other}: {body}"),
            }
            finished += field(&body, "finished");
            canceled += field(&body, "canceled");
        }
        tokio::time::timeout(Duration::from_secs(10), server.served)
            .await
            .expect("the server drained")
            .unwrap()
            .unwrap();
        eprintln!("shutdown: {ok} completed, {unavailable} canceled in flight");
        assert!(unavailable >= 4, "the long requests were canceled");
        assert!(ok >= 1, "some short requests completed before the shutdown");
        // Every subtask's outcome reached a client: nothing was lost.
        assert_eq!(finished, stats.finished.load(SeqCst));
        assert_eq!(canceled, stats.canceled.load(SeqCst));
        assert_eq!(stats.subtasks_running(), 0);
        assert_eq!(stats.requests_in_flight.load(SeqCst), 0);
        // After the drain, the port no longer accepts.
        assert!(get(server.addr, "/stats", None).await.is_err());
    });
}

#[test]
fn stats_endpoint_reports_the_counters() {
    let _serial = serial();
    runtime().block_on(async {
        let server = start().await;
        let (status, body) = get(server.addr, "/fanout?tasks=300&work_ms=1", None)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(field(&body, "finished"), 300);
        let (status, stats) = get(server.addr, "/stats", None).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(field(&stats, "started"), 300);
        assert_eq!(field(&stats, "finished"), 300);
        assert_eq!(field(&stats, "canceled"), 0);
        let (status, _) = get(server.addr, "/fanout?tasks=many", None).await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        drop(server.shutdown);
        server.served.await.unwrap().unwrap();
    });
}

#[test]
fn debug_contexts_shows_the_live_tree() {
    let _serial = serial();
    runtime().block_on(async {
        let server = start().await;
        let addr = server.addr;
        let client =
            tokio::spawn(
                async move { get(addr, "/fanout?tasks=20&work_ms=10000", Some("20S")).await },
            );
        let give_up = Instant::now() + Duration::from_secs(5);
        let (status, tree) = loop {
            let (status, tree) = get(addr, "/debug/contexts", None).await.unwrap();
            let enough = tree.matches("\n      WithCancel").count() >= 20;
            if enough || status != StatusCode::OK || Instant::now() > give_up {
                break (status, tree);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(status, StatusCode::OK, "{tree}");
        // The root, the fan-out request (a 20 s deadline) with its group and
        // 20 subtasks, waiting, and this request.
        assert!(tree.starts_with("WithCancel · 2 children"), "{tree}");
        let left = |line: &str| -> f64 {
            let at = line.find(" in ").unwrap() + 4;
            line[at..].split('s').next().unwrap().parse().unwrap()
        };
        let request = tree
            .lines()
            .find(|l| l.starts_with("  WithDeadline in ") && l.contains("· 1 child"))
            .unwrap_or_else(|| panic!("no fan-out request line:\n{tree}"));
        assert!((15.0..=20.0).contains(&left(request)), "{tree}");
        assert!(tree.contains("· 20 children\n"), "{tree}");
        let subtasks = tree
            .lines()
            .filter(|l| l.starts_with("      WithCancel in "));
        assert_eq!(subtasks.count(), 20, "{tree}");
        client.abort();
        drop(server.shutdown);
        server.served.await.unwrap().unwrap();
    });
}

#[cfg(feature = "stats")]
#[test]
fn metrics_counts_the_subtasks_contexts() {
    let _serial = serial();
    runtime().block_on(async {
        let server = start().await;
        let read = |body: &str, name: &str| -> u64 {
            let line = body
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap();
            line[name.len() + 1..].parse().unwrap()
        };
        let (status, before) = get(server.addr, "/metrics", None).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{before}");
        let (status, _) = get(server.addr, "/fanout?tasks=500&work_ms=1", None)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        let (_, after) = get(server.addr, "/metrics", None).await.unwrap();
        let derived = read(&after, "ctxtree_contexts_derived_total")
            - read(&before, "ctxtree_contexts_derived_total");
        // 500 subtasks, their group, the request, the /metrics request.
        assert!(
            (502..=510).contains(&derived),
            "{derived} derived:\n{after}"
        );
        drop(server.shutdown);
        server.served.await.unwrap().unwrap();
    });
}

//! A fan-out HTTP server generic over the three trees, and a closed-loop
//! load generator for it, both on hyper over 127.0.0.1.
//!
//! The server is the shape of `examples/fanout_server` without its ctxtree
//! specifics (the tower layer, the task group), so that the three trees run
//! the same code: each request derives a request context under the
//! server's root, then one child per subtask, spawns the subtasks as tokio
//! tasks, waits for all of them and answers with how many ran their work.
//! A subtask checks its context before its (tiny) work, as a real one
//! would before each step; its context ends with it.
//!
//! The load generator keeps `connections` keep-alive HTTP/1 connections
//! busy, one request in flight on each (closed loop), for a fixed time, and
//! records every request's latency.

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::tree::Tree;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// One request's work: a request context under `root`, `subtasks` tasks
/// each under a child of it; returns how many found their context live
/// and did their work. The request context ends when this returns.
///
/// The context operations run in stretches with no `.await` inside (the
/// request's derives; each subtask's check and end; the request's end),
/// each timed with two clock reads into `probe` (see [`Probe::spent`]).
pub async fn fan_out<T: Tree>(root: &T::Ctx, subtasks: usize, probe: &Arc<Probe>) -> usize {
    let mut children = Vec::with_capacity(subtasks);
    let start = Instant::now();
    let (request, request_handle) = T::derive(root);
    children.extend((0..subtasks).map(|_| T::derive(&request)));
    probe.spend(start, 1);
    let mut tasks = JoinSet::new();
    for (i, (ctx, handle)) in children.into_iter().enumerate() {
        let probe = Arc::clone(probe);
        tasks.spawn(async move {
            let start = Instant::now();
            let live = !T::is_done(&ctx);
            if live {
                black_box(i); // the subtask's work
            }
            drop(handle);
            drop(ctx);
            probe.spend(start, 1);
            usize::from(live)
        });
    }
    let mut worked = 0;
    while let Some(joined) = tasks.join_next().await {
        worked += joined.expect("a subtask panicked");
    }
    let start = Instant::now();
    drop(request_handle);
    drop(request);
    probe.spend(start, 1);
    probe.requests.fetch_add(1, Ordering::Relaxed);
    worked
}

/// Serves `listener` until the task is dropped. `GET /hang`: [`hang`]
/// until the client goes away; `GET /deadline`: [`hang`] under a 50 ms
/// deadline; any other path: [`fan_out`], answering the number of
/// subtasks that worked.
pub async fn serve<T: Tree>(
    listener: TcpListener,
    root: T::Ctx,
    subtasks: usize,
    probe: Arc<Probe>,
) {
    let mut connections = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let (root, probe) = (root.clone(), Arc::clone(&probe));
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let (root, probe) = (root.clone(), Arc::clone(&probe));
                async move {
                    let body = match request.uri().path() {
                        "/hang" => hang::<T>(&root, subtasks, &probe, None).await,
                        "/deadline" => hang::<T>(&root, subtasks, &probe, Some(DEADLINE)).await,
                        _ => fan_out::<T>(&root, subtasks, &probe).await.to_string(),
                    };
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        // Reap the connections that ended.
        while connections.try_join_next().is_some() {}
    }
}

/// The deadline of `GET /deadline`.
pub const DEADLINE: Duration = Duration::from_millis(50);

/// What the subtasks of `/hang` and `/deadline` report, for the cancel
/// latency rows (one such request at a time).
#[derive(Debug)]
pub struct Probe {
    base: Instant,
    started: AtomicUsize,
    observed: AtomicUsize,
    /// Since `base`: the latest observation of a cancel, and the deadline.
    last_ns: AtomicU64,
    deadline_ns: AtomicU64,
    /// Time in context operations, the timed stretches, and the requests
    /// of `fan_out` since the last `take_spent`.
    spent_ns: AtomicU64,
    stretches: AtomicU64,
    requests: AtomicU64,
}

impl Default for Probe {
    fn default() -> Probe {
        Probe {
            base: Instant::now(),
            started: AtomicUsize::new(0),
            observed: AtomicUsize::new(0),
            last_ns: AtomicU64::new(0),
            deadline_ns: AtomicU64::new(0),
            spent_ns: AtomicU64::new(0),
            stretches: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }
}

impl Probe {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn reset(&self) {
        self.started.store(0, Ordering::SeqCst);
        self.observed.store(0, Ordering::SeqCst);
        self.last_ns.store(0, Ordering::SeqCst);
    }

    fn spend(&self, since: Instant, stretches: u64) {
        let ns = since.elapsed().as_nanos() as u64;
        self.spent_ns.fetch_add(ns, Ordering::Relaxed);
        self.stretches.fetch_add(stretches, Ordering::Relaxed);
    }

    /// Microseconds per request of `fan_out` spent in context operations
    /// since the last call, less `clock_ns` (the cost of one timing) per
    /// timed stretch; then starts over. NaN without requests.
    pub fn take_spent(&self, clock_ns: f64) -> f64 {
        let ns = self.spent_ns.swap(0, Ordering::SeqCst) as f64;
        let stretches = self.stretches.swap(0, Ordering::SeqCst) as f64;
        let requests = self.requests.swap(0, Ordering::SeqCst) as f64;
        ((ns - stretches * clock_ns).max(0.0) / requests) / 1e3
    }

    fn observe(&self) {
        self.last_ns.fetch_max(self.now_ns(), Ordering::SeqCst);
        self.observed.fetch_add(1, Ordering::SeqCst);
    }

    /// Polls `cond` every 100 µs, sleeping: the caller is not one of the
    /// runtime's workers, and spinning would take a core from them.
    fn wait_for(&self, what: &str, cond: impl Fn(&Probe) -> bool) -> Result<(), Error> {
        let start = Instant::now();
        while !cond(self) {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(format!("timed out waiting for {what}").into());
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        Ok(())
    }
}

/// A request whose `subtasks` wait for their context to end and record
/// when they saw it: the request context ends when the client goes away
/// (hyper drops this future) or, with `deadline`, when it expires. The
/// subtasks are detached tokio tasks, not a `JoinSet`, which would abort
/// them when the handler is dropped, before they see the cancel.
async fn hang<T: Tree>(
    root: &T::Ctx,
    subtasks: usize,
    probe: &Arc<Probe>,
    deadline: Option<Duration>,
) -> String {
    let (request, _ends_with_the_request) = match deadline {
        None => T::derive(root),
        Some(d) => {
            let due = probe.now_ns() + d.as_nanos() as u64;
            probe.deadline_ns.store(due, Ordering::SeqCst);
            match T::with_timeout(root, d) {
                Some(timed) => timed,
                None => return NO_DEADLINES.into(),
            }
        }
    };
    let mut tasks = Vec::with_capacity(subtasks);
    for _ in 0..subtasks {
        let (ctx, handle) = T::derive(&request);
        let probe = Arc::clone(probe);
        tasks.push(tokio::spawn(async move {
            let _ends_with_the_subtask = handle;
            probe.started.fetch_add(1, Ordering::SeqCst);
            let _ = T::done(&ctx).await;
            probe.observe();
        }));
    }
    for task in tasks {
        task.await.expect("a subtask panicked");
    }
    "ended".into()
}

const NO_DEADLINES: &str = "no deadlines";

/// From the client going away (its connection dropped once every subtask
/// of its `/hang` request waits) to the last subtask seeing the cancel.
/// Call it outside the runtime's workers (`block_on`): it sleeps.
pub async fn disconnect_latency(
    addr: SocketAddr,
    probe: &Probe,
    subtasks: usize,
) -> Result<Duration, Error> {
    probe.reset();
    let (mut sender, driver) = connect(addr).await?;
    let request = get(addr, "/hang")?;
    let exchange = tokio::spawn(async move {
        let _ = sender.send_request(request).await;
    });
    probe.wait_for("the subtasks to start", |p| {
        p.started.load(Ordering::SeqCst) == subtasks
    })?;
    let gone = probe.now_ns();
    exchange.abort();
    driver.abort(); // the socket closes when the aborted task is dropped
    probe.wait_for("the subtasks to see the cancel", |p| {
        p.observed.load(Ordering::SeqCst) == subtasks
    })?;
    let last = probe.last_ns.load(Ordering::SeqCst);
    Ok(Duration::from_nanos(last.saturating_sub(gone)))
}

/// From the 50 ms deadline of a `/deadline` request to the last of its
/// subtasks seeing it; `None` for a tree without deadlines.
pub async fn deadline_lateness(
    addr: SocketAddr,
    probe: &Probe,
    subtasks: usize,
) -> Result<Option<Duration>, Error> {
    probe.reset();
    let (mut sender, driver) = connect(addr).await?;
    let response = sender.send_request(get(addr, "/deadline")?).await?;
    let body = response.into_body().collect().await?.to_bytes();
    drop(sender);
    driver.await??;
    if body == NO_DEADLINES {
        return Ok(None);
    }
    // The handler answers after every subtask ended.
    let observed = probe.observed.load(Ordering::SeqCst);
    if observed != subtasks {
        return Err(format!("{observed} of {subtasks} subtasks saw the deadline").into());
    }
    let last = probe.last_ns.load(Ordering::SeqCst);
    let due = probe.deadline_ns.load(Ordering::SeqCst);
    Ok(Some(Duration::from_nanos(last.saturating_sub(due))))
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;
type Driver = tokio::task::JoinHandle<hyper::Result<()>>;

/// A fresh keep-alive connection: its sender and the task driving it.
async fn connect(addr: SocketAddr) -> Result<(Sender, Driver), Error> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    Ok((sender, tokio::spawn(conn)))
}

fn get(addr: SocketAddr, path: &str) -> Result<Request<Empty<Bytes>>, Error> {
    Ok(Request::get(path)
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())?)
}

/// A bound listener and its address.
pub async fn listen() -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// What one load run saw.
#[derive(Debug)]
pub struct Load {
    pub elapsed: Duration,
    /// Every request's latency, in completion order per connection.
    pub latencies: Vec<Duration>,
    /// Responses whose body was not the expected subtask count.
    pub wrong: usize,
}

impl Load {
    pub fn requests_per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The `pct`-th percentile (0–100) of the latencies, in µs.
    pub fn percentile_us(&self, pct: f64) -> f64 {
        let mut v: Vec<f64> = self
            .latencies
            .iter()
            .map(|d| d.as_nanos() as f64 / 1e3)
            .collect();
        v.sort_by(f64::total_cmp);
        let i = ((pct / 100.0) * (v.len().max(1) - 1) as f64).round() as usize;
        v.get(i).copied().unwrap_or(f64::NAN)
    }
}

/// `connections` keep-alive connections to `addr`, each sending one `GET`
/// after another until `duration` has passed; `expected` is the body every
/// response should have.
pub async fn load(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    expected: usize,
) -> Result<Load, Error> {
    let start = Instant::now();
    let until = start + duration;
    let expected = Bytes::from(expected.to_string());
    let mut clients = JoinSet::new();
    for _ in 0..connections {
        clients.spawn(client(addr, until, expected.clone()));
    }
    let (mut latencies, mut wrong) = (Vec::new(), 0);
    while let Some(joined) = clients.join_next().await {
        let (l, w) = joined??;
        latencies.extend(l);
        wrong += w;
    }
    Ok(Load {
        elapsed: start.elapsed(),
        latencies,
        wrong,
    })
}

/// One closed-loop client: (latencies, wrong responses).
async fn client(
    addr: SocketAddr,
    until: Instant,
    expected: Bytes,
) -> Result<(Vec<Duration>, usize), Error> {
    let (mut sender, driver) = connect(addr).await?;
    let (mut latencies, mut wrong) = (Vec::new(), 0);
    while Instant::now() < until {
        let request = get(addr, "/fanout")?;
        let sent = Instant::now();
        let response = sender.send_request(request).await?;
        let body = response.into_body().collect().await?.to_bytes();
        latencies.push(sent.elapsed());
        wrong += usize::from(body != expected);
    }
    drop(sender); // ends the connection
    driver.await??;
    Ok((latencies, wrong))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::live_parent;
    use crate::tree::{CtxTree, MutexTree, TokioTree};

    /// A short run against each tree: every response reports that all the
    /// subtasks of its request ran under a live context, and the server's
    /// root stays live.
    fn serves<T: Tree>() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_io()
            .build()
            .unwrap();
        rt.block_on(async {
            let (root, _root_handle) = live_parent::<T>();
            let (listener, addr) = listen().await.unwrap();
            let probe = Arc::new(Probe::default());
            let server = tokio::spawn(serve::<T>(listener, root.clone(), 100, probe.clone()));
            let run = load(addr, 4, Duration::from_millis(50), 100).await.unwrap();
            assert!(run.latencies.len() >= 4, "{}", T::NAME);
            assert_eq!(run.wrong, 0, "{}", T::NAME);
            assert!(run.requests_per_second() > 0.0);
            assert!(run.percentile_us(50.0) <= run.percentile_us(99.9));
            // A client that goes away cancels every subtask of its request
            // (disconnect_latency fails unless all 100 observe it).
            let gone = disconnect_latency(addr, &probe, 100).await.unwrap();
            assert!(gone < Duration::from_secs(1), "{}: {gone:?}", T::NAME);
            let late = deadline_lateness(addr, &probe, 100).await.unwrap();
            if T::with_timeout(&root, Duration::from_secs(1)).is_some() {
                assert!(late.unwrap() < Duration::from_secs(1), "{}", T::NAME);
            } else {
                assert!(late.is_none());
            }
            assert!(!T::is_done(&root));
            server.abort();
        });
    }

    #[test]
    fn ctxtree_server_answers() {
        serves::<CtxTree>();
    }

    #[test]
    fn mutex_tree_server_answers() {
        serves::<MutexTree>();
    }

    #[test]
    fn tokio_server_answers() {
        serves::<TokioTree>();
    }

    #[test]
    fn a_canceled_root_stops_the_subtasks_work() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (root, handle) = live_parent::<CtxTree>();
        let probe = Arc::new(Probe::default());
        assert_eq!(rt.block_on(fan_out::<CtxTree>(&root, 10, &probe)), 10);
        let spent = probe.take_spent(0.0);
        assert!(spent > 0.0 && spent < 1e5, "{spent}");
        assert!(probe.take_spent(0.0).is_nan(), "taken");
        handle.cancel();
        assert_eq!(rt.block_on(fan_out::<CtxTree>(&root, 10, &probe)), 0);
    }
}

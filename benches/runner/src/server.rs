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
pub async fn fan_out<T: Tree>(root: &T::Ctx, subtasks: usize) -> usize {
    let (request, _ends_with_the_request) = T::derive(root);
    let mut tasks = JoinSet::new();
    for i in 0..subtasks {
        let (ctx, handle) = T::derive(&request);
        tasks.spawn(async move {
            let _ends_with_the_subtask = handle;
            if T::is_done(&ctx) {
                return 0;
            }
            black_box(i);
            1
        });
    }
    let mut worked = 0;
    while let Some(joined) = tasks.join_next().await {
        worked += joined.expect("a subtask panicked");
    }
    worked
}

/// Serves `GET` (any path) on `listener` until the task is dropped: every
/// request runs [`fan_out`] and the body is the number of subtasks that
/// worked.
pub async fn serve<T: Tree>(listener: TcpListener, root: T::Ctx, subtasks: usize) {
    let mut connections = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let root = root.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |_: Request<Incoming>| {
                let root = root.clone();
                async move {
                    let worked = fan_out::<T>(&root, subtasks).await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(worked.to_string()))))
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
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let (mut latencies, mut wrong) = (Vec::new(), 0);
    while Instant::now() < until {
        let request = Request::get("/fanout")
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())?;
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
            let server = tokio::spawn(serve::<T>(listener, root.clone(), 100));
            let run = load(addr, 4, Duration::from_millis(50), 100).await.unwrap();
            assert!(run.latencies.len() >= 4, "{}", T::NAME);
            assert_eq!(run.wrong, 0, "{}", T::NAME);
            assert!(run.requests_per_second() > 0.0);
            assert!(run.percentile_us(50.0) <= run.percentile_us(99.9));
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
        assert_eq!(rt.block_on(fan_out::<CtxTree>(&root, 10)), 10);
        handle.cancel();
        assert_eq!(rt.block_on(fan_out::<CtxTree>(&root, 10)), 0);
    }
}

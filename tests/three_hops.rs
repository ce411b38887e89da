//! Three services over 127.0.0.1: B (a tonic server) calls C (an axum HTTP
//! server) without passing any context by hand. Called by the test itself
//! (a tonic client) with a 300 ms budget, the budget reaches C, shrunk by
//! the time spent, in `connect-timeout-ms`; C's work ends at the caller's
//! deadline. A caller that goes away, and B's graceful shutdown, end the
//! work in B and C. With A (an axum HTTP server calling B) in front, under
//! a load of concurrent clients, A's graceful shutdown loses no answer its
//! handler completed: each one reaches its client whole, requests in
//! flight are answered (503 once their call to B is cut short), and
//! the rest are refused; and a client that disconnects from A ends the
//! work in B and C.

#[path = "../examples/three_hops/hops.rs"]
mod hops;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use ctxtree::tower::RequestAborted;
use ctxtree::{Context, Error};
use hops::*;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tonic::Code;

/// How long a context may take to observe a cancel that crossed a hop.
const BOUND: Duration = Duration::from_secs(1);

/// C and B, and the request contexts their handlers see.
struct Chain {
    b: Hop,
    c: Hop,
    b_contexts: UnboundedReceiver<Context>,
    c_contexts: UnboundedReceiver<Context>,
}

async fn start_chain() -> Chain {
    let (c_seen, c_contexts) = unbounded_channel();
    let (b_seen, b_contexts) = unbounded_channel();
    let c = start_c(c_seen).await;
    let b = start_b(c.addr, b_seen).await;
    Chain {
        b,
        c,
        b_contexts,
        c_contexts,
    }
}

/// The next request context `contexts` receives, within [`BOUND`].
async fn next(contexts: &mut UnboundedReceiver<Context>) -> Context {
    tokio::time::timeout(BOUND, contexts.recv())
        .await
        .expect("the request never reached the handler")
        .unwrap()
}

/// Waits (within [`BOUND`]) for `ctx` to end, canceled because its request
/// went away.
async fn assert_aborted(ctx: &Context, hop: &str) {
    tokio::time::timeout(BOUND, ctx.done())
        .await
        .unwrap_or_else(|_| panic!("{hop}'s request context outlived its caller"));
    assert_eq!(ctx.err(), Some(Error::Canceled), "{hop}");
    let cause = ctx.cause().unwrap();
    assert!(
        cause.downcast_ref::<RequestAborted>().is_some(),
        "{hop}: {cause}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_crosses_two_hops_and_ends_the_last_ones_work() {
    let mut chain = start_chain().await;
    let b = chain.b.addr;

    // The budget reaches C, shrunk by the time spent on the way.
    let (a, _cancel) = Context::background().with_timeout(Duration::from_millis(300));
    let left: u64 = a
        .scope(call_b(b, "/remaining"))
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert!(left < 300 && left > 150, "C had {left} ms of A's 300");

    // C's work ends at A's deadline, within a few milliseconds.
    let (a, _cancel) = Context::background().with_timeout(Duration::from_millis(300));
    let a_deadline = a.deadline().unwrap();
    let status = a.scope(call_b(b, "/stuck")).await.unwrap_err();
    let late = Instant::now().saturating_duration_since(a_deadline);
    assert!(
        late < Duration::from_millis(200),
        "A's call ended {late:?} after its deadline"
    );
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    let c_ctx = next(&mut chain.c_contexts).await;
    let c_deadline = c_ctx.deadline().unwrap();
    // Never earlier than A's; later by the rounding (a millisecond per hop)
    // and by the time each hop's request spent in flight before its server
    // read the header (milliseconds; tens on a loaded machine).
    assert!(c_deadline >= a_deadline, "C's deadline is earlier than A's");
    assert!(
        c_deadline - a_deadline < Duration::from_millis(100),
        "C's deadline is {:?} after A's",
        c_deadline - a_deadline
    );
    // C's context ends at A's deadline: by its own copy of the deadline, or
    // canceled (`RequestAborted`) when B abandons the HTTP call at B's.
    let (stamp, ended_at) = tokio::sync::oneshot::channel();
    let _registration = c_ctx.after_func(move || {
        let _ = stamp.send(Instant::now());
    });
    let ended_at = tokio::time::timeout(Duration::from_secs(5), ended_at)
        .await
        .expect("C's work was never canceled")
        .unwrap();
    let c_late = ended_at.saturating_duration_since(a_deadline);
    eprintln!(
        "C's context ended {c_late:?} after A's deadline: {:?}",
        c_ctx.err()
    );
    assert!(
        c_late < Duration::from_millis(200),
        "C's work ended {c_late:?} after A's deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_goes_away_cancels_the_work_in_b_and_c() {
    let mut chain = start_chain().await;
    let b = chain.b.addr;
    // No deadline anywhere: only the disconnect can end B's and C's work.
    let (a, _cancel) = Context::background().with_cancel();
    let call = tokio::spawn(a.scope(call_b(b, "/stuck")));
    let b_ctx = next(&mut chain.b_contexts).await;
    let c_ctx = next(&mut chain.c_contexts).await;
    assert_eq!((b_ctx.deadline(), c_ctx.deadline()), (None, None));
    assert!(!b_ctx.is_done() && !c_ctx.is_done());

    call.abort(); // A drops its call: tonic resets the HTTP/2 stream
    assert!(call.await.unwrap_err().is_cancelled());
    // B's request future is dropped by hyper, which cancels B's context and
    // drops B's handler with its call to C; C sees the connection close.
    assert_aborted(&b_ctx, "B").await;
    assert_aborted(&c_ctx, "C").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_b_answers_in_flight_calls_unavailable_and_cancels_c() {
    let mut chain = start_chain().await;
    let b = chain.b.addr;
    let in_flight = tokio::spawn(call_b(b, "/stuck"));
    let b_ctx = next(&mut chain.b_contexts).await;
    let c_ctx = next(&mut chain.c_contexts).await;

    chain.b.shutdown.cancel(); // B's root: every request context ends
    let status = tokio::time::timeout(BOUND, in_flight)
        .await
        .expect("the in-flight call was not answered")
        .unwrap()
        .unwrap_err();
    // From B's layer ("server shutting down") or from B's handler, whose
    // call to C ended with its context ("context canceled"): UNAVAILABLE.
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(b_ctx.err(), Some(Error::Canceled));
    // B's handler was dropped with its call to C.
    assert_aborted(&c_ctx, "C").await;
    // B drains and stops; a new call is refused.
    tokio::time::timeout(BOUND, chain.b.served)
        .await
        .expect("B did not drain")
        .unwrap();
    let status = call_b(b, "/remaining").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        chain.b_contexts.try_recv().is_err(),
        "B's handler never ran"
    );
    // C is still up.
    chain.c.shutdown.cancel();
    chain.c.served.await.unwrap();
}

/// How one HTTP request to A ended, as its client saw it.
#[derive(Debug)]
#[allow(dead_code)] // the messages are read through `Debug`, in failures
enum Outcome {
    /// A whole response: its status and body.
    Answered(u16, String),
    /// The connection was refused: A no longer listens.
    Refused,
    /// The connection failed or closed before a response head arrived.
    Closed(String),
    /// The head arrived, then the body was cut short (or is not UTF-8).
    Truncated(String),
}

/// GET `path` on `a` over a new HTTP/1 connection.
async fn get(a: SocketAddr, path: &str) -> Outcome {
    let stream = match tokio::net::TcpStream::connect(a).await {
        Ok(stream) => stream,
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => return Outcome::Refused,
        Err(err) => return Outcome::Closed(err.to_string()),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(parts) => parts,
        Err(err) => return Outcome::Closed(err.to_string()),
    };
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", a.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = match sender.send_request(req).await {
        Ok(res) => res,
        Err(err) => return Outcome::Closed(err.to_string()),
    };
    let status = res.status().as_u16();
    match res.into_body().collect().await {
        Ok(body) => match String::from_utf8(body.to_bytes().to_vec()) {
            Ok(body) => Outcome::Answered(status, body),
            Err(err) => Outcome::Truncated(format!("{status}: {err}")),
        },
        Err(err) => Outcome::Truncated(format!("{status}: {err}")),
    }
}

/// What one closed-loop client saw.
#[derive(Debug, Default)]
struct Tally {
    /// 200s with the right body.
    ok: usize,
    /// Requests sent before A's shutdown started and ended after.
    straddled: usize,
    /// How its last request ended (after the shutdown started).
    last: Option<String>,
}

/// A closed-loop client of A: `GET /via-b/slow/{n}` (C answers `n` after
/// `SLOW`) until a request fails after `draining` is set. Each 200 must carry
/// its own `n` and is counted in `received`; before `draining` every request
/// must succeed, and no body may ever be cut short.
async fn client(
    a: SocketAddr,
    id: usize,
    received: Arc<AtomicUsize>,
    draining: Arc<AtomicBool>,
) -> Tally {
    let mut tally = Tally::default();
    for i in 0.. {
        let n = id * 1_000_000 + i;
        let before = draining.load(Ordering::SeqCst);
        let outcome = get(a, &format!("/via-b/slow/{n}")).await;
        let after = draining.load(Ordering::SeqCst);
        tally.straddled += usize::from(!before && after);
        match outcome {
            Outcome::Answered(200, body) => {
                assert_eq!(body, n.to_string(), "client {id}: a garbled body");
                tally.ok += 1;
                received.fetch_add(1, Ordering::SeqCst);
            }
            Outcome::Answered(503, _) | Outcome::Refused | Outcome::Closed(_) if after => {
                tally.last = Some(format!("{outcome:?}"));
                break;
            }
            outcome => panic!("client {id}, request {n} (draining: {after}): {outcome:?}"),
        }
    }
    tally
}

/// Clients sending requests to A at once.
const CLIENTS: usize = 8;
/// Answers the clients receive before A's shutdown starts.
const WARM: usize = 50;
/// A generous bound for the load and the drain on a loaded machine.
const DRAIN: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_a_down_drains_without_losing_a_completed_response() {
    let mut chain = start_chain().await;
    let completed = Arc::new(AtomicUsize::new(0));
    let a = start_a(chain.b.addr, completed.clone()).await;
    let received = Arc::new(AtomicUsize::new(0));
    let draining = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| tokio::spawn(client(a.addr, id, received.clone(), draining.clone())))
        .collect();
    tokio::time::timeout(DRAIN, async {
        while received.load(Ordering::SeqCst) < WARM {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the clients got too few answers");

    // One request certainly in flight at the cancel: held in C's `/stuck`.
    let held = tokio::spawn(get(a.addr, "/via-b/stuck"));
    let c_ctx = tokio::time::timeout(DRAIN, chain.c_contexts.recv())
        .await
        .expect("the held request never reached C")
        .unwrap();
    draining.store(true, Ordering::SeqCst);
    a.shutdown.cancel(); // A's root: every request context at A ends

    // The held request is answered whole: 503, its call to B cut short,
    // which cancels the work down to C.
    let held = tokio::time::timeout(DRAIN, held)
        .await
        .expect("the held request was not answered")
        .unwrap();
    assert!(matches!(held, Outcome::Answered(503, _)), "{held:?}");
    assert_aborted(&c_ctx, "C").await;
    // Every client ends: its last request answered 503, closed or refused.
    let mut tallies = Vec::new();
    for client in clients {
        let tally = tokio::time::timeout(DRAIN, client)
            .await
            .expect("a client kept getting answers after A's shutdown")
            .unwrap();
        tallies.push(tally);
    }
    tokio::time::timeout(DRAIN, a.served)
        .await
        .expect("A did not drain")
        .unwrap();

    // No answer A's handler completed was lost on the way to its client.
    let (completed, received) = (
        completed.load(Ordering::SeqCst),
        received.load(Ordering::SeqCst),
    );
    let straddled: usize = tallies.iter().map(|t| t.straddled).sum();
    eprintln!("A completed {completed}, clients received {received}; {straddled} straddled the shutdown; {tallies:?}");
    assert_eq!(
        completed, received,
        "answers A completed vs. received whole"
    );
    assert_eq!(received, tallies.iter().map(|t| t.ok).sum::<usize>());
    assert!(received >= WARM);
    // A stopped: a new request is refused.
    let outcome = get(a.addr, "/via-b/remaining").await;
    assert!(matches!(outcome, Outcome::Refused), "{outcome:?}");
    for hop in [chain.b, chain.c] {
        hop.shutdown.cancel();
        tokio::time::timeout(DRAIN, hop.served)
            .await
            .expect("B or C did not drain")
            .unwrap();
    }
}

/// A's own client goes away: hyper drops A's request future, which cancels
/// A's request context and drops its call to B; B and C see their callers
/// go and cancel their work (`RequestAborted`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_from_a_cancels_the_work_in_b_and_c() {
    let mut chain = start_chain().await;
    let a = start_a(chain.b.addr, Arc::new(AtomicUsize::new(0))).await;
    let call = tokio::spawn(get(a.addr, "/via-b/stuck"));
    let b_ctx = next(&mut chain.b_contexts).await;
    let c_ctx = next(&mut chain.c_contexts).await;
    assert!(!b_ctx.is_done() && !c_ctx.is_done());

    call.abort(); // drops the client's connection to A
    assert!(call.await.unwrap_err().is_cancelled());
    assert_aborted(&b_ctx, "B").await;
    assert_aborted(&c_ctx, "C").await;
    for hop in [a, chain.b, chain.c] {
        hop.shutdown.cancel();
        tokio::time::timeout(DRAIN, hop.served)
            .await
            .expect("a hop did not drain")
            .unwrap();
    }
}

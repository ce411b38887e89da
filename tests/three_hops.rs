//! Three services over 127.0.0.1: A (this test, a tonic client) calls B (a
//! tonic server) with a 300 ms budget; B's handler calls C (an axum HTTP
//! server) without passing any context by hand. The budget reaches C,
//! shrunk by the time spent, in `connect-timeout-ms`; C's work ends at A's
//! deadline. A caller that goes away, and B's graceful shutdown, end the
//! work in B and C.

#[path = "../examples/three_hops/hops.rs"]
mod hops;

use std::time::{Duration, Instant};

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
    // Rounded up to a millisecond per hop, never earlier than A's.
    assert!(c_deadline >= a_deadline, "C's deadline is earlier than A's");
    assert!(
        c_deadline - a_deadline < Duration::from_millis(10),
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

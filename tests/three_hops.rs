//! Three services over 127.0.0.1: A (this test, a tonic client) calls B (a
//! tonic server) with a 300 ms budget; B's handler calls C (an axum HTTP
//! server) without passing any context by hand. The budget reaches C,
//! shrunk by the time spent, in `connect-timeout-ms`; C's work ends at A's
//! deadline.

#[path = "../examples/three_hops/hops.rs"]
mod hops;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ctxtree::Context;
use hops::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_crosses_two_hops_and_ends_the_last_ones_work() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (c, _stop_c) = start_c(seen.clone()).await;
    let (b, _stop_b) = start_b(c).await;

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
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    let c_ctx = seen.lock().unwrap()[0].clone();
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
    let ended_at = Arc::new(Mutex::new(None));
    let stamp = ended_at.clone();
    let _registration = c_ctx.after_func(move || *stamp.lock().unwrap() = Some(Instant::now()));
    let until = Instant::now() + Duration::from_secs(5);
    while ended_at.lock().unwrap().is_none() {
        assert!(Instant::now() < until, "C's work was never canceled");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ended_at = ended_at.lock().unwrap().unwrap();
    let c_late = ended_at.saturating_duration_since(a_deadline);
    eprintln!(
        "C's context ended {c_late:?} after A's deadline: {:?}",
        c_ctx.err()
    );
    assert!(c_ctx.err().is_some());
    assert!(
        c_late < Duration::from_millis(200),
        "C's work ended {c_late:?} after A's deadline"
    );
}

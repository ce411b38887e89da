//! `VirtualClock`: deadline tests in virtual time, deterministic and
//! instant, scoped to the clock's tree.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ctxtree::{Cause, Context, Error, OriginKind, VirtualClock};
#[cfg(feature = "tower")]
use {
    ctxtree::tower::{request_context, ContextLayer, GRPC_TIMEOUT},
    http::{Request, Response},
    std::convert::Infallible,
    tower::{service_fn, Layer, ServiceExt},
};

const SEC: Duration = Duration::from_secs(1);

#[test]
fn time_stands_still_until_advanced_and_deadlines_fire_in_order() {
    let clock = VirtualClock::new();
    let start = clock.now();
    let (a, _ha) = clock.context().with_timeout(3 * SEC);
    let (b, _hb) = clock.context().with_deadline(start + SEC);
    let (c, _hc) = b.with_timeout(10 * SEC); // inherits b's earlier deadline
    thread::sleep(Duration::from_millis(20));
    assert_eq!(a.remaining(), Some(3 * SEC), "no real time counts");
    let fired = Arc::new(Mutex::new(Vec::new()));
    let regs: Vec<_> = [("a", &a), ("b", &b), ("c", &c)]
        .into_iter()
        .map(|(name, ctx)| {
            let fired = fired.clone();
            let clock = clock.clone();
            ctx.after_func(move || fired.lock().unwrap().push((name, clock.now() - start)))
        })
        .collect();
    clock.advance(SEC - Duration::from_nanos(1));
    assert!(!b.is_done());
    clock.advance(Duration::from_nanos(1));
    assert_eq!(b.err(), Some(Error::DeadlineExceeded));
    assert!(c.is_done() && !a.is_done());
    clock.advance(5 * SEC);
    assert_eq!(a.origin().unwrap().kind(), OriginKind::Deadline);
    // Each function ran inside `advance`, reading its deadline's time.
    assert_eq!(
        *fired.lock().unwrap(),
        [("b", SEC), ("c", SEC), ("a", 3 * SEC)]
    );
    assert_eq!(clock.now() - start, 6 * SEC);
    drop(regs);
}

#[test]
fn a_deadline_armed_while_advancing_fires_in_the_same_advance() {
    let clock = VirtualClock::new();
    let (first, _h) = clock.context().with_timeout(SEC);
    let second = Arc::new(Mutex::new(None));
    let (slot, c) = (second.clone(), clock.clone());
    let _reg = first.after_func(move || {
        *slot.lock().unwrap() = Some(c.context().with_timeout(SEC));
    });
    clock.advance(5 * SEC);
    let (ctx, _h) = second.lock().unwrap().take().unwrap();
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

#[test]
fn waiters_on_other_threads_and_futures_wake_on_advance() {
    let clock = VirtualClock::new();
    let (ctx, _h) = clock.context().with_timeout(60 * SEC);
    let waiter = {
        let ctx = ctx.clone();
        thread::spawn(move || ctx.wait())
    };
    let mut done = Box::pin(ctx.done());
    assert!(futures::executor::block_on(futures::future::poll_immediate(&mut done)).is_none());
    let real = Instant::now();
    clock.advance(60 * SEC);
    assert_eq!(waiter.join().unwrap(), Error::DeadlineExceeded);
    assert_eq!(futures::executor::block_on(done), Error::DeadlineExceeded);
    assert!(
        real.elapsed() < 10 * SEC,
        "a minute of virtual time is instant"
    );
}

#[test]
fn clocks_and_real_time_do_not_see_each_other() {
    let one = VirtualClock::new();
    let two = VirtualClock::new();
    let (x, _hx) = one.context().with_timeout(SEC);
    let (y, _hy) = two.context().with_timeout(SEC);
    let (real, _hr) = Context::background().with_timeout(3600 * SEC);
    one.advance(2 * SEC);
    assert!(x.is_done());
    assert!(!y.is_done(), "another clock's tree");
    assert!(!real.is_done());
    assert!(real.remaining().unwrap() > 3599 * SEC);
    // In parallel from threads: each clock fires exactly its own.
    let workers: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(|| {
                let clock = VirtualClock::new();
                let ctxs: Vec<_> = (1..=100u32)
                    .map(|s| clock.context().with_timeout(SEC * s))
                    .collect();
                for s in 1..=100usize {
                    clock.advance(SEC);
                    let done = ctxs.iter().filter(|(c, _)| c.is_done()).count();
                    assert_eq!(done, s);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

#[test]
fn an_instant_at_or_before_the_clock_is_expired_at_once() {
    let clock = VirtualClock::new();
    clock.advance(10 * SEC);
    let (ctx, _h) = clock.context().with_deadline(clock.now());
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    let (ctx, _h) = clock.context().with_deadline(clock.now() - SEC);
    assert!(ctx.is_done());
    let (ctx, _h) = clock.context().with_timeout_cause(SEC, Cause::msg("slow"));
    assert_eq!(clock.next_deadline(), ctx.deadline());
    clock.advance(SEC);
    assert_eq!(ctx.cause().unwrap().to_string(), "slow");
    assert_eq!(clock.next_deadline(), None);
}

#[test]
fn dropping_the_clock_cancels_its_tree() {
    let clock = VirtualClock::new();
    let (ctx, _h) = clock.context().with_timeout(SEC);
    let (below, _b) = ctx.with_cancel();
    drop(clock);
    assert_eq!(below.err(), Some(Error::Canceled));
    // Derivations after the clock went are born canceled, with real time.
    let (late, _l) = below.with_timeout(SEC);
    assert!(late.is_done());
    assert!(late.remaining().is_some());
}

#[test]
fn canceled_deadlines_do_not_pile_up_in_the_clock() {
    let clock = VirtualClock::new();
    for _ in 0..100_000 {
        let (_ctx, handle) = clock.context().with_timeout(3600 * SEC);
        drop(handle);
    }
    assert_eq!(clock.next_deadline(), None);
    let (ctx, _h) = clock.context().with_timeout(SEC);
    clock.advance(SEC);
    assert!(ctx.is_done());
}

#[test]
fn a_thread_task_group_under_virtual_time() {
    let clock = VirtualClock::new();
    let (request, _h) = clock.context().with_timeout(5 * SEC);
    let result = ctxtree::group::scope(&request, |group| {
        for _ in 0..4 {
            group.spawn(|ctx| {
                ctx.wait();
                Err::<(), _>(ctx.cause().unwrap())
            });
        }
        clock.advance(5 * SEC);
    });
    assert_eq!(
        result.unwrap_err().as_context_error(),
        Some(Error::DeadlineExceeded)
    );
}

#[test]
fn display_shows_the_clock_time_left() {
    let clock = VirtualClock::new();
    let (ctx, _h) = clock.context().with_timeout(2 * SEC);
    clock.advance(SEC / 2);
    assert_eq!(
        ctx.to_string(),
        "context.Background.WithCancel.WithDeadline([1.500s])"
    );
}

/// Under a `VirtualClock`'s context the layer's budgets are virtual: a
/// 5-second `grpc-timeout` passes when the clock moves, not in real time.
#[cfg(feature = "tower")]
#[tokio::test]
async fn the_tower_layer_on_a_virtual_clock_ends_requests_when_the_clock_moves() {
    let clock = ctxtree::VirtualClock::new();
    let slot: Arc<Mutex<Option<Context>>> = Arc::default();
    let s = slot.clone();
    let svc = ContextLayer::new(clock.context().clone()).layer(service_fn(
        move |req: Request<String>| {
            let ctx = request_context(&req).unwrap().clone();
            *s.lock().unwrap() = Some(ctx.clone());
            async move { Ok::<_, Infallible>(Response::new(ctx.done().await.to_string())) }
        },
    ));
    let mut req = Request::new(String::new());
    req.headers_mut()
        .insert(GRPC_TIMEOUT, http::HeaderValue::from_static("5S"));
    let mut fut = Box::pin(svc.oneshot(req));
    assert!(futures::poll!(&mut fut).is_pending());
    let ctx = slot.lock().unwrap().clone().unwrap();
    assert_eq!(ctx.remaining(), Some(Duration::from_secs(5)));
    clock.advance(Duration::from_secs(4));
    assert!(futures::poll!(&mut fut).is_pending());
    clock.advance(Duration::from_secs(1));
    let response = fut.await.unwrap();
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert_eq!(
        ctx.origin().map(|o| o.kind()),
        Some(ctxtree::OriginKind::Deadline)
    );
    // The handler answered first, with the deadline it saw (the layer
    // polls the handler before its own deadline check).
    assert_eq!(response.status(), http::StatusCode::OK);
    assert_eq!(response.into_body(), "context deadline exceeded");
}

//! `ctxtree::tower`: the request context `ContextLayer` gives each request,
//! its deadline from `grpc-timeout`, and when it ends. In-process: tower's
//! `oneshot` and `service_fn`, no sockets.

use std::convert::Infallible;
use std::future::{pending, Future};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ctxtree::tower::{
    parse_grpc_timeout, request_context, set_grpc_timeout, ContextLayer, InvalidTimeoutPolicy,
    RequestAborted, GRPC_TIMEOUT,
};
use ctxtree::{Cause, Context, Error};
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use tower::{service_fn, Layer, Service, ServiceExt};

type Slot = Arc<Mutex<Option<Context>>>;

/// A handler that stashes its request context in `slot`, counts its calls,
/// then runs `then` on the context to make its response.
fn handler<F, Fut>(
    slot: &Slot,
    calls: &Arc<AtomicUsize>,
    then: F,
) -> impl Service<Request<String>, Response = Response<String>, Error = Infallible, Future = Fut>
where
    F: Fn(Context) -> Fut,
    Fut: Future<Output = Result<Response<String>, Infallible>>,
{
    let (slot, calls) = (slot.clone(), calls.clone());
    service_fn(move |req: Request<String>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let ctx = request_context(&req)
            .expect("ContextLayer put a context in the extensions")
            .clone();
        *slot.lock().unwrap() = Some(ctx.clone());
        then(ctx)
    })
}

async fn ok(_: Context) -> Result<Response<String>, Infallible> {
    Ok(Response::new(String::from("ok")))
}

/// Answers with the context's error once it is done.
async fn wait_done(ctx: Context) -> Result<Response<String>, Infallible> {
    Ok(Response::new(ctx.done().await.to_string()))
}

fn request(grpc_timeout: Option<&'static str>) -> Request<String> {
    let mut req = Request::new(String::new());
    if let Some(v) = grpc_timeout {
        req.headers_mut()
            .insert(GRPC_TIMEOUT, HeaderValue::from_static(v));
    }
    req
}

fn stashed(slot: &Slot) -> Context {
    slot.lock()
        .unwrap()
        .clone()
        .expect("the handler ran and stashed its context")
}

fn fresh() -> (Slot, Arc<AtomicUsize>) {
    (Arc::default(), Arc::default())
}

/// Asserts `deadline` is `timeout` after some instant in `[before, after]`.
#[track_caller]
fn assert_deadline(deadline: Option<Instant>, before: Instant, after: Instant, timeout: Duration) {
    let deadline = deadline.expect("the request context has a deadline");
    assert!(
        deadline >= before + timeout,
        "deadline {:?} after the request, want {timeout:?}",
        deadline - before
    );
    assert!(
        deadline <= after + timeout,
        "deadline {:?} after the request, want {timeout:?}",
        deadline - before
    );
}

/// Runs one request through `layer` with a handler that stashes its context
/// and answers at once; returns the context and the call's time window.
async fn deadline_of(
    layer: &ContextLayer,
    grpc_timeout: Option<&'static str>,
) -> (Context, Instant, Instant) {
    let (slot, calls) = fresh();
    let svc = layer.layer(handler(&slot, &calls, ok));
    let before = Instant::now();
    let res = svc.oneshot(request(grpc_timeout)).await.unwrap();
    let after = Instant::now();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    (stashed(&slot), before, after)
}

#[tokio::test]
async fn handler_sees_a_child_of_the_root_in_extensions() {
    #[derive(Debug, PartialEq)]
    struct Tenant(&'static str);
    let root = Context::background().with_value(Tenant("acme"));
    let (slot, calls) = fresh();
    let svc = ContextLayer::new(root).layer(handler(&slot, &calls, |ctx| async move {
        assert!(!ctx.is_done(), "live while the handler runs");
        ok(ctx).await
    }));
    let res = svc.oneshot(request(None)).await.unwrap();
    assert_eq!(res.body(), "ok");
    let ctx = stashed(&slot);
    assert_eq!(ctx.value::<Tenant>(), Some(&Tenant("acme")));
    assert_eq!(ctx.deadline(), None, "no header, no default: no deadline");
}

#[tokio::test]
async fn each_request_gets_its_own_context() {
    let (slot, calls) = fresh();
    let mut svc = ContextLayer::new(Context::background()).layer(handler(&slot, &calls, ok));
    svc.ready()
        .await
        .unwrap()
        .call(request(None))
        .await
        .unwrap();
    let first = stashed(&slot);
    svc.ready()
        .await
        .unwrap()
        .call(request(None))
        .await
        .unwrap();
    let second = stashed(&slot);
    assert!(!first.same(&second));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn grpc_timeout_header_sets_the_deadline_and_it_fires() {
    let (slot, calls) = fresh();
    let svc = ContextLayer::new(Context::background())
        .default_timeout(Duration::from_secs(60))
        .layer(handler(&slot, &calls, wait_done));
    let before = Instant::now();
    let res = svc.oneshot(request(Some("50m"))).await.unwrap();
    let after = Instant::now();
    assert_eq!(res.body(), "context deadline exceeded");
    assert!(after - before >= Duration::from_millis(50));
    let ctx = stashed(&slot);
    assert_deadline(ctx.deadline(), before, after, Duration::from_millis(50));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

#[tokio::test]
async fn default_timeout_applies_without_a_header() {
    let layer = ContextLayer::new(Context::background()).default_timeout(Duration::from_secs(7));
    let (ctx, before, after) = deadline_of(&layer, None).await;
    assert_deadline(ctx.deadline(), before, after, Duration::from_secs(7));
    // The header wins over the default, also when it is longer.
    let (ctx, before, after) = deadline_of(&layer, Some("2M")).await;
    assert_deadline(ctx.deadline(), before, after, Duration::from_secs(120));
}

#[tokio::test]
async fn max_timeout_caps_the_header_and_the_default_and_bounds_the_rest() {
    let layer = ContextLayer::new(Context::background()).max_timeout(Duration::from_secs(3));
    let (ctx, before, after) = deadline_of(&layer, Some("99999999H")).await;
    assert_deadline(ctx.deadline(), before, after, Duration::from_secs(3));
    // Below the cap the header is kept.
    let (ctx, before, after) = deadline_of(&layer, Some("1500m")).await;
    assert_deadline(ctx.deadline(), before, after, Duration::from_millis(1500));
    // No header and no default: the cap is the deadline (a client cannot
    // hold a request open longer than it).
    let (ctx, before, after) = deadline_of(&layer, None).await;
    assert_deadline(ctx.deadline(), before, after, Duration::from_secs(3));

    let layer = layer.default_timeout(Duration::from_secs(60));
    let (ctx, before, after) = deadline_of(&layer, None).await;
    assert_deadline(ctx.deadline(), before, after, Duration::from_secs(3));
}

#[tokio::test]
async fn zero_timeout_gives_an_expired_context() {
    let (slot, calls) = fresh();
    let svc = ContextLayer::new(Context::background()).layer(handler(&slot, &calls, wait_done));
    let res = svc.oneshot(request(Some("0n"))).await.unwrap();
    // Born expired: answered 504 without calling the handler.
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(res.body(), "");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn malformed_header_is_rejected_without_calling_the_inner_service() {
    for bad in ["1s", "", "-1S", "100000000n", "1.5S", " 1S", "m", "abc"] {
        let (slot, calls) = fresh();
        let svc = ContextLayer::new(Context::background())
            .default_timeout(Duration::from_secs(1))
            .layer(handler(&slot, &calls, ok));
        let res = svc.oneshot(request(Some(bad))).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        assert!(res.headers().get(CONTENT_TYPE).is_none());
        assert_eq!(res.body(), ""); // any body type with `Default`
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "{bad:?} reached the handler"
        );
        assert!(slot.lock().unwrap().is_none());
    }
}

#[tokio::test]
async fn ignore_policy_treats_a_malformed_header_as_absent() {
    let layer =
        ContextLayer::new(Context::background()).on_invalid_timeout(InvalidTimeoutPolicy::Ignore);
    let (ctx, _, _) = deadline_of(&layer, Some("1s")).await;
    assert_eq!(ctx.deadline(), None);

    let layer = layer.default_timeout(Duration::from_secs(9));
    let (ctx, before, after) = deadline_of(&layer, Some("12345678901S")).await;
    assert_deadline(ctx.deadline(), before, after, Duration::from_secs(9));
}

#[tokio::test]
async fn context_is_canceled_when_the_response_is_ready() {
    let layer = ContextLayer::new(Context::background()).default_timeout(Duration::from_secs(60));
    let (ctx, _, _) = deadline_of(&layer, None).await;
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(
        ctx.cause().unwrap().as_context_error(),
        Some(Error::Canceled)
    );

    // Also when the inner service fails.
    let slot: Slot = Arc::default();
    let s = slot.clone();
    let svc = layer.layer(service_fn(move |req: Request<String>| {
        *s.lock().unwrap() = request_context(&req).cloned();
        async { Err::<Response<String>, _>(std::io::Error::other("backend down")) }
    }));
    let err = svc.oneshot(request(None)).await.unwrap_err();
    assert_eq!(err.to_string(), "backend down");
    let ctx = stashed(&slot);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert!(ctx
        .cause()
        .unwrap()
        .downcast_ref::<RequestAborted>()
        .is_none());
}

#[tokio::test]
async fn dropping_the_response_future_aborts_the_request() {
    let (slot, calls) = fresh();
    let svc = ContextLayer::new(Context::background()).layer(handler(&slot, &calls, |_| {
        pending::<Result<Response<String>, Infallible>>()
    }));
    let mut fut = Box::pin(svc.oneshot(request(Some("10S"))));
    assert!(futures::poll!(&mut fut).is_pending());
    let ctx = stashed(&slot);
    assert!(!ctx.is_done(), "live while the response is pending");

    drop(fut); // the client went away
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(
        ctx.origin().map(|o| o.kind()),
        Some(ctxtree::OriginKind::RequestAborted)
    );
    let cause = ctx.cause().unwrap();
    assert_eq!(
        cause.downcast_ref::<RequestAborted>(),
        Some(&RequestAborted)
    );
    assert_eq!(
        cause.to_string(),
        "request aborted before its response was ready"
    );
}

#[tokio::test]
async fn dropping_on_timeout_reaches_work_derived_from_the_request() {
    let (slot, calls) = fresh();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let svc = ContextLayer::new(Context::background()).layer(handler(&slot, &calls, move |ctx| {
        let tx = tx.clone();
        async move {
            // A subtask under the request; its handle lives in this future.
            let (sub, _sub_handle) = ctx.with_cancel();
            tokio::spawn(async move {
                sub.done().await;
                tx.send(sub.cause()).unwrap();
            });
            pending().await
        }
    }));
    let res = tokio::time::timeout(Duration::from_millis(20), svc.oneshot(request(None))).await;
    assert!(res.is_err(), "timed out, dropping the response future");
    let ctx = stashed(&slot);
    assert!(ctx
        .cause()
        .unwrap()
        .downcast_ref::<RequestAborted>()
        .is_some());
    // The request was aborted before the handler's own handles were dropped.
    let sub_cause = rx.recv().await.unwrap().unwrap();
    assert!(sub_cause.downcast_ref::<RequestAborted>().is_some());
}

#[tokio::test]
async fn canceling_the_root_cancels_in_flight_requests() {
    let (root, shutdown) = Context::background().with_cancel();
    let (slot, calls) = fresh();
    let svc = ContextLayer::new(root.clone()).layer(handler(&slot, &calls, |ctx| async move {
        let err = ctx.done().await;
        Ok(Response::new(format!("{err}: {}", ctx.cause().unwrap())))
    }));
    let mut fut = Box::pin(svc.oneshot(request(Some("1H"))));
    assert!(futures::poll!(&mut fut).is_pending());
    let ctx = stashed(&slot);
    assert!(!ctx.is_done());

    shutdown.cancel_with_cause(Cause::msg("shutting down"));
    assert!(ctx.is_done(), "canceled synchronously with the root");
    let res = fut.await.unwrap();
    assert_eq!(res.body(), "context canceled: shutting down");

    // A request arriving after shutdown is refused with 503, unhandled.
    let (slot, calls) = fresh();
    let svc = ContextLayer::new(root).layer(handler(&slot, &calls, wait_done));
    let res = svc.oneshot(request(None)).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn set_grpc_timeout_round_trips_through_the_layer() {
    let (client, _cancel) = Context::background().with_timeout(Duration::from_secs(2));
    let mut req = request(None);
    set_grpc_timeout(&client, req.headers_mut()).unwrap();
    let sent = parse_grpc_timeout(&req.headers()[GRPC_TIMEOUT]).unwrap();
    assert!(sent <= Duration::from_secs(2) + Duration::from_micros(1));
    assert!(sent > Duration::from_millis(1900));

    let (slot, calls) = fresh();
    let svc = ContextLayer::new(Context::background()).layer(handler(&slot, &calls, ok));
    svc.oneshot(req).await.unwrap();
    let server = stashed(&slot).deadline().unwrap();
    let client = client.deadline().unwrap();
    // Rounded up on the wire and started later: never earlier than the client's.
    assert!(
        server >= client,
        "server deadline {:?} early",
        client - server
    );
    assert!(server <= client + Duration::from_millis(100));
}

#[tokio::test]
async fn works_as_an_axum_layer() {
    use axum::{body::Body, routing::get, Extension, Router};
    use http_body_util::BodyExt;

    let app = Router::new()
        .route(
            "/",
            get(|Extension(ctx): Extension<Context>| async move {
                format!("deadline: {}", ctx.deadline().is_some())
            }),
        )
        .layer(ContextLayer::new(Context::background()));
    let req = Request::builder()
        .uri("/")
        .header("grpc-timeout", "5S")
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"deadline: true");

    let req = Request::builder()
        .uri("/")
        .header("grpc-timeout", "5 S")
        .body(Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty());
}

/// Sets its flag when dropped: tells whether the layer dropped a handler's future.
struct DropFlag(Arc<std::sync::atomic::AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn grpc_request(grpc_timeout: Option<&'static str>) -> Request<String> {
    let mut req = request(grpc_timeout);
    req.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/grpc+proto"),
    );
    req
}

#[track_caller]
fn assert_grpc_status<B>(res: &Response<B>, code: &str) {
    assert_eq!(res.status(), StatusCode::OK, "trailers-only: HTTP 200");
    assert_eq!(res.headers()[CONTENT_TYPE], "application/grpc");
    assert_eq!(res.headers()["grpc-status"], code);
    assert!(res.headers().contains_key("grpc-message"));
}

#[tokio::test]
async fn replies_to_grpc_requests_with_grpc_statuses() {
    // Malformed budget: INVALID_ARGUMENT, handler not called.
    let (slot, calls) = fresh();
    let plain = ContextLayer::new(Context::background());
    let res = plain
        .layer(handler(&slot, &calls, ok))
        .oneshot(grpc_request(Some("1s")))
        .await
        .unwrap();
    assert_grpc_status(&res, "3");
    assert_eq!(
        res.headers()["grpc-message"],
        "malformed grpc-timeout header: expected 1 to 8 digits followed by one of H, M, S, m, u, n"
    );
    // Below the minimum, or born expired: DEADLINE_EXCEEDED, not called.
    let layer = ContextLayer::new(Context::background()).min_timeout(Duration::from_millis(5));
    for budget in ["4m", "0n"] {
        let res = layer
            .layer(handler(&slot, &calls, ok))
            .oneshot(grpc_request(Some(budget)))
            .await
            .unwrap();
        assert_grpc_status(&res, "4");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // Enough budget: served.
    let res = layer
        .layer(handler(&slot, &calls, ok))
        .oneshot(grpc_request(Some("5m")))
        .await
        .unwrap();
    assert_eq!(res.body(), "ok");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn deadline_before_the_handler_answers_gets_504_and_drops_the_handler() {
    for grpc in [false, true] {
        let (slot, calls) = fresh();
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = dropped.clone();
        let svc =
            ContextLayer::new(Context::background()).layer(handler(&slot, &calls, move |_ctx| {
                let guard = DropFlag(flag.clone());
                async move {
                    let _guard = guard;
                    pending::<Result<Response<String>, Infallible>>().await
                }
            }));
        let req = if grpc {
            grpc_request(Some("20m"))
        } else {
            request(Some("20m"))
        };
        let started = Instant::now();
        let res = svc.oneshot(req).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(20));
        if grpc {
            assert_grpc_status(&res, "4");
        } else {
            assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
        }
        assert!(
            dropped.load(Ordering::SeqCst),
            "the handler's future was dropped"
        );
        assert_eq!(stashed(&slot).err(), Some(Error::DeadlineExceeded));
    }
}

#[tokio::test]
async fn shutdown_before_the_handler_answers_gets_503() {
    for grpc in [false, true] {
        let (root, shutdown) = Context::background().with_cancel();
        let (slot, calls) = fresh();
        let layer = ContextLayer::new(root);
        let stuck = |_| pending::<Result<Response<String>, Infallible>>();
        let req = || {
            if grpc {
                grpc_request(None)
            } else {
                request(None)
            }
        };
        let check = |res: &Response<String>| {
            if grpc {
                assert_grpc_status(res, "14");
            } else {
                assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
            }
        };
        let mut fut = Box::pin(layer.layer(handler(&slot, &calls, stuck)).oneshot(req()));
        assert!(futures::poll!(&mut fut).is_pending());
        shutdown.cancel();
        check(&fut.await.unwrap());
        // After shutdown, refused before the handler.
        let res = layer
            .layer(handler(&slot, &calls, stuck))
            .oneshot(req())
            .await
            .unwrap();
        check(&res);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}

#[tokio::test]
async fn handler_grace_lets_a_draining_handler_answer_and_none_never_preempts() {
    let (slot, calls) = fresh();
    let drains = |ctx: Context| async move {
        let err = ctx.done().await;
        tokio::time::sleep(Duration::from_millis(30)).await; // subtasks report
        Ok::<_, Infallible>(Response::new(format!("drained after {err}")))
    };
    let svc = ContextLayer::new(Context::background())
        .handler_grace(Some(Duration::from_millis(500)))
        .layer(handler(&slot, &calls, drains));
    let res = svc.oneshot(request(Some("10m"))).await.unwrap();
    assert_eq!(res.body(), "drained after context deadline exceeded");

    // A grace too short: the layer answers.
    let svc = ContextLayer::new(Context::background())
        .handler_grace(Some(Duration::from_millis(5)))
        .layer(handler(&slot, &calls, drains));
    let res = svc.oneshot(request(Some("10m"))).await.unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);

    // None: the handler always answers, however late.
    let svc = ContextLayer::new(Context::background())
        .handler_grace(None)
        .layer(handler(&slot, &calls, |ctx: Context| async move {
            ctx.done().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, Infallible>(Response::new(String::from("late")))
        }));
    let res = svc.oneshot(request(Some("1m"))).await.unwrap();
    assert_eq!(res.body(), "late");
}

#[tokio::test]
async fn budget_codecs_smallest_wins_and_envoy_zero_means_none() {
    use ctxtree::tower::{ConnectTimeout, EnvoyExpectedTimeout, EnvoyUpstreamTimeout};

    let layer = ContextLayer::new(Context::background())
        .budget_codec(ConnectTimeout)
        .budget_codec(EnvoyExpectedTimeout)
        .budget_codec(EnvoyUpstreamTimeout);
    let remaining = |headers: &'static [(&'static str, &'static str)]| {
        let layer = layer.clone();
        async move {
            let (slot, calls) = fresh();
            let svc = layer.layer(handler(&slot, &calls, ok));
            let mut req = request(None);
            for (name, value) in headers {
                req.headers_mut()
                    .insert(*name, HeaderValue::from_static(value));
            }
            let status = svc.oneshot(req).await.unwrap().status();
            let deadline = slot.lock().unwrap().clone().map(|c| c.deadline());
            (status, deadline)
        }
    };
    let (status, deadline) =
        remaining(&[("connect-timeout-ms", "300"), ("grpc-timeout", "1S")]).await;
    assert_eq!(status, StatusCode::OK);
    let left = deadline.unwrap().unwrap() - Instant::now();
    assert!(left <= Duration::from_millis(300), "{left:?}");

    let (_, deadline) = remaining(&[
        ("x-envoy-expected-rq-timeout-ms", "2000"),
        ("x-envoy-upstream-rq-timeout-ms", "150"),
    ])
    .await;
    let left = deadline.unwrap().unwrap() - Instant::now();
    assert!(left <= Duration::from_millis(150), "{left:?}");

    let (_, deadline) = remaining(&[("x-envoy-expected-rq-timeout-ms", "0")]).await;
    assert_eq!(deadline, Some(None), "0: no timeout");

    let (status, deadline) = remaining(&[("connect-timeout-ms", "3 s")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(deadline, None, "not called");
}

#[tokio::test]
async fn until_body_end_keeps_the_context_while_the_body_streams() {
    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};

    type Chunks = futures::channel::mpsc::UnboundedReceiver<Result<Frame<Bytes>, Infallible>>;

    for read_to_end in [true, false] {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let rx = Arc::new(Mutex::new(Some(rx)));
        let slot: Slot = Arc::default();
        let s = slot.clone();
        let svc = ContextLayer::new(Context::background())
            .until_body_end()
            .layer(service_fn(move |req: Request<String>| {
                *s.lock().unwrap() = request_context(&req).cloned();
                let chunks: Chunks = rx.lock().unwrap().take().unwrap();
                // Any body with `Default`: boxed, as axum's and tonic's are.
                let body = StreamBody::new(chunks).boxed_unsync();
                async move { Ok::<_, Infallible>(Response::new(body)) }
            }));
        let res = svc.oneshot(request(Some("10S"))).await.unwrap();
        let ctx = stashed(&slot);
        assert!(!ctx.is_done(), "alive after the head");
        tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"part"))))
            .unwrap();
        let mut body = res.into_body();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "part");
        assert!(!ctx.is_done(), "alive while streaming");
        if read_to_end {
            drop(tx);
            assert!(body.frame().await.is_none());
            assert_eq!(ctx.err(), Some(Error::Canceled));
            let cause = ctx.cause().unwrap();
            assert!(cause.downcast_ref::<RequestAborted>().is_none());
        } else {
            drop(body); // the client went away mid-stream
            let cause = ctx.cause().unwrap();
            assert!(cause.downcast_ref::<RequestAborted>().is_some());
        }
    }
}

#[tokio::test]
async fn a_handler_s_outgoing_calls_carry_its_budget_without_passing_it() {
    use ctxtree::tower::{BudgetLayer, ConnectTimeout};

    // The downstream service: reports the budget it was sent.
    let downstream = service_fn(|req: Request<()>| async move {
        let sent = req
            .headers()
            .get("connect-timeout-ms")
            .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        Ok::<_, Infallible>(Response::new(sent))
    });
    let client = BudgetLayer::new().codec(ConnectTimeout).layer(downstream);
    let svc =
        ContextLayer::new(Context::background()).layer(service_fn(move |_req: Request<String>| {
            let client = client.clone();
            async move {
                // Deep inside the handler: no context in sight.
                let res = client.oneshot(Request::new(())).await.unwrap();
                Ok::<_, Infallible>(Response::new(format!("{:?}", res.into_body())))
            }
        }));
    let res = svc.oneshot(request(Some("250m"))).await.unwrap();
    let sent: u64 = res
        .body()
        .trim_start_matches("Some(")
        .trim_end_matches(')')
        .parse()
        .unwrap();
    assert!(sent <= 250 && sent > 150, "{sent} ms of 250");
}

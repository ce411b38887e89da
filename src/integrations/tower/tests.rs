//! Unit tests of the server layer (`grpc-timeout` parsing, replies,
//! policies) and of the client layer's answers (K4, K5).

use std::time::Duration;

use ::http::header::CONTENT_TYPE;
use ::http::{HeaderValue, Response, StatusCode};

use super::budget::{BudgetCodec, GrpcTimeout};
use super::grpc_timeout::{encode_grpc_timeout, parse_grpc_timeout, InvalidGrpcTimeout};
use super::reply::{percent_encode, Reply};

fn parse(s: &str) -> Result<Duration, InvalidGrpcTimeout> {
    parse_grpc_timeout(&HeaderValue::from_str(s).unwrap())
}

#[test]
fn parses_valid_values() {
    let cases: &[(&str, Duration)] = &[
        ("0n", Duration::ZERO),
        ("1n", Duration::from_nanos(1)),
        ("7u", Duration::from_micros(7)),
        ("50m", Duration::from_millis(50)),
        ("1S", Duration::from_secs(1)),
        ("2M", Duration::from_secs(120)),
        ("3H", Duration::from_secs(3 * 3600)),
        ("00000001S", Duration::from_secs(1)),
        ("99999999n", Duration::from_nanos(99_999_999)),
        ("99999999H", Duration::from_secs(99_999_999 * 3600)),
        ("99999999M", Duration::from_secs(99_999_999 * 60)),
    ];
    for (s, want) in cases {
        assert_eq!(parse(s), Ok(*want), "{s:?}");
    }
}

#[test]
fn rejects_invalid_values() {
    let cases = [
        "",
        "1",
        "12",
        "m",
        "S",
        "-1S",
        "+1S",
        " 1S",
        "1S ",
        "1 S",
        "1s",
        "1h",
        "1U",
        "1N",
        "1.5S",
        "1e3m",
        "100000000n",
        "999999999H",
        "1SS",
        "1mS",
        "0x1S",
        "１S",
    ];
    for s in cases {
        let Ok(value) = HeaderValue::from_bytes(s.as_bytes()) else {
            continue;
        };
        assert!(parse_grpc_timeout(&value).is_err(), "{s:?} parsed");
    }
    // Non-UTF-8 and high bytes: no panic, rejected.
    for bytes in [&b"1\xffS"[..], b"\xff", b"1\x80"] {
        let value = HeaderValue::from_bytes(bytes).unwrap();
        assert!(parse_grpc_timeout(&value).is_err());
    }
}

#[test]
fn error_message_and_replies() {
    let err = parse("1s").unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed grpc-timeout header: expected 1 to 8 digits followed by one of H, M, S, m, u, n"
    );
    let budget_err = GrpcTimeout
        .decode(&HeaderValue::from_static("1s"))
        .unwrap_err();
    assert_eq!(budget_err.to_string(), err.to_string());

    let res: Response<String> = Reply::InvalidArgument(err.to_string()).into_response(false);
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.body(), "");
    let res: Response<String> = Reply::DeadlineExceeded.into_response(false);
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    let res: Response<String> = Reply::Unavailable.into_response(false);
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);

    let res: Response<String> = Reply::InvalidArgument(err.to_string()).into_response(true);
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[CONTENT_TYPE], "application/grpc");
    assert_eq!(res.headers()["grpc-status"], "3");
    assert_eq!(res.headers()["grpc-message"], err.to_string().as_str());
    let res: Response<String> = Reply::DeadlineExceeded.into_response(true);
    assert_eq!(res.headers()["grpc-status"], "4");
    let res: Response<String> = Reply::Unavailable.into_response(true);
    assert_eq!(res.headers()["grpc-status"], "14");
}

#[test]
fn grpc_message_is_percent_encoded() {
    assert_eq!(percent_encode("plain text: ok"), "plain text: ok");
    assert_eq!(percent_encode("100% ü\n"), "100%25 %C3%BC%0A");
}

#[test]
fn encodes_in_the_finest_unit_that_fits() {
    let cases: &[(Duration, &str)] = &[
        (Duration::ZERO, "0n"),
        (Duration::from_nanos(1), "1n"),
        (Duration::from_nanos(99_999_999), "99999999n"),
        (Duration::from_nanos(100_000_000), "100000u"),
        (Duration::from_nanos(100_000_001), "100001u"),
        (Duration::from_millis(50), "50000000n"),
        (Duration::from_secs(1), "1000000u"),
        (Duration::from_secs(100), "100000m"),
        (Duration::from_secs(100_000), "100000S"),
        (Duration::from_secs(100_000_000), "1666667M"),
        (Duration::from_secs(99_999_999 * 60 + 1), "1666667H"),
        (Duration::from_secs(99_999_999 * 3600), "99999999H"),
        (Duration::from_secs(99_999_999 * 3600 + 1), "99999999H"),
        (Duration::MAX, "99999999H"),
    ];
    for (d, want) in cases {
        assert_eq!(encode_grpc_timeout(*d), *want, "{d:?}");
    }
}

#[test]
fn round_trip_is_never_shorter_and_within_one_unit() {
    let unit_of = |v: &HeaderValue| match v.as_bytes().last() {
        Some(b'n') => Duration::from_nanos(1),
        Some(b'u') => Duration::from_micros(1),
        Some(b'm') => Duration::from_millis(1),
        Some(b'S') => Duration::from_secs(1),
        Some(b'M') => Duration::from_secs(60),
        Some(b'H') => Duration::from_secs(3600),
        _ => unreachable!(),
    };
    let mut nanos: u64 = 0;
    let mut samples = vec![];
    // Powers of 10 and their neighbours, and a pseudo-random walk.
    for exp in 0..19u32 {
        let p = 10u64.pow(exp);
        samples.extend([p - 1, p, p + 1, p.saturating_mul(7) / 3]);
    }
    for _ in 0..if cfg!(miri) { 200 } else { 10_000 } {
        nanos = nanos
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        samples.push(nanos >> (nanos % 64));
    }
    for n in samples {
        let d = Duration::from_nanos(n);
        let v = encode_grpc_timeout(d);
        let back = parse_grpc_timeout(&v).unwrap();
        assert!(back >= d, "{d:?} -> {v:?} -> {back:?}");
        assert!(back - d < unit_of(&v), "{d:?} -> {v:?} -> {back:?}");
    }
}

/// K4: an inner call that fails after the deadline passed (a transport's
/// own timer, say) ends with the context's error, even before the
/// context's timer has fired; a failure before the deadline is passed on.
#[test]
fn a_failure_after_the_deadline_is_the_contexts_end() {
    use super::{AsGrpcStatus, BudgetLayer};
    use crate::Context;
    use ::tower::{service_fn, Layer, ServiceExt};

    let failing = |wait: Duration| {
        let client = BudgetLayer::new().on_ended(AsGrpcStatus).layer(service_fn(
            move |_req: ::http::Request<()>| async move {
                std::thread::sleep(wait); // blocks the poll: no timer can run
                Err::<Response<String>, _>(std::io::Error::other("transport timeout"))
            },
        ));
        let mut req = ::http::Request::new(());
        req.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        client.oneshot(req)
    };
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(20));
    let res = futures::executor::block_on(ctx.scope(failing(Duration::from_millis(30))));
    assert_eq!(res.unwrap().headers()["grpc-status"], "4");

    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(60));
    let err = futures::executor::block_on(ctx.scope(failing(Duration::ZERO))).unwrap_err();
    assert_eq!(err.to_string(), "transport timeout");
}

/// K5: a gRPC failure in trailers-only form (a server's own timer:
/// CANCELLED `Timeout expired`) that arrives after the deadline passed is
/// answered as the context's end under `AsGrpcStatus`; a success, and any
/// response before the deadline, are passed on.
#[test]
fn a_grpc_failure_after_the_deadline_is_the_contexts_end() {
    use super::{AsGrpcStatus, BudgetLayer, OnEnded};
    use crate::Context;
    use ::tower::{service_fn, Layer, ServiceExt};

    let answering = |wait: Duration, status: &'static str| {
        let client = BudgetLayer::new().on_ended(AsGrpcStatus).layer(service_fn(
            move |_req: ::http::Request<()>| async move {
                std::thread::sleep(wait); // blocks the poll: no timer can run
                let mut res = Response::new(String::new());
                res.headers_mut()
                    .insert("grpc-status", HeaderValue::from_static(status));
                Ok::<_, std::io::Error>(res)
            },
        ));
        let mut req = ::http::Request::new(());
        req.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        client.oneshot(req)
    };
    let status = |wait, timeout, status| {
        let (ctx, _cancel) = Context::background().with_timeout(timeout);
        let res = futures::executor::block_on(ctx.scope(answering(wait, status))).unwrap();
        res.headers()["grpc-status"].to_str().unwrap().to_owned()
    };
    let (short, long) = (Duration::from_millis(20), Duration::from_secs(60));
    // (Under a slow interpreter the deadline may pass before the call: then
    // K1 answers "4" without calling, the same answer.)
    assert_eq!(status(Duration::from_millis(30), short, "1"), "4");
    assert_eq!(status(Duration::ZERO, long, "1"), "1");
    // A success passes even after the deadline: the policy itself, with no
    // clock in the way.
    let mut ok = Response::new(String::new());
    ok.headers_mut()
        .insert("grpc-status", HeaderValue::from_static("0"));
    let passed = AsGrpcStatus
        .answered(ok, crate::Error::DeadlineExceeded, true)
        .unwrap();
    assert_eq!(passed.headers()["grpc-status"], "0");
}

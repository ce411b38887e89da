//! The budget codecs on random input (B1-B3 in src/integrations/budget.rs):
//! no bytes make `decode` panic, every duration encodes to a value that
//! decodes back no shorter and within one unit of precision.

use std::time::{Duration, Instant};

use ctxtree::tower::{
    encode_grpc_timeout, parse_grpc_timeout, set_grpc_timeout, BudgetCodec, ConnectTimeout,
    EnvoyExpectedTimeout, EnvoyUpstreamTimeout, GrpcTimeout, GRPC_TIMEOUT,
};
use ctxtree::{Context, Error};
use http::{HeaderMap, HeaderValue};

/// A small deterministic generator (PCG-style LCG), so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 ^ (self.0 >> 29)
    }
}

fn codecs() -> Vec<(Box<dyn BudgetCodec>, Duration, Duration)> {
    // (codec, largest value it can encode exactly, precision)
    let ms = Duration::from_millis(1);
    vec![
        (
            Box::new(GrpcTimeout),
            Duration::from_secs(99_999_999 * 3600),
            Duration::ZERO, // unit-dependent: checked separately
        ),
        (
            Box::new(ConnectTimeout),
            Duration::from_millis(9_999_999_999),
            ms,
        ),
        (
            Box::new(EnvoyExpectedTimeout),
            Duration::from_millis(u64::MAX),
            ms,
        ),
        (
            Box::new(EnvoyUpstreamTimeout),
            Duration::from_millis(u64::MAX),
            ms,
        ),
    ]
}

fn grpc_unit(v: &HeaderValue) -> Duration {
    match v.as_bytes().last() {
        Some(b'n') => Duration::from_nanos(1),
        Some(b'u') => Duration::from_micros(1),
        Some(b'm') => Duration::from_millis(1),
        Some(b'S') => Duration::from_secs(1),
        Some(b'M') => Duration::from_secs(60),
        Some(b'H') => Duration::from_secs(3600),
        _ => panic!("not a grpc-timeout: {v:?}"),
    }
}

#[test]
fn random_bytes_never_panic() {
    const ALPHABET: &[u8] = b"0123456789HMSmun +-.e\x7f\xff\x80 9";
    let mut rng = Rng(7);
    for i in 0..50_000 {
        let len = (rng.next() % 24) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                let r = rng.next();
                if i % 2 == 0 {
                    ALPHABET[(r % ALPHABET.len() as u64) as usize]
                } else {
                    r as u8
                }
            })
            .collect();
        let Ok(value) = HeaderValue::from_bytes(&bytes) else {
            continue;
        };
        for (codec, _, _) in codecs() {
            let _ = codec.decode(&value); // B1: Ok or Err, no panic
        }
    }
}

#[test]
fn strict_parsing() {
    for bad in ["", " 1", "1 ", "+1", "-1", "1.5", "1e3", "0x10", "１"] {
        let Ok(value) = HeaderValue::from_str(bad) else {
            continue;
        };
        for (codec, _, _) in codecs() {
            let err = codec.decode(&value).unwrap_err();
            assert_eq!(err.header(), &codec.header_name(), "{bad:?}");
            assert!(err.to_string().starts_with("malformed "), "{err}");
        }
    }
    let digits = HeaderValue::from_static("12");
    assert!(GrpcTimeout.decode(&digits).is_err()); // no unit
    assert_eq!(
        ConnectTimeout.decode(&digits),
        Ok(Some(Duration::from_millis(12)))
    );
    let eleven = HeaderValue::from_static("10000000000");
    assert!(ConnectTimeout.decode(&eleven).is_err());
    assert_eq!(
        EnvoyUpstreamTimeout.decode(&eleven),
        Ok(Some(Duration::from_millis(10_000_000_000)))
    );
    let zero = HeaderValue::from_static("0");
    assert_eq!(ConnectTimeout.decode(&zero), Ok(Some(Duration::ZERO)));
    assert_eq!(EnvoyExpectedTimeout.decode(&zero), Ok(None));
    assert_eq!(EnvoyUpstreamTimeout.decode(&zero), Ok(None));
}

#[test]
fn round_trip_within_precision() {
    let mut rng = Rng(21);
    let mut samples: Vec<Duration> = vec![Duration::ZERO, Duration::MAX];
    for exp in 0..20u32 {
        let p = 10u64.pow(exp);
        for n in [p - 1, p, p + 1] {
            samples.push(Duration::from_nanos(n));
            samples.push(Duration::from_millis(n));
        }
    }
    for _ in 0..20_000 {
        let r = rng.next();
        samples.push(Duration::new(
            r >> (r % 64),
            (rng.next() % 1_000_000_000) as u32,
        ));
    }
    for (codec, max, precision) in codecs() {
        for &d in &samples {
            let v = codec.encode(d); // B2: no panic
            let back = codec
                .decode(&v)
                .unwrap_or_else(|e| panic!("{:?}: {d:?} -> {v:?}: {e}", codec.header_name()))
                .expect("an encoded budget is never \"no budget\"");
            let name = codec.header_name();
            if d >= max {
                assert_eq!(back, max, "{name:?}: {d:?} -> {v:?} saturates");
                continue;
            }
            let precision = if precision.is_zero() {
                grpc_unit(&v)
            } else {
                precision
            };
            assert!(back >= d, "{name:?}: {d:?} -> {v:?} -> {back:?} is shorter");
            // A zero budget may come back as one unit (Envoy's `0` means none).
            let within = back - d < precision || (d.is_zero() && back == precision);
            assert!(within, "{name:?}: {d:?} -> {v:?} -> {back:?}");
        }
    }
}

#[test]
fn set_grpc_timeout_errors_and_no_deadline() {
    let mut headers = HeaderMap::new();
    assert_eq!(
        set_grpc_timeout(&Context::background(), &mut headers),
        Ok(())
    );
    assert!(headers.is_empty(), "no deadline: headers untouched");

    let (ctx, cancel) = Context::background().with_cancel();
    assert_eq!(set_grpc_timeout(&ctx, &mut headers), Ok(()));
    assert!(headers.is_empty());
    cancel.cancel();
    assert_eq!(set_grpc_timeout(&ctx, &mut headers), Err(Error::Canceled));
    assert!(headers.is_empty());

    let (expired, _h) = Context::background().with_timeout(Duration::ZERO);
    assert_eq!(
        set_grpc_timeout(&expired, &mut headers),
        Err(Error::DeadlineExceeded)
    );
    let (expired, _h) =
        Context::background().with_deadline(Instant::now() - Duration::from_millis(1));
    assert_eq!(
        set_grpc_timeout(&expired, &mut headers),
        Err(Error::DeadlineExceeded)
    );
    assert!(headers.is_empty());

    // A stale value is replaced, not appended.
    headers.insert(GRPC_TIMEOUT, encode_grpc_timeout(Duration::from_secs(99)));
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(10));
    set_grpc_timeout(&ctx, &mut headers).unwrap();
    assert_eq!(headers.get_all(GRPC_TIMEOUT).iter().count(), 1);
    assert!(parse_grpc_timeout(&headers[GRPC_TIMEOUT]).unwrap() <= Duration::from_millis(10));
}

//! The `grpc-timeout` header: parsing, encoding, writing a context's
//! remaining budget.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use ::http::{HeaderMap, HeaderName, HeaderValue};

use crate::{Context, Error};

/// The `grpc-timeout` header name.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// headers.insert(ctxtree::tower::GRPC_TIMEOUT, http::HeaderValue::from_static("5S"));
/// assert_eq!(headers["grpc-timeout"], "5S");
/// ```
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The largest `TimeoutValue` the wire format allows: at most 8 digits.
pub(super) const MAX_VALUE: u64 = 99_999_999;

/// The format of `grpc-timeout`, as the messages of [`InvalidGrpcTimeout`]
/// and [`InvalidBudget`] state it.
macro_rules! grpc_timeout_format {
    () => {
        "1 to 8 digits followed by one of H, M, S, m, u, n"
    };
}

pub(crate) const GRPC_TIMEOUT_FORMAT: &str = grpc_timeout_format!();

/// The message of [`InvalidGrpcTimeout`] (and of the layer's gRPC reply).
macro_rules! malformed_message {
    () => {
        concat!(
            "malformed grpc-timeout header: expected ",
            grpc_timeout_format!()
        )
    };
}

/// A `grpc-timeout` value that does not follow the gRPC wire format: 1 to 8
/// ASCII digits followed by exactly one unit, `H`, `M`, `S`, `m`, `u` or `n`.
///
/// ```
/// use http::HeaderValue;
/// use ctxtree::tower::parse_grpc_timeout;
///
/// let err = parse_grpc_timeout(&HeaderValue::from_static("1.5S")).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "malformed grpc-timeout header: expected 1 to 8 digits followed by one of H, M, S, m, u, n",
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidGrpcTimeout {
    pub(super) _private: (),
}

impl fmt::Display for InvalidGrpcTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(malformed_message!())
    }
}

impl StdError for InvalidGrpcTimeout {}

/// Parses a `grpc-timeout` header value (gRPC over HTTP/2: `TimeoutValue`,
/// 1 to 8 ASCII digits, then `TimeoutUnit`: `H`our, `M`inute, `S`econd,
/// `m`illisecond, `u` microsecond or `n`anosecond).
///
/// Strict: no sign, whitespace, fraction or lower-case `s`. Never panics; the
/// largest value, `99999999H`, is about 11,400 years.
///
/// ```
/// use std::time::Duration;
/// use http::HeaderValue;
/// use ctxtree::tower::parse_grpc_timeout;
///
/// assert_eq!(parse_grpc_timeout(&HeaderValue::from_static("50m")), Ok(Duration::from_millis(50)));
/// assert_eq!(parse_grpc_timeout(&HeaderValue::from_static("2M")), Ok(Duration::from_secs(120)));
/// assert!(parse_grpc_timeout(&HeaderValue::from_static("100000000n")).is_err()); // 9 digits
/// assert!(parse_grpc_timeout(&HeaderValue::from_static("1s")).is_err());
/// ```
pub fn parse_grpc_timeout(value: &HeaderValue) -> Result<Duration, InvalidGrpcTimeout> {
    let invalid = InvalidGrpcTimeout { _private: () };
    let (unit, digits) = match value.as_bytes().split_last() {
        Some(split) => split,
        None => return Err(invalid),
    };
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid);
    }
    // At most 8 digits: no overflow in u64.
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Ok(match unit {
        b'H' => Duration::from_secs(n.saturating_mul(3600)),
        b'M' => Duration::from_secs(n.saturating_mul(60)),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return Err(invalid),
    })
}

/// Encodes `timeout` as a `grpc-timeout` value, in the finest unit
/// (`n`, `u`, `m`, `S`, `M`, `H`) whose value fits in 8 digits.
///
/// Rounds up, so the receiver's deadline is never earlier than the sender's;
/// the result is at most one unit longer than `timeout`. Timeouts beyond
/// `99999999H` are clamped to it; zero is `0n`.
///
/// ```
/// use std::time::Duration;
/// use ctxtree::tower::encode_grpc_timeout;
///
/// assert_eq!(encode_grpc_timeout(Duration::from_millis(50)), "50000000n");
/// assert_eq!(encode_grpc_timeout(Duration::from_secs(30)), "30000000u");
/// assert_eq!(encode_grpc_timeout(Duration::from_nanos(100_000_001)), "100001u"); // rounded up
/// assert_eq!(encode_grpc_timeout(Duration::ZERO), "0n");
/// assert_eq!(encode_grpc_timeout(Duration::MAX), "99999999H");
/// ```
pub fn encode_grpc_timeout(timeout: Duration) -> HeaderValue {
    const UNITS: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    let nanos = timeout.as_nanos();
    let (value, unit) = UNITS
        .iter()
        .map(|&(per, unit)| (nanos.div_ceil(per), unit))
        .find(|&(value, _)| value <= u128::from(MAX_VALUE))
        .unwrap_or((u128::from(MAX_VALUE), 'H'));
    HeaderValue::try_from(format!("{value}{unit}"))
        .expect("digits and an ASCII letter are a valid header value")
}

/// Writes `ctx`'s remaining time into `headers` as `grpc-timeout`, for an
/// outgoing request (Go's gRPC client does the same).
///
/// Returns `ctx`'s [`Error`] if it is done, and [`Error::DeadlineExceeded`]
/// if its deadline has passed; leaves `headers` untouched then, and when
/// `ctx` has no deadline.
///
/// ```
/// use std::time::Duration;
/// use ctxtree::{tower::{parse_grpc_timeout, set_grpc_timeout, GRPC_TIMEOUT}, Context, Error};
///
/// let (ctx, cancel) = Context::background().with_timeout(Duration::from_secs(5));
/// let mut headers = http::HeaderMap::new();
/// set_grpc_timeout(&ctx, &mut headers)?;
/// let sent = parse_grpc_timeout(&headers[GRPC_TIMEOUT]).unwrap();
/// assert!(sent <= Duration::from_secs(5) && sent > Duration::from_secs(4));
///
/// cancel.cancel();
/// assert_eq!(set_grpc_timeout(&ctx, &mut headers), Err(Error::Canceled));
/// # Ok::<(), Error>(())
/// ```
///
/// # On tonic's `MetadataMap`
///
/// tonic's `MetadataMap` is a wrapper of an `http::HeaderMap` and implements
/// `AsMut<HeaderMap>` and `AsRef<HeaderMap>`, so this function (and every
/// [`BudgetCodec`](crate::tower::BudgetCodec)) works on a `tonic::Request`
/// as is: `set_grpc_timeout(&ctx, request.metadata_mut().as_mut())`. This
/// crate has no tonic dependency and adds no helper of its own: a helper
/// generic over both maps cannot be written without naming tonic's type
/// (`HeaderMap` does not implement `AsMut<HeaderMap>`), and a `tonic`
/// feature would tie the crate to one tonic release for a one-call idiom.
/// Prefer it to tonic's `Request::set_timeout(d)`, which rounds down (the
/// receiver's deadline can be earlier than the sender's) and panics beyond
/// `99999999H`; with [`BudgetLayer`](crate::tower::BudgetLayer) on the
/// channel you need neither.
///
/// ```
/// use std::time::Duration;
/// use ctxtree::{tower::{parse_grpc_timeout, set_grpc_timeout, BudgetCodec, GrpcTimeout, GRPC_TIMEOUT}, Context};
///
/// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(300));
/// let mut request = tonic::Request::new(());
/// set_grpc_timeout(&ctx, request.metadata_mut().as_mut()).unwrap(); // write
///
/// let headers: &http::HeaderMap = request.metadata().as_ref(); // read
/// let sent = parse_grpc_timeout(&headers[GRPC_TIMEOUT]).unwrap();
/// assert!(sent <= Duration::from_millis(300) && sent > Duration::from_millis(200));
/// // Any codec reads (and writes) it the same way:
/// assert_eq!(GrpcTimeout.decode(&headers[GrpcTimeout.header_name()]), Ok(Some(sent)));
/// ```
pub fn set_grpc_timeout(ctx: &Context, headers: &mut HeaderMap) -> Result<(), Error> {
    if let Some(err) = ctx.err() {
        return Err(err);
    }
    if let Some(remaining) = ctx.remaining() {
        let remaining = Some(remaining)
            .filter(|d| !d.is_zero())
            .ok_or(Error::DeadlineExceeded)?;
        headers.insert(GRPC_TIMEOUT, encode_grpc_timeout(remaining));
    }
    Ok(())
}

//! Budget codecs: how a request's remaining time travels in an HTTP header.
//!
//! A [`BudgetCodec`] names one header and converts between its value and a
//! [`Duration`]. The server layer decodes the caller's budget with it; the
//! client side encodes the remaining time of a context with it. Four
//! codecs ship: [`GrpcTimeout`] (`grpc-timeout`, gRPC over HTTP/2),
//! [`ConnectTimeout`] (`connect-timeout-ms`, the Connect protocol) and the
//! two Envoy headers, [`EnvoyExpectedTimeout`]
//! (`x-envoy-expected-rq-timeout-ms`, set by Envoy toward upstreams) and
//! [`EnvoyUpstreamTimeout`] (`x-envoy-upstream-rq-timeout-ms`, set by a
//! client for Envoy to enforce).
//!
//! Invariants, for every codec here (tests/budget_codecs.rs checks them on
//! random input):
//! - **B1** `decode` never panics: any bytes give `Ok` or an
//!   [`InvalidBudget`]. Parsing is strict: ASCII digits (and the unit, for
//!   `grpc-timeout`) only, no sign, space or fraction.
//! - **B2** `encode` never panics and rounds *up* to the codec's precision,
//!   saturating at the largest value the format allows, so
//!   `decode(encode(d))` is `Ok(Some(b))` with `d <= b < d + precision` for
//!   every `d` below that largest value.
//! - **B3** `decode` saturates instead of failing on values too large for a
//!   `Duration` where the format has no length limit (the Envoy headers).

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use ::http::{HeaderName, HeaderValue};

/// How a request's budget (its remaining time) is written in one HTTP
/// header. Implement it to carry budgets in a header of your own.
///
/// `decode` returns `Ok(None)` for a value that means "no budget" (Envoy's
/// `0`); the server layer treats it like an absent header.
///
/// ```
/// use std::time::Duration;
/// use http::{HeaderName, HeaderValue};
/// use ctxtree::tower::{BudgetCodec, InvalidBudget};
///
/// /// `x-budget-s: <whole seconds>`
/// struct Seconds;
///
/// impl BudgetCodec for Seconds {
///     fn header_name(&self) -> HeaderName {
///         HeaderName::from_static("x-budget-s")
///     }
///     fn decode(&self, value: &HeaderValue) -> Result<Option<Duration>, InvalidBudget> {
///         let secs: u64 = value.to_str().ok().and_then(|s| s.parse().ok())
///             .ok_or_else(|| InvalidBudget::new(self.header_name(), "whole seconds"))?;
///         Ok(Some(Duration::from_secs(secs)))
///     }
///     fn encode(&self, budget: Duration) -> HeaderValue {
///         let secs = budget.as_secs() + u64::from(budget.subsec_nanos() > 0); // round up
///         HeaderValue::from(secs)
///     }
/// }
///
/// assert_eq!(Seconds.encode(Duration::from_millis(1500)), "2");
/// assert_eq!(Seconds.decode(&HeaderValue::from_static("2")), Ok(Some(Duration::from_secs(2))));
/// assert!(Seconds.decode(&HeaderValue::from_static("soon")).is_err());
/// ```
pub trait BudgetCodec: Send + Sync + 'static {
    /// The header that carries the budget.
    fn header_name(&self) -> HeaderName;

    /// The budget in `value`: `Ok(None)` if the value means "no budget",
    /// `Err` if it is malformed. Must not panic.
    fn decode(&self, value: &HeaderValue) -> Result<Option<Duration>, InvalidBudget>;

    /// `budget` as a header value, rounded up to the format's precision and
    /// saturated at its largest value. Must not panic.
    fn encode(&self, budget: Duration) -> HeaderValue;
}

/// A budget header whose value does not follow its format.
///
/// ```
/// use http::HeaderValue;
/// use ctxtree::tower::{BudgetCodec, ConnectTimeout};
///
/// let err = ConnectTimeout.decode(&HeaderValue::from_static("1.5")).unwrap_err();
/// assert_eq!(err.header(), "connect-timeout-ms");
/// assert_eq!(
///     err.to_string(),
///     "malformed connect-timeout-ms header: expected 1 to 10 ASCII digits (milliseconds)",
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidBudget {
    header: HeaderName,
    expected: &'static str,
}

impl InvalidBudget {
    /// An error for `header`, whose values should be `expected` (a short
    /// description of the format, for the message).
    ///
    /// ```
    /// let err = ctxtree::tower::InvalidBudget::new(
    ///     http::HeaderName::from_static("x-budget"),
    ///     "whole seconds",
    /// );
    /// assert_eq!(err.to_string(), "malformed x-budget header: expected whole seconds");
    /// ```
    pub fn new(header: HeaderName, expected: &'static str) -> InvalidBudget {
        InvalidBudget { header, expected }
    }

    /// The header that was malformed.
    ///
    /// ```
    /// let err = ctxtree::tower::InvalidBudget::new(http::HeaderName::from_static("x-b"), "digits");
    /// assert_eq!(err.header(), "x-b");
    /// ```
    pub fn header(&self) -> &HeaderName {
        &self.header
    }
}

impl fmt::Display for InvalidBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed {} header: expected {}",
            self.header, self.expected
        )
    }
}

impl StdError for InvalidBudget {}

/// `grpc-timeout` (gRPC over HTTP/2): 1 to 8 ASCII digits and a unit, `H`,
/// `M`, `S`, `m`, `u` or `n`. Decodes with
/// [`parse_grpc_timeout`](crate::tower::parse_grpc_timeout) and encodes with
/// [`encode_grpc_timeout`](crate::tower::encode_grpc_timeout): the finest unit
/// that fits, rounded up; at most `99999999H`.
///
/// ```
/// use std::time::Duration;
/// use http::HeaderValue;
/// use ctxtree::tower::{BudgetCodec, GrpcTimeout};
///
/// assert_eq!(GrpcTimeout.header_name(), "grpc-timeout");
/// assert_eq!(GrpcTimeout.decode(&HeaderValue::from_static("50m")), Ok(Some(Duration::from_millis(50))));
/// assert_eq!(GrpcTimeout.encode(Duration::from_secs(2)), "2000000u");
/// assert!(GrpcTimeout.decode(&HeaderValue::from_static("50ms")).is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GrpcTimeout;

impl BudgetCodec for GrpcTimeout {
    fn header_name(&self) -> HeaderName {
        super::grpc_timeout::GRPC_TIMEOUT
    }

    fn decode(&self, value: &HeaderValue) -> Result<Option<Duration>, InvalidBudget> {
        super::grpc_timeout::parse_grpc_timeout(value)
            .map(Some)
            .map_err(|_| {
                InvalidBudget::new(self.header_name(), super::grpc_timeout::GRPC_TIMEOUT_FORMAT)
            })
    }

    fn encode(&self, budget: Duration) -> HeaderValue {
        super::grpc_timeout::encode_grpc_timeout(budget)
    }
}

/// `connect-timeout-ms` (the Connect protocol): 1 to 10 ASCII digits of
/// milliseconds. `0` is accepted as an expired budget (the specification
/// asks for a positive value; connect-go accepts it). Encodes rounded up to
/// a millisecond, at most `9999999999` (about 115 days).
///
/// ```
/// use std::time::Duration;
/// use http::HeaderValue;
/// use ctxtree::tower::{BudgetCodec, ConnectTimeout};
///
/// assert_eq!(ConnectTimeout.header_name(), "connect-timeout-ms");
/// assert_eq!(ConnectTimeout.decode(&HeaderValue::from_static("250")), Ok(Some(Duration::from_millis(250))));
/// assert_eq!(ConnectTimeout.encode(Duration::from_micros(1500)), "2"); // rounded up
/// assert!(ConnectTimeout.decode(&HeaderValue::from_static("12345678901")).is_err()); // 11 digits
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnectTimeout;

const CONNECT_MAX_MS: u64 = 9_999_999_999;

impl BudgetCodec for ConnectTimeout {
    fn header_name(&self) -> HeaderName {
        HeaderName::from_static("connect-timeout-ms")
    }

    fn decode(&self, value: &HeaderValue) -> Result<Option<Duration>, InvalidBudget> {
        let invalid =
            || InvalidBudget::new(self.header_name(), "1 to 10 ASCII digits (milliseconds)");
        let bytes = value.as_bytes();
        if bytes.len() > 10 {
            return Err(invalid());
        }
        parse_millis(bytes).map(Some).ok_or_else(invalid)
    }

    fn encode(&self, budget: Duration) -> HeaderValue {
        HeaderValue::from(ceil_millis(budget).min(CONNECT_MAX_MS))
    }
}

/// `x-envoy-expected-rq-timeout-ms`: the milliseconds Envoy's router
/// expects the request to take, set on requests toward upstreams so they
/// can give up early. ASCII digits; values too large saturate (B3); `0`
/// means no timeout (Envoy's convention), decoded as `None`. Encodes
/// rounded up to a millisecond, at least `1` (a zero budget would read as
/// "no timeout").
///
/// ```
/// use std::time::Duration;
/// use http::HeaderValue;
/// use ctxtree::tower::{BudgetCodec, EnvoyExpectedTimeout};
///
/// let codec = EnvoyExpectedTimeout;
/// assert_eq!(codec.header_name(), "x-envoy-expected-rq-timeout-ms");
/// assert_eq!(codec.decode(&HeaderValue::from_static("15000")), Ok(Some(Duration::from_secs(15))));
/// assert_eq!(codec.decode(&HeaderValue::from_static("0")), Ok(None)); // disabled
/// assert_eq!(codec.encode(Duration::ZERO), "1");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EnvoyExpectedTimeout;

impl BudgetCodec for EnvoyExpectedTimeout {
    fn header_name(&self) -> HeaderName {
        HeaderName::from_static("x-envoy-expected-rq-timeout-ms")
    }

    fn decode(&self, value: &HeaderValue) -> Result<Option<Duration>, InvalidBudget> {
        decode_envoy(self.header_name(), value)
    }

    fn encode(&self, budget: Duration) -> HeaderValue {
        encode_envoy(budget)
    }
}

/// `x-envoy-upstream-rq-timeout-ms`: the route timeout a client asks Envoy
/// to enforce, in milliseconds. The same format as
/// [`EnvoyExpectedTimeout`]: ASCII digits, saturating, `0` for no timeout
/// (`None`), encoded rounded up and at least `1`.
///
/// ```
/// use std::time::Duration;
/// use http::HeaderValue;
/// use ctxtree::tower::{BudgetCodec, EnvoyUpstreamTimeout};
///
/// let codec = EnvoyUpstreamTimeout;
/// assert_eq!(codec.header_name(), "x-envoy-upstream-rq-timeout-ms");
/// assert_eq!(codec.encode(Duration::from_nanos(1_000_001)), "2");
/// assert_eq!(codec.decode(&HeaderValue::from_static("99999999999999999999999")), Ok(Some(Duration::from_millis(u64::MAX))));
/// assert!(codec.decode(&HeaderValue::from_static("-1")).is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EnvoyUpstreamTimeout;

impl BudgetCodec for EnvoyUpstreamTimeout {
    fn header_name(&self) -> HeaderName {
        HeaderName::from_static("x-envoy-upstream-rq-timeout-ms")
    }

    fn decode(&self, value: &HeaderValue) -> Result<Option<Duration>, InvalidBudget> {
        decode_envoy(self.header_name(), value)
    }

    fn encode(&self, budget: Duration) -> HeaderValue {
        encode_envoy(budget)
    }
}

fn decode_envoy(
    header: HeaderName,
    value: &HeaderValue,
) -> Result<Option<Duration>, InvalidBudget> {
    match parse_millis(value.as_bytes()) {
        Some(Duration::ZERO) => Ok(None),
        Some(budget) => Ok(Some(budget)),
        None => Err(InvalidBudget::new(header, "ASCII digits (milliseconds)")),
    }
}

fn encode_envoy(budget: Duration) -> HeaderValue {
    HeaderValue::from(ceil_millis(budget).max(1))
}

/// One or more ASCII digits as milliseconds, saturating at `u64::MAX` ms.
fn parse_millis(bytes: &[u8]) -> Option<Duration> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let ms = bytes.iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    Some(Duration::from_millis(ms))
}

/// `budget` in milliseconds, rounded up, saturating at `u64::MAX`.
fn ceil_millis(budget: Duration) -> u64 {
    u64::try_from(budget.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

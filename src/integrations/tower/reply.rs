//! Replies the layer makes itself, in the request's protocol: a gRPC
//! trailers-only status for `application/grpc*`, an HTTP status otherwise.

use ::http::header::CONTENT_TYPE;
use ::http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use crate::Error;

/// True for gRPC requests (`content-type: application/grpc`, with any
/// `+format` or `-web` suffix), which get their replies as gRPC statuses.
pub(super) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// A reply the layer makes itself, instead of the inner service's.
#[derive(Debug)]
pub(super) enum Reply {
    /// A malformed budget header: INVALID_ARGUMENT / 400.
    InvalidArgument(String),
    /// The budget ran out (or is below the minimum): DEADLINE_EXCEEDED / 504.
    DeadlineExceeded,
    /// The root was canceled (shutdown): UNAVAILABLE / 503.
    Unavailable,
}

impl Reply {
    pub(super) fn for_err(err: Error) -> Reply {
        match err {
            Error::DeadlineExceeded => Reply::DeadlineExceeded,
            Error::Canceled => Reply::Unavailable,
        }
    }

    /// The response: for gRPC, a trailers-only response (HTTP 200, the
    /// status in `grpc-status` and `grpc-message` headers, an empty body);
    /// otherwise the HTTP status with an empty body.
    pub(super) fn into_response<B: Default>(self, grpc: bool) -> Response<B> {
        let (code, status, message) = match self {
            Reply::InvalidArgument(message) => (3u8, StatusCode::BAD_REQUEST, message),
            Reply::DeadlineExceeded => (
                4,
                StatusCode::GATEWAY_TIMEOUT,
                String::from("request deadline exceeded"),
            ),
            Reply::Unavailable => (
                14,
                StatusCode::SERVICE_UNAVAILABLE,
                String::from("server shutting down"),
            ),
        };
        if grpc {
            return grpc_status(code, &message);
        }
        let mut res = Response::new(B::default());
        *res.status_mut() = status;
        res
    }
}

/// A trailers-only gRPC response: HTTP 200, `content-type:
/// application/grpc`, the status in `grpc-status` and a percent-encoded
/// `grpc-message`, an empty (`Default`) body. tonic's client (and every
/// gRPC client) reads such a response as the status itself.
pub(super) fn grpc_status<B: Default>(code: u8, message: &str) -> Response<B> {
    let mut res = Response::new(B::default());
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(GRPC_STATUS, HeaderValue::from(u16::from(code)));
    headers.insert(GRPC_MESSAGE, percent_encode(message));
    res
}

pub(super) const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
pub(super) const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// `grpc-message` encoding: bytes outside printable ASCII, and `%`, as
/// `%XX` (gRPC over HTTP/2, "Percent-Encoded").
pub(super) fn percent_encode(message: &str) -> HeaderValue {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::try_from(out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

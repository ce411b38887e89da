//! What [`BudgetService`](crate::tower::BudgetService) answers for a call
//! whose context ended: the context's [`Error`] ([`AsError`], the default)
//! or, for gRPC requests, a gRPC status ([`AsGrpcStatus`]).
//!
//! Why a choice: tonic's client turns a transport error it does not know
//! into `Code::Unknown` (`Status::from_error` recognizes only its own
//! types), and a library without a tonic dependency cannot make a
//! `tonic::Status`. What every gRPC client does understand is a
//! trailers-only response carrying `grpc-status`, so [`AsGrpcStatus`]
//! answers with one. That needs a response body to put in it (`Default`),
//! which not every HTTP client has (hyper's `Incoming` has none): hence an
//! option, not the default.

use std::error::Error as StdError;

use ::http::Response;

use super::reply::grpc_status;
use crate::Error;

/// The error type of [`BudgetService`](crate::tower::BudgetService): the inner service's error, or the
/// context's [`Error`] (downcast it to tell them apart).
///
/// Through tonic's client, the context's error arrives as a `Status` with
/// code UNKNOWN, message `context deadline exceeded` (or `context
/// canceled`) and the [`Error`] as its `source()`; with
/// [`BudgetLayer::on_ended`](crate::tower::BudgetLayer::on_ended)`(`[`AsGrpcStatus`](crate::tower::AsGrpcStatus)`)` it arrives as
/// DEADLINE_EXCEEDED (or CANCELLED) instead.
///
/// ```
/// use ctxtree::{tower::BoxError, Error};
///
/// let err: BoxError = Box::new(Error::Canceled);
/// assert_eq!(err.downcast_ref::<Error>(), Some(&Error::Canceled));
/// ```
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// How a [`BudgetService`](crate::tower::BudgetService) answers a call whose
/// context ended, before it was sent (K1) or while it was in flight (K3,
/// K4): `Res` is the inner service's response type. Implement it to answer
/// in your own form (an HTTP 504, say); set it with
/// [`BudgetLayer::on_ended`](crate::tower::BudgetLayer::on_ended).
///
/// ```
/// use ctxtree::{tower::{BoxError, BudgetLayer, OnEnded}, Context, Error};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// /// Plain HTTP callers get a 504 instead of an error.
/// #[derive(Clone)]
/// struct GatewayTimeout;
///
/// impl OnEnded<http::Response<String>> for GatewayTimeout {
///     fn answer(&self, err: Error, _grpc: bool) -> Result<http::Response<String>, BoxError> {
///         let mut res = http::Response::new(err.to_string());
///         *res.status_mut() = http::StatusCode::GATEWAY_TIMEOUT;
///         Ok(res)
///     }
/// }
///
/// # futures::executor::block_on(async {
/// let client = BudgetLayer::new().on_ended(GatewayTimeout).layer(service_fn(
///     |_req: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(String::new())) },
/// ));
/// let (ctx, cancel) = Context::background().with_cancel();
/// cancel.cancel();
/// let res = ctx.scope(client.oneshot(http::Request::new(()))).await.unwrap();
/// assert_eq!(res.status(), 504);
/// assert_eq!(res.body(), "context canceled");
/// # });
/// ```
pub trait OnEnded<Res>: Clone + Send + Sync + 'static {
    /// The call's output for a context that ended with `err`; `grpc` is
    /// true for gRPC requests (`content-type: application/grpc*`).
    fn answer(&self, err: Error, grpc: bool) -> Result<Res, BoxError>;

    /// The call's output for a response `res` that arrived once the
    /// context had ended with `err` (K5): `res` itself by default.
    ///
    /// ```
    /// use ctxtree::{tower::{AsError, OnEnded}, Error};
    ///
    /// assert_eq!(AsError.answered(7, Error::DeadlineExceeded, false).unwrap(), 7);
    /// ```
    fn answered(&self, res: Res, err: Error, grpc: bool) -> Result<Res, BoxError> {
        let _ = (err, grpc);
        Ok(res)
    }
}

/// The default [`OnEnded`]: the call fails with the context's [`Error`]
/// (boxed in a [`BoxError`]), for any request and response type.
///
/// Through tonic's client this arrives as `Code::Unknown`, the [`Error`] as
/// the status's `source()`; use [`AsGrpcStatus`] on a tonic `Channel`.
///
/// ```
/// use ctxtree::{tower::{AsError, OnEnded}, Error};
///
/// let out: Result<(), _> = AsError.answer(Error::DeadlineExceeded, true);
/// assert_eq!(out.unwrap_err().downcast_ref::<Error>(), Some(&Error::DeadlineExceeded));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AsError;

impl<Res> OnEnded<Res> for AsError {
    fn answer(&self, err: Error, _grpc: bool) -> Result<Res, BoxError> {
        Err(Box::new(err))
    }
}

/// The [`OnEnded`] for gRPC clients (tonic's `Channel`): a gRPC request
/// whose context ended gets a trailers-only response, which tonic's client
/// decodes as a `Status`: DEADLINE_EXCEEDED (`grpc-status: 4`, message
/// `context deadline exceeded`) for [`Error::DeadlineExceeded`], CANCELLED
/// (`grpc-status: 1`, `context canceled`) for [`Error::Canceled`]. Other
/// requests fail with the context's [`Error`], as with [`AsError`].
///
/// The response is synthesized on the client side: HTTP 200, `content-type:
/// application/grpc`, `grpc-status`, `grpc-message`, an empty body (hence
/// `B: Default`; tonic's `Body` has it). tonic's own enforcement of the
/// `grpc-timeout` it sends reports CANCELLED (`Timeout expired`), on the
/// client as an error and on the server as a trailers-only response; when
/// either arrives once the context's deadline has passed,
/// [`BudgetFuture`](crate::tower::BudgetFuture) answers in its place (K4,
/// K5), so the caller sees DEADLINE_EXCEEDED.
///
/// ```
/// use ctxtree::{tower::{AsGrpcStatus, OnEnded}, Error};
///
/// let res: http::Response<String> = AsGrpcStatus.answer(Error::DeadlineExceeded, true).unwrap();
/// assert_eq!(res.status(), 200);
/// assert_eq!(res.headers()["grpc-status"], "4");
/// assert_eq!(res.headers()["grpc-message"], "context deadline exceeded");
/// let res: http::Response<String> = AsGrpcStatus.answer(Error::Canceled, true).unwrap();
/// assert_eq!(res.headers()["grpc-status"], "1");
/// // Not a gRPC request: the error.
/// let err = OnEnded::<http::Response<String>>::answer(&AsGrpcStatus, Error::Canceled, false);
/// assert_eq!(err.unwrap_err().downcast_ref::<Error>(), Some(&Error::Canceled));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AsGrpcStatus;

impl<B: Default> OnEnded<Response<B>> for AsGrpcStatus {
    fn answer(&self, err: Error, grpc: bool) -> Result<Response<B>, BoxError> {
        if !grpc {
            return Err(Box::new(err));
        }
        let code = match err {
            Error::DeadlineExceeded => 4, // DEADLINE_EXCEEDED
            Error::Canceled => 1,         // CANCELLED
        };
        Ok(grpc_status(code, &err.to_string()))
    }

    /// A gRPC failure in trailers-only form (HTTP 200 with a non-zero
    /// `grpc-status` header) that arrived once the context had ended is
    /// answered as the context's end (K5): the status the caller sees is
    /// its own deadline's, as in grpc-go, not the one a peer's timer raced
    /// it to (tonic's server reports CANCELLED `Timeout expired`). Other
    /// responses pass.
    fn answered(&self, res: Response<B>, err: Error, grpc: bool) -> Result<Response<B>, BoxError> {
        let failed = res
            .headers()
            .get("grpc-status")
            .is_some_and(|status| status.as_bytes() != b"0");
        if grpc && failed {
            self.answer(err, grpc)
        } else {
            Ok(res)
        }
    }
}

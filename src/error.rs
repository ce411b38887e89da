//! `Error` (Go's `Canceled` / `DeadlineExceeded`) and `Cause` (Go's cancel cause).
//!
//! A `Cause` is a cheap `Clone` handle to a shared `dyn Error + Send + Sync`.
//! The two `Error` values are stored inline, so the common "canceled without a
//! cause" case never allocates; any other error is boxed once behind an `Arc`
//! whose thin pointer can live in a node's state word (see `tree/state.rs`).

use std::any::Any;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// Why a context ended: Go's `context.Canceled` and `context.DeadlineExceeded`.
///
/// ```
/// use ctxtree::{Context, Error};
///
/// let (ctx, cancel) = Context::background().with_cancel();
/// cancel.cancel();
/// assert_eq!(ctx.err(), Some(Error::Canceled));
/// assert_eq!(Error::Canceled.to_string(), "context canceled");
/// assert!(Error::DeadlineExceeded.is_timeout());
/// ```
///
/// The enum is `#[non_exhaustive]`: a `match` on it needs a wildcard arm, so
/// a later release may add a reason without breaking your code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// The context was canceled by its [`CancelHandle`](crate::CancelHandle)
    /// (or an ancestor's).
    Canceled,
    /// The context's deadline passed.
    DeadlineExceeded,
}

impl Error {
    /// True for [`Error::DeadlineExceeded`], like Go's `Timeout()` method.
    ///
    /// ```
    /// assert!(!ctxtree::Error::Canceled.is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::DeadlineExceeded)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Canceled => "context canceled",
            Error::DeadlineExceeded => "context deadline exceeded",
        })
    }
}

impl StdError for Error {}

/// Why a context was canceled, beyond the bare [`Error`]: Go's `context.Cause`.
///
/// Any `Error + Send + Sync + 'static` converts into a `Cause`. A context
/// canceled without an explicit cause reports its [`Error`] as the cause:
///
/// ```
/// use ctxtree::{Context, Error};
///
/// #[derive(Debug)]
/// struct ShuttingDown;
/// impl std::fmt::Display for ShuttingDown {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("server shutting down")
///     }
/// }
/// impl std::error::Error for ShuttingDown {}
///
/// let (ctx, cancel) = Context::background().with_cancel();
/// cancel.cancel_with_cause(ShuttingDown);
/// assert_eq!(ctx.err(), Some(Error::Canceled));
/// let cause = ctx.cause().unwrap();
/// assert!(cause.downcast_ref::<ShuttingDown>().is_some());
/// assert_eq!(cause.to_string(), "server shutting down");
///
/// let (plain, cancel) = Context::background().with_cancel();
/// drop(cancel);
/// assert_eq!(plain.cause().unwrap().downcast_ref::<Error>(), Some(&Error::Canceled));
/// ```
///
/// `Cause` deliberately does not implement `std::error::Error` itself (that
/// would collide with the blanket `From`); use [`Cause::as_error`] where a
/// `&dyn Error` is needed. Two causes are equal when they are the same
/// [`Error`] value or share the same allocation.
#[derive(Clone)]
pub struct Cause(CauseRepr);

#[derive(Clone)]
enum CauseRepr {
    Error(Error),
    Custom(Arc<BoxedError>),
}

/// The sized, thin-pointer home of a custom cause. 64-aligned on every
/// target: a node's state word tags a pointer to it with six bits
/// (`state.rs`: err, inline cause, and how the cancel came, S4).
#[repr(align(64))]
pub(crate) struct BoxedError(Box<dyn StdError + Send + Sync + 'static>);

impl Drop for BoxedError {
    /// The error's own drop is foreign code that may block: on the timer
    /// thread it runs on the collector instead (K3, `tree/collector.rs`).
    fn drop(&mut self) {
        #[cfg(not(loom))]
        if let Some(sink) = crate::tree::foreign_drops::sink() {
            let error = std::mem::replace(&mut self.0, Box::new(Handed));
            sink(Box::new(move || drop(error)));
        }
    }
}

/// What a [`BoxedError`] holds once its error went to the collector (a
/// zero-sized box: no allocation).
#[cfg(not(loom))]
#[derive(Debug)]
struct Handed;

#[cfg(not(loom))]
impl fmt::Display for Handed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dropped on the collector thread")
    }
}

#[cfg(not(loom))]
impl StdError for Handed {}

impl Cause {
    /// A cause carrying just a message, like Go's `errors.New`.
    ///
    /// ```
    /// let cause = ctxtree::Cause::msg("upstream closed");
    /// assert_eq!(cause.to_string(), "upstream closed");
    /// ```
    pub fn msg(message: impl Into<String>) -> Cause {
        Cause::from(Message(message.into()))
    }

    /// Wraps an already boxed error without boxing it again.
    ///
    /// ```
    /// use std::io;
    ///
    /// let err: Box<dyn std::error::Error + Send + Sync> =
    ///     Box::new(io::Error::new(io::ErrorKind::ConnectionReset, "peer reset"));
    /// let (ctx, cancel) = ctxtree::Context::background().with_cancel();
    /// cancel.cancel_with_cause(ctxtree::Cause::from_boxed(err));
    /// let cause = ctx.cause().unwrap();
    /// // The boxed error itself, not a box inside a box:
    /// assert_eq!(cause.downcast_ref::<io::Error>().unwrap().kind(), io::ErrorKind::ConnectionReset);
    /// ```
    pub fn from_boxed(error: Box<dyn StdError + Send + Sync + 'static>) -> Cause {
        Cause(CauseRepr::Custom(Arc::new(BoxedError(error))))
    }

    /// The cause as a standard error trait object.
    ///
    /// ```
    /// use std::error::Error;
    ///
    /// fn describe(err: &dyn Error) -> String {
    ///     format!("request stopped: {err}")
    /// }
    ///
    /// let (ctx, cancel) = ctxtree::Context::background().with_cancel();
    /// cancel.cancel_with_cause("x1".parse::<u8>().unwrap_err());
    /// let cause = ctx.cause().unwrap();
    /// assert_eq!(describe(cause.as_error()), "request stopped: invalid digit found in string");
    /// assert!(cause.as_error().is::<std::num::ParseIntError>());
    /// ```
    pub fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        match &self.0 {
            CauseRepr::Error(e) => e,
            CauseRepr::Custom(b) => &*b.0,
        }
    }

    /// The cause as a concrete error type, if it is one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxtree::{Context, Error};
    ///
    /// #[derive(Debug, PartialEq)]
    /// struct QuotaExceeded { used: u64 }
    /// impl std::fmt::Display for QuotaExceeded {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    ///         write!(f, "quota exceeded after {} bytes", self.used)
    ///     }
    /// }
    /// impl std::error::Error for QuotaExceeded {}
    ///
    /// let (upload, cancel) = Context::background().with_cancel();
    /// cancel.cancel_with_cause(QuotaExceeded { used: 1 << 20 });
    /// let cause = upload.cause().unwrap();
    /// assert_eq!(cause.downcast_ref::<QuotaExceeded>(), Some(&QuotaExceeded { used: 1 << 20 }));
    /// assert_eq!(cause.downcast_ref::<Error>(), None); // not a context error
    ///
    /// let (slow, _h) = Context::background().with_timeout(Duration::ZERO);
    /// assert_eq!(slow.cause().unwrap().downcast_ref::<Error>(), Some(&Error::DeadlineExceeded));
    /// ```
    pub fn downcast_ref<T: StdError + 'static>(&self) -> Option<&T> {
        match &self.0 {
            CauseRepr::Error(e) => (e as &dyn Any).downcast_ref::<T>(),
            CauseRepr::Custom(b) => b.0.downcast_ref::<T>(),
        }
    }

    /// The cause if it is one of the two context errors.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxtree::{Cause, Context, Error};
    ///
    /// let (timed, _h) = Context::background().with_timeout(Duration::ZERO);
    /// assert_eq!(timed.cause().unwrap().as_context_error(), Some(Error::DeadlineExceeded));
    ///
    /// let (stopped, cancel) = Context::background().with_cancel();
    /// cancel.cancel_with_cause(Cause::msg("shutting down"));
    /// assert_eq!(stopped.cause().unwrap().as_context_error(), None); // a cause of its own
    /// assert_eq!(Cause::from(Error::Canceled).as_context_error(), Some(Error::Canceled));
    /// ```
    pub fn as_context_error(&self) -> Option<Error> {
        match &self.0 {
            CauseRepr::Error(e) => Some(*e),
            CauseRepr::Custom(b) => b.0.downcast_ref::<Error>().copied(),
        }
    }

    pub(crate) fn from_error(err: Error) -> Cause {
        Cause(CauseRepr::Error(err))
    }

    /// Splits the cause into what a state word stores: a thin pointer that owns
    /// one strong count (0 for an inline `Error`) and the inline error, if any.
    pub(crate) fn into_raw(self) -> (usize, Option<Error>) {
        match self.0 {
            CauseRepr::Error(e) => (0, Some(e)),
            CauseRepr::Custom(b) => (Arc::into_raw(b) as usize, None),
        }
    }

    /// A new handle to the custom cause at `ptr` (from [`Cause::into_raw`]).
    ///
    /// # Safety
    /// `ptr` came from `into_raw` and its strong count is still owned by a live
    /// state word for the duration of the call.
    pub(crate) unsafe fn clone_from_raw(ptr: usize) -> Cause {
        let ptr = ptr as *const BoxedError;
        // SAFETY: the caller guarantees `ptr` is a live `Arc<BoxedError>`
        // pointer whose count we may add to.
        unsafe {
            Arc::increment_strong_count(ptr);
            Cause(CauseRepr::Custom(Arc::from_raw(ptr)))
        }
    }

    /// Adds one strong count to the custom cause at `ptr`.
    ///
    /// # Safety
    /// As for [`Cause::clone_from_raw`].
    pub(crate) unsafe fn retain_raw(ptr: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { Arc::increment_strong_count(ptr as *const BoxedError) }
    }

    /// Gives back a strong count taken by `into_raw` or `retain_raw`.
    ///
    /// # Safety
    /// `ptr` owns one strong count that is not used again.
    pub(crate) unsafe fn release_raw(ptr: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { drop(Arc::from_raw(ptr as *const BoxedError)) }
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for Cause {
    fn from(error: E) -> Cause {
        // A context `Error` stays inline so it compares and downcasts like the
        // cause recorded by a plain cancel.
        if let Some(err) = (&error as &dyn Any).downcast_ref::<Error>() {
            return Cause::from_error(*err);
        }
        Cause(CauseRepr::Custom(Arc::new(BoxedError(Box::new(error)))))
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_error(), f)
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_error(), f)
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Cause) -> bool {
        match (&self.0, &other.0) {
            (CauseRepr::Error(a), CauseRepr::Error(b)) => a == b,
            (CauseRepr::Custom(a), CauseRepr::Custom(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Cause {}

impl From<Cause> for Box<dyn StdError + Send + Sync + 'static> {
    fn from(cause: Cause) -> Self {
        Box::new(CauseError(cause))
    }
}

/// Adapter so a `Cause` can travel as a boxed error (`?` into `Box<dyn Error>`).
struct CauseError(Cause);

impl fmt::Debug for CauseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for CauseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl StdError for CauseError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.as_error().source()
    }
}

/// The error behind [`Cause::msg`].
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Message {}

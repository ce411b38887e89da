//! Bridges between [`Context`] and tokio-util's [`CancellationToken`], both
//! ways, with no task spawned per link (feature `tokio`).
//!
//! - **Context → token** ([`Context::cancellation_token`],
//!   [`Context::linked_cancellation_token`]): an [`after_func`] registration
//!   whose function cancels the token. It runs on the thread that cancels the
//!   context, after the whole subtree is canceled (F2).
//! - **Token → context** ([`Context::with_cancellation_token`]): a child
//!   context and the token's own `cancelled_owned()` future, polled by hand
//!   with a waker whose `wake` polls it again and, once it is ready, cancels
//!   the child. tokio-util wakes that waker on the thread that cancels the
//!   token, so the child is canceled there, before `cancel()` returns.
//!
//! The module also holds [`TaskGroup`], the task group of
//! [`ctxtree::group`](crate::group) for tokio tasks.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use tokio_util::sync::CancellationToken;
//! use ctxtree::Context;
//!
//! // Context -> token: give a request's context to code that takes a token.
//! let (request, end_request) = Context::background().with_cancel();
//! let token = request.cancellation_token();
//! let task = tokio::spawn(async move { token.cancelled().await });
//! end_request.cancel();
//! task.await.unwrap(); // the token was canceled with the context
//!
//! // Token -> context: code using contexts under an app stopped by a token.
//! let shutdown = CancellationToken::new();
//! let (server, _stop) = Context::background().with_cancellation_token(&shutdown);
//! let (request, _end) = server.with_cancel();
//! shutdown.cancel();
//! assert!(request.is_done()); // before `cancel` returned
//! # }
//! ```
//!
//! Invariants:
//! - **B1** A link never outlives its context: the token → context watch is
//!   freed by an `after_func` on the child (any cancel of the child drops the
//!   token future, which unregisters its waker from the token), and the
//!   context → token registration is an `after_func` entry (freed when the
//!   context ends, or at once by [`TokenLink`]'s drop). So with
//!   `with_cancellation_token` and `linked_cancellation_token` memory is
//!   bounded by the live contexts and links; each plain
//!   `cancellation_token()` call keeps one entry (and its token) until its
//!   context ends, like an unstopped `after_func`.
//! - **B2** The token future is polled by one thread at a time (a `Mutex`
//!   taken with `try_lock` from `wake`, never on a hot path). A wake-up that
//!   finds it busy sets `repoll`; the holder polls again before it unlocks
//!   and re-checks `repoll` after, so no wake-up is lost, and a waker called
//!   from inside the poll itself cannot deadlock.
//! - **B3** Nothing unwinds into tokio-util: the token → context cancel runs
//!   inside tokio's `wake`, so a panic of an `after_func` function (or a
//!   waker) of the child, which `cancel` would resume after the subtree is
//!   canceled (P1), is caught and dropped there; the cancel itself completes
//!   and every other waiter of the token is still woken.
//!
//! [`after_func`]: Context::after_func

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::task::{Context as TaskContext, Wake, Waker};

use ::tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::after_func::AfterFunc;
use crate::context::Context;
use crate::error::Error;
use crate::handle::CancelHandle;
use crate::tree::node;
use crate::tree::state::How;

pub use super::task_group::TaskGroup;

impl Context {
    /// A new [`CancellationToken`] that is canceled when this context ends
    /// (cancel, deadline, or an ancestor's cancel). Canceling the token does
    /// not cancel the context.
    ///
    /// The link is one [`after_func`](Context::after_func) registration that
    /// lives until the context ends (a request-scoped context frees it when
    /// the request ends). On a context that can never be canceled nothing is
    /// registered; on a done context the token is canceled at once. For a
    /// long-lived context that hands out many tokens, prefer
    /// [`linked_cancellation_token`](Context::linked_cancellation_token),
    /// whose link ends when you drop it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (ctx, cancel) = ctxtree::Context::background().with_cancel();
    /// let token = ctx.cancellation_token();
    /// let task = tokio::spawn(async move { token.cancelled().await });
    /// cancel.cancel(); // cancels the token on this thread; no task per link
    /// task.await.unwrap();
    /// # }
    /// ```
    pub fn cancellation_token(&self) -> CancellationToken {
        let token = CancellationToken::new();
        let follower = token.clone();
        // Dropping the handle keeps the registration (AfterFunc's contract):
        // it is freed when the context ends (B1).
        drop(self.after_func(move || follower.cancel()));
        token
    }

    /// Like [`cancellation_token`](Context::cancellation_token), but the
    /// link ends (and its registration is freed) when the returned
    /// [`TokenLink`] is dropped; after that the token is canceled only by
    /// its own `cancel`.
    ///
    /// ```
    /// let (server, _shutdown) = ctxtree::Context::background().with_cancel();
    /// for _request in 0..1000 {
    ///     let link = server.linked_cancellation_token();
    ///     let token = link.token().clone();
    ///     assert!(!token.is_cancelled());
    /// } // each link unregistered here: `server` holds nothing
    /// ```
    pub fn linked_cancellation_token(&self) -> TokenLink {
        let token = CancellationToken::new();
        let follower = token.clone();
        let registration = self.after_func(move || follower.cancel());
        TokenLink {
            token,
            registration,
        }
    }

    /// Derives a child context that is also canceled when `token` is
    /// canceled, with err [`Error::Canceled`] and cause [`TokenCancelled`].
    /// It is canceled, as any child, when this context ends or its handle is
    /// canceled or dropped.
    ///
    /// No task is spawned: the child is canceled on the thread that calls
    /// `token.cancel()`, before that call returns (so its
    /// [`after_func`](Context::after_func) functions run there too: keep
    /// them short; a panic in one of them is caught and dropped there, since
    /// it cannot unwind through tokio-util's cancel without stranding other
    /// tasks waiting on the token). If `token.cancel()` is itself called
    /// from inside an `after_func` function, the child's functions run after
    /// that function returns, and a panic in them resumes from the
    /// outermost cancel, as for any cancel made there.
    ///
    /// ```
    /// use tokio_util::sync::CancellationToken;
    ///
    /// let token = CancellationToken::new();
    /// let (ctx, _cancel) = ctxtree::Context::background().with_cancellation_token(&token);
    /// token.cancel();
    /// assert!(ctx.is_done());
    /// assert!(ctx.cause().unwrap().downcast_ref::<ctxtree::tokio::TokenCancelled>().is_some());
    /// ```
    pub fn with_cancellation_token(&self, token: &CancellationToken) -> (Context, CancelHandle) {
        let (child, handle) = self.with_cancel();
        if child.is_done() {
            return (child, handle); // born canceled: nothing to follow
        }
        let watch = Arc::new(TokenWatch {
            child: child.clone(),
            repoll: AtomicBool::new(false),
            future: Mutex::new(Some(Box::pin(token.clone().cancelled_owned()))),
        });
        // B1: whatever cancels the child drops the token future (and with it
        // the waker, which holds `watch`), breaking the cycle.
        let on_done = watch.clone();
        drop(child.after_func(move || drop(on_done.lock_slot().take())));
        watch.on_wake(); // first poll: registers with the token, or fires now
        (child, handle)
    }
}

/// A [`CancellationToken`] following a context for as long as this link
/// lives: returned by [`Context::linked_cancellation_token`].
///
/// Dropping the link unregisters it from the context at once; clones of the
/// token taken earlier stay valid but no longer follow the context.
///
/// ```
/// let (ctx, cancel) = ctxtree::Context::background().with_cancel();
/// let held = ctx.linked_cancellation_token();
/// let unlinked = ctx.linked_cancellation_token().token().clone(); // link dropped here
/// cancel.cancel();
/// assert!(held.token().is_cancelled());
/// assert!(!unlinked.is_cancelled()); // its link ended before the context did
/// ```
pub struct TokenLink {
    token: CancellationToken,
    registration: AfterFunc,
}

impl TokenLink {
    /// The token that follows the context.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    ///
    /// let (ctx, cancel) = ctxtree::Context::background().with_cancel();
    /// let link = ctx.linked_cancellation_token();
    /// let token = link.token().clone();
    /// let task = tokio::spawn(async move {
    ///     tokio::select! {
    ///         _ = token.cancelled() => "stopped",
    ///         _ = tokio::time::sleep(Duration::from_secs(60)) => "finished",
    ///     }
    /// });
    /// cancel.cancel();
    /// assert_eq!(task.await.unwrap(), "stopped");
    /// # }
    /// ```
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }
}

impl Drop for TokenLink {
    fn drop(&mut self) {
        self.registration.stop();
    }
}

impl fmt::Debug for TokenLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenLink")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// The cause of a context canceled by its [`CancellationToken`] (see
/// [`Context::with_cancellation_token`]).
///
/// ```
/// use tokio_util::sync::CancellationToken;
/// use ctxtree::{tokio::TokenCancelled, Context, Error};
///
/// let token = CancellationToken::new();
/// let (by_token, _h) = Context::background().with_cancellation_token(&token);
/// let (by_handle, cancel) = Context::background().with_cancellation_token(&token);
/// cancel.cancel(); // first: this one was not ended by the token
/// token.cancel();
///
/// assert_eq!(by_token.err(), Some(Error::Canceled));
/// let cause = by_token.cause().unwrap();
/// assert_eq!(cause.downcast_ref::<TokenCancelled>(), Some(&TokenCancelled));
/// assert_eq!(cause.to_string(), "cancellation token was cancelled");
/// assert_eq!(by_handle.cause().unwrap().downcast_ref::<TokenCancelled>(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenCancelled;

impl fmt::Display for TokenCancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cancellation token was cancelled")
    }
}

impl StdError for TokenCancelled {}

type TokenFuture = Pin<Box<WaitForCancellationFutureOwned>>;

/// The token → context link: the token's future and the child it cancels.
struct TokenWatch {
    child: Context,
    /// Set by every wake-up; cleared by the thread that polls (B2).
    repoll: AtomicBool,
    /// The token's future; `None` once it fired or the child ended (B1).
    future: Mutex<Option<TokenFuture>>,
}

impl TokenWatch {
    fn lock_slot(&self) -> MutexGuard<'_, Option<TokenFuture>> {
        self.future
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Polls the token future until it is pending with our waker registered,
    /// or ready (then cancels the child), or gone (B2).
    fn on_wake(self: &Arc<Self>) {
        self.repoll.store(true, Ordering::SeqCst);
        loop {
            let mut slot = match self.future.try_lock() {
                Ok(slot) => slot,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                // The holder re-checks `repoll` before and after unlocking.
                Err(TryLockError::WouldBlock) => return,
            };
            let mut fired = false;
            while self.repoll.swap(false, Ordering::SeqCst) {
                let Some(future) = slot.as_mut() else { break };
                let waker = Waker::from(self.clone());
                if future
                    .as_mut()
                    .poll(&mut TaskContext::from_waker(&waker))
                    .is_ready()
                {
                    *slot = None;
                    fired = true;
                    break;
                }
            }
            drop(slot);
            if fired {
                if let Some(node) = self.child.node() {
                    // We are inside tokio-util's cancel (its `Notify` is
                    // waking a batch of wakers): a panic unwinding from here
                    // would leave the rest of that batch unwoken. So a panic
                    // from the child's after_func functions or wakers, which
                    // `cancel` resumes once the subtree is canceled (P1), is
                    // caught and dropped here (B3).
                    let cancel = || {
                        node::cancel(
                            node,
                            Error::Canceled,
                            Some(TokenCancelled.into()),
                            How::TokenBridge,
                        )
                    };
                    drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                        cancel,
                    )));
                }
                return;
            }
            if !self.repoll.load(Ordering::SeqCst) {
                return;
            }
        }
    }
}

impl Wake for TokenWatch {
    fn wake(self: Arc<Self>) {
        self.on_wake();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.on_wake();
    }
}

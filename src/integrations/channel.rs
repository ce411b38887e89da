//! Go's `ctx.Done()` channel for threads: a crossbeam-channel [`Receiver`]
//! that becomes ready when a context is done (feature `crossbeam-channel`).
//!
//! The channel carries no messages: its only
//! [`Sender`](::crossbeam_channel::Sender) lives in an
//! [`after_func`](Context::after_func) registration and is dropped when the
//! context ends, which disconnects the channel, as closing Go's done channel
//! does. A `recv` on it then returns `Err(RecvError)` at once, forever, so it
//! composes with `crossbeam_channel::select!` like Go's `case <-ctx.Done():`.
//!
//! ```
//! use std::time::Duration;
//! use crossbeam_channel::{select, tick};
//! use ctxtree::{Context, Error};
//!
//! // Go: for { select { case <-ticker.C: ...; case <-ctx.Done(): return ctx.Err() } }
//! let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(30));
//! let done = ctx.done_channel();
//! let ticker = tick(Duration::from_millis(5));
//! let err = loop {
//!     select! {
//!         recv(ticker) -> _ => { /* send a heartbeat */ }
//!         recv(done.receiver()) -> _ => break ctx.err().unwrap(),
//!     }
//! };
//! assert_eq!(err, Error::DeadlineExceeded);
//! ```
//!
//! Invariants:
//! - **D1** The channel disconnects when the context is done, and otherwise
//!   only when its [`DoneChannel`] is dropped: the sender is dropped by the
//!   registration's function (run once, after the whole subtree is canceled,
//!   F2) or by the `stop` in `DoneChannel`'s drop (D2). A context that can
//!   never be canceled gets crossbeam's `never()` receiver and registers
//!   nothing.
//! - **D2** Dropping a [`DoneChannel`] stops its registration, so a
//!   long-lived context that hands out many channels holds none of them.

use std::fmt;

use ::crossbeam_channel::{bounded, never, Receiver, TryRecvError};

use crate::after_func::AfterFunc;
use crate::context::Context;

impl Context {
    /// A channel receiver that becomes ready (disconnected) when this context
    /// is done: Go's `ctx.Done()` for `crossbeam_channel::select!`.
    ///
    /// ```
    /// use crossbeam_channel::{select, unbounded};
    /// use ctxtree::Context;
    ///
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// let (jobs_tx, jobs) = unbounded::<u32>();
    /// let done = ctx.done_channel();
    /// let worker = std::thread::spawn(move || loop {
    ///     select! {
    ///         recv(jobs) -> job => { let _ = job; }
    ///         recv(done.receiver()) -> _ => return ctx.err(),
    ///     }
    /// });
    /// jobs_tx.send(1).unwrap();
    /// cancel.cancel();
    /// assert_eq!(worker.join().unwrap(), Some(ctxtree::Error::Canceled));
    /// ```
    #[must_use = "dropping the DoneChannel unlinks its receiver: keep it while you select on it"]
    pub fn done_channel(&self) -> DoneChannel {
        if self.node().is_none() {
            // Never canceled: crossbeam's never-ready receiver (D1).
            return DoneChannel {
                receiver: never(),
                registration: None,
            };
        }
        let (sender, receiver) = bounded::<()>(0);
        let registration = self.after_func(move || drop(sender));
        DoneChannel {
            receiver,
            registration: Some(registration),
        }
    }
}

/// A receiver that is disconnected once its context is done: returned by
/// [`Context::done_channel`].
///
/// Select on [`receiver()`](DoneChannel::receiver); a `recv` returns
/// `Err(RecvError)` once the context is done.
///
/// Dropping the `DoneChannel` unregisters it (D2), which drops its sender:
/// a clone of the receiver kept past that point reports disconnected
/// whether or not the context is done, so select on the receiver only while
/// its `DoneChannel` lives, or keep the link until the context ends with
/// [`into_receiver`](DoneChannel::into_receiver).
///
/// ```
/// use crossbeam_channel::RecvError;
/// use ctxtree::Context;
///
/// let (ctx, cancel) = Context::background().with_cancel();
/// let done = ctx.done_channel();
/// let waiter = std::thread::spawn(move || done.receiver().recv());
/// cancel.cancel();
/// assert_eq!(waiter.join().unwrap(), Err(RecvError)); // Go's closed Done()
///
/// // A receiver cloned out of a dropped `DoneChannel` is disconnected at once:
/// let (ctx, _cancel) = Context::background().with_cancel();
/// let stale = ctx.done_channel().receiver().clone();
/// assert_eq!(stale.recv(), Err(RecvError));
/// assert!(!ctx.is_done());
/// ```
pub struct DoneChannel {
    receiver: Receiver<()>,
    /// Holds the only sender; `None` for a context that can never end.
    registration: Option<AfterFunc>,
}

impl DoneChannel {
    /// The receiver to select on, borrowed: it is linked to the context only
    /// while this `DoneChannel` lives.
    ///
    /// Do not clone it out of a temporary: in
    /// `let rx = ctx.done_channel().receiver().clone();` the `DoneChannel` is
    /// dropped at the end of the statement, which unregisters it (D2), and
    /// `rx` reads as disconnected (done) at once although the context is
    /// not. Keep the `DoneChannel` in a variable, or take an owned receiver
    /// that stays linked with [`into_receiver`](DoneChannel::into_receiver).
    ///
    /// ```
    /// use std::time::Duration;
    /// use crossbeam_channel::RecvTimeoutError;
    ///
    /// let (ctx, cancel) = ctxtree::Context::background().with_cancel();
    /// let done = ctx.done_channel();
    /// let wait = Duration::from_millis(1);
    /// assert_eq!(done.receiver().recv_timeout(wait), Err(RecvTimeoutError::Timeout));
    /// cancel.cancel();
    /// assert_eq!(done.receiver().recv_timeout(wait), Err(RecvTimeoutError::Disconnected));
    /// ```
    pub fn receiver(&self) -> &Receiver<()> {
        &self.receiver
    }

    /// Gives up the scoped link: the receiver stays linked until the context
    /// ends (its registration is then freed by the cancel). For a context
    /// that can never be canceled, the returned receiver never becomes
    /// ready.
    ///
    /// ```
    /// use std::time::Duration;
    /// use crossbeam_channel::{Receiver, RecvTimeoutError};
    /// use ctxtree::Context;
    ///
    /// struct Worker {
    ///     stop: Receiver<()>, // no guard to keep alive beside it
    /// }
    ///
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// let worker = Worker { stop: ctx.done_channel().into_receiver() };
    /// let thread = std::thread::spawn(move || worker.stop.recv());
    /// cancel.cancel();
    /// assert!(thread.join().unwrap().is_err()); // disconnected by the cancel
    ///
    /// let never = Context::background().done_channel().into_receiver();
    /// assert_eq!(never.recv_timeout(Duration::from_millis(1)), Err(RecvTimeoutError::Timeout));
    /// ```
    pub fn into_receiver(mut self) -> Receiver<()> {
        // Dropping the handle keeps the registration (AfterFunc's contract).
        drop(self.registration.take());
        self.receiver.clone()
    }

    /// True once the context is done and the channel disconnected.
    ///
    /// ```
    /// let (ctx, cancel) = ctxtree::Context::background().with_cancel();
    /// let done = ctx.done_channel();
    /// assert!(!done.is_ready());
    /// cancel.cancel();
    /// assert!(done.is_ready()); // already when `cancel` returns
    /// ```
    pub fn is_ready(&self) -> bool {
        matches!(self.receiver.try_recv(), Err(TryRecvError::Disconnected))
    }
}

impl Drop for DoneChannel {
    fn drop(&mut self) {
        if let Some(registration) = &self.registration {
            registration.stop();
        }
    }
}

impl fmt::Debug for DoneChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DoneChannel")
            .field("ready", &self.is_ready())
            .finish()
    }
}

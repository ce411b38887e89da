//! `after_func`: run a function once a context is canceled (Go's `AfterFunc`),
//! with no thread or task per registration.
//!
//! A registration is one more entry on the node's waiter stack
//! (`tree/waiters/`) whose wake-up is "run this function" instead of
//! "unpark this thread". So it inherits the stack's guarantees: registering
//! and canceling are CASes on the one state word and cannot miss each other
//! (S3); a stopped registration is an abandoned entry, freed by the
//! amortized collection (W4).
//!
//! Invariants:
//! - **F1** A registration's entry makes the W1 transition exactly once:
//!   `WAITING → NOTIFIED` by the cancel that takes it, or `WAITING →
//!   ABANDONED` by `stop`. The winner alone touches the function: a notifier
//!   runs it, a stopper drops it. So `stop()` returns true exactly when the
//!   function never runs, and it runs at most once.
//! - **F2** A cancel queues the functions it wins and runs them after the
//!   whole subtree is canceled and its epoch guard is gone: a function never
//!   runs inside a pin or a half-done cancel, and may itself derive, cancel
//!   or register. They run on the canceling thread through its trampoline
//!   (F5, `tree/trampoline.rs`: deferred until the current function returns
//!   if the cancel was made inside one), or on a runner thread if the
//!   canceling thread is the timer's (F6, `tree/callback_pool.rs`). On a
//!   context already canceled, the function runs on the registering thread
//!   the same way.
//! - **F3** The notifier records which thread will run the function (a
//!   per-thread token) right after it wins F1, and marks the registration
//!   finished (a second state word, swapped to canceled) after the function
//!   returns. `stop_wait` on another thread blocks on that word; on the
//!   running thread itself (a call from inside the function, or from another
//!   function queued by the same cancel) it returns at once instead of
//!   deadlocking.
//! - **F4** A panic in a function is held as P1 (`tree/panics.rs`), like a
//!   panicking waker's: the cancel still completes and every other function
//!   runs; then the first panic is resumed by the outermost run on the
//!   thread that ran them (F5d), or dropped on a runner thread (F6).
//!
//! Linearization: a registration takes effect at its push CAS; `stop` and the
//! cancel decide at the F1 transition.

use std::fmt;

use crate::context::Context;
use crate::error::Error;
use crate::sync::{Arc, AtomicUsize, Ordering};
use crate::tree::dispatch;
use crate::tree::node::{self, NodeRef};
use crate::tree::panics;
use crate::tree::state::How;
use crate::tree::waiters::{self, Waiter};

/// The handle returned by [`Context::after_func`]: stops the registration
/// (Go's `stop` function).
///
/// Dropping an `AfterFunc` does **not** stop it: the function still runs when
/// the context is canceled, as in Go where the `stop` function may be
/// ignored. Call [`stop`](AfterFunc::stop) to unregister.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
///
/// let (ctx, cancel) = ctxtree::Context::background().with_cancel();
/// let runs = Arc::new(AtomicUsize::new(0));
/// let (a, b) = (runs.clone(), runs.clone());
/// drop(ctx.after_func(move || { a.fetch_add(1, Ordering::SeqCst); })); // still registered
/// let kept = ctx.after_func(move || { b.fetch_add(1, Ordering::SeqCst); });
/// assert!(kept.stop()); // unregistered
/// cancel.cancel();
/// assert_eq!(runs.load(Ordering::SeqCst), 1); // only the dropped handle's function ran
/// ```
pub struct AfterFunc {
    inner: Inner,
}

enum Inner {
    /// The context can never be canceled: nothing was registered. Counts the
    /// stops, so the first returns true and later ones false (Go).
    Never(AtomicUsize),
    /// The context was already canceled: the function ran in `after_func`,
    /// or is pending on this thread's trampoline (F5) or handed off (F6).
    /// Kept for `stop_wait`, which waits until it has finished.
    Ran(Arc<Waiter>),
    /// An entry on `node`'s waiter stack.
    Registered { node: NodeRef, waiter: Arc<Waiter> },
}

impl Context {
    /// Arranges for `f` to run once this context is canceled, by a cancel or
    /// its deadline (Go's `AfterFunc`).
    ///
    /// `f` runs exactly once (unless [stopped](AfterFunc::stop)), after the
    /// whole subtree of the context has been canceled. Which thread runs it:
    ///
    /// - **A cancel** (of this context or an ancestor, by
    ///   [`CancelHandle::cancel`](crate::CancelHandle::cancel) or a handle's
    ///   drop): the canceling thread, before `cancel()` returns. If that
    ///   cancel is itself made inside an `after_func` function, `f` runs
    ///   after that function returns, on the same thread, before the
    ///   outermost `cancel()` returns: functions never nest on the stack, so
    ///   a chain of functions that each cancel the next context runs in
    ///   constant stack space, in order, however long it is.
    /// - **A deadline**: a thread named `ctxtree-callbacks`, never the timer
    ///   thread, so a function that blocks delays no other deadline. Runner
    ///   threads are started when all are busy (up to 256; beyond that
    ///   functions wait their turn) and exit after a second without work.
    /// - **Already canceled** when `after_func` is called: the calling
    ///   thread, before `after_func` returns; if called inside an
    ///   `after_func` function, after that function returns, as above.
    ///
    /// So when `cancel()` returns, outside any `after_func` function, the
    /// subtree is canceled and every function that cancel took has
    /// finished, including those of cancels made by those functions.
    /// Functions taken by a concurrent cancel of the same context run on
    /// that cancel's thread. A function that cancels another context must
    /// therefore not wait for that context's functions (directly, or for a
    /// thread that `stop_wait`s them): they run only after it returns.
    ///
    /// - No thread or task is spawned per registration, and `f` never runs
    ///   while a lock or an epoch guard is held, so it may derive, cancel,
    ///   wait on other contexts or register more functions. Keep it short on
    ///   a manual cancel: it delays the canceling thread, as a `Waker` does.
    /// - On a context that can never be canceled ([`Context::background`],
    ///   [`Context::without_cancel`]) nothing is registered.
    /// - If `f` panics, the cancel still completes and other functions still
    ///   run; the panic then resumes on the thread that ran `f` (from the
    ///   outermost [`CancelHandle::cancel`](crate::CancelHandle::cancel) or
    ///   `after_func`), or is dropped on a `ctxtree-callbacks` thread.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    ///
    /// let (ctx, cancel) = ctxtree::Context::background().with_cancel();
    /// let ran = Arc::new(AtomicBool::new(false));
    /// let flag = ran.clone();
    /// let _registration = ctx.after_func(move || flag.store(true, Ordering::SeqCst));
    /// cancel.cancel(); // runs the function on this thread before returning
    /// assert!(ran.load(Ordering::SeqCst));
    /// ```
    pub fn after_func<F: FnOnce() + Send + 'static>(&self, f: F) -> AfterFunc {
        let Some(node) = self.node() else {
            return AfterFunc {
                inner: Inner::Never(AtomicUsize::new(0)),
            };
        };
        let waiter = Waiter::for_func(Box::new(f));
        match waiters::push(&node.state, waiter.clone()) {
            Ok(()) => AfterFunc {
                inner: Inner::Registered {
                    node: node.clone(),
                    waiter,
                },
            },
            Err(_) => {
                // Already canceled: the entry was never published, so this
                // thread owns it (F1). The cancel may still be walking the
                // subtree: help it finish (N4), so the function runs after
                // the whole subtree is canceled (F2), then run it here (F5).
                node::cancel(node, Error::Canceled, None, How::Cancel);
                dispatch::run_unpublished(waiter.clone());
                panics::resume();
                AfterFunc {
                    inner: Inner::Ran(waiter),
                }
            }
        }
    }
}

impl AfterFunc {
    /// Unregisters the function. Returns true if this call prevented it from
    /// running; false if it has already started (or finished) running, or
    /// was already stopped (Go's `stop`).
    ///
    /// When `stop` returns false because the function is running on another
    /// thread, it does not wait for it to finish: use
    /// [`stop_wait`](AfterFunc::stop_wait) for that. A stopped function is
    /// dropped at once, so what it captured is freed.
    ///
    /// ```
    /// let (ctx, cancel) = ctxtree::Context::background().with_cancel();
    /// let registration = ctx.after_func(|| unreachable!("stopped first"));
    /// assert!(registration.stop());
    /// assert!(!registration.stop()); // already stopped
    /// cancel.cancel();
    /// ```
    pub fn stop(&self) -> bool {
        match &self.inner {
            Inner::Never(stops) => stops.fetch_add(1, Ordering::Relaxed) == 0,
            Inner::Ran(_) => false,
            Inner::Registered { node, waiter } => {
                if !waiter.abandon() {
                    return false;
                }
                waiters::drop_callback(waiter.callback());
                node::note_abandoned(node);
                true
            }
        }
    }

    /// Like [`stop`](AfterFunc::stop), but if the function is running on
    /// another thread, blocks until it has returned, so that when
    /// `stop_wait` returns the function is either prevented or finished (as
    /// C++'s `std::stop_callback` destructor and .NET's
    /// `CancellationTokenRegistration.Dispose` do).
    ///
    /// Called from inside the function itself, or from another function run
    /// on the same thread by the same outermost cancel (or the same fired
    /// deadline), it returns false at once instead of deadlocking: the
    /// function may then still be pending, to run after the current one.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// let (ctx, cancel) = ctxtree::Context::background().with_cancel();
    /// let runs = Arc::new(AtomicUsize::new(0));
    /// let counter = runs.clone();
    /// let registration = ctx.after_func(move || {
    ///     counter.fetch_add(1, Ordering::SeqCst);
    /// });
    /// let canceler = std::thread::spawn(move || cancel.cancel());
    /// // Either it was prevented, or it has finished: never half-run.
    /// let prevented = registration.stop_wait();
    /// assert_eq!(runs.load(Ordering::SeqCst), if prevented { 0 } else { 1 });
    /// canceler.join().unwrap();
    /// ```
    pub fn stop_wait(&self) -> bool {
        if self.stop() {
            return true;
        }
        let waiter = match &self.inner {
            Inner::Registered { waiter, .. } | Inner::Ran(waiter) => waiter,
            Inner::Never(_) => return false,
        };
        let callback = waiter.callback();
        if !waiter.is_abandoned() && !waiters::runs_here(callback) {
            waiters::wait_finished(callback);
        }
        false
    }
}

impl fmt::Debug for AfterFunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.inner {
            Inner::Never(_) => "never canceled",
            Inner::Ran(_) => "ran at registration",
            Inner::Registered { waiter, .. } if waiter.is_abandoned() => "stopped",
            Inner::Registered { waiter, .. } if waiter.is_notified() => "started",
            Inner::Registered { .. } => "registered",
        };
        f.debug_struct("AfterFunc").field("state", &state).finish()
    }
}

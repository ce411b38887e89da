//! `after_func`: run a function once a context is canceled (Go's `AfterFunc`),
//! with no thread or task per registration.
//!
//! A registration is one more entry on the node's waiter stack (`waiters.rs`)
//! whose wake-up is "run this function" instead of "unpark this thread". So it
//! inherits the stack's guarantees: registering and canceling are CASes on the
//! one state word and cannot miss each other (S3); a stopped registration is
//! an abandoned entry, freed by the amortized collection (W4).
//!
//! Invariants:
//! - **F1** A registration's entry makes the W1 transition exactly once:
//!   `WAITING → NOTIFIED` by the cancel that takes it, or `WAITING →
//!   ABANDONED` by `stop`. The winner alone touches the function: a notifier
//!   runs it, a stopper drops it. So `stop()` returns true exactly when the
//!   function never runs, and it runs at most once.
//! - **F2** A cancel queues the functions it wins and runs them on its own
//!   thread after the whole subtree is canceled and its epoch guard is gone:
//!   a function never runs inside a pin or a half-done cancel, and may itself
//!   derive, cancel or register. On a context already canceled, the function
//!   runs at once on the registering thread, before `after_func` returns.
//! - **F3** The notifier records which thread will run the function (a
//!   per-thread token) right after it wins F1, and marks the registration
//!   finished (a second state word, swapped to canceled) after the function
//!   returns. `stop_wait` on another thread blocks on that word; on the
//!   running thread itself (a call from inside the function, or from another
//!   function queued by the same cancel) it returns at once instead of
//!   deadlocking.
//! - **F4** A panic in a function is held like a panicking waker's: the
//!   cancel still completes and every other function runs; then the first
//!   panic is resumed on the thread that ran them.
//!
//! Linearization: a registration takes effect at its push CAS; `stop` and the
//! cancel decide at the F1 transition.

use std::fmt;

use crate::context::Context;
use crate::error::Error;
use crate::node::{self, NodeRef};
use crate::sync::{Arc, AtomicUsize, Ordering};
use crate::waiters::{self, Waiter};

/// The handle returned by [`Context::after_func`]: stops the registration
/// (Go's `stop` function).
///
/// Dropping an `AfterFunc` does **not** stop it: the function still runs when
/// the context is canceled, as in Go where the `stop` function may be
/// ignored. Call [`stop`](AfterFunc::stop) to unregister.
pub struct AfterFunc {
    inner: Inner,
}

enum Inner {
    /// The context can never be canceled: nothing was registered. Counts the
    /// stops, so the first returns true and later ones false (Go).
    Never(AtomicUsize),
    /// The context was already canceled and the function ran in
    /// `after_func`.
    Ran,
    /// An entry on `node`'s waiter stack.
    Registered { node: NodeRef, waiter: Arc<Waiter> },
}

impl Context {
    /// Arranges for `f` to run once this context is canceled, by a cancel or
    /// its deadline (Go's `AfterFunc`).
    ///
    /// - `f` runs exactly once, on the thread that cancels the context (the
    ///   timer thread for a deadline), after the whole subtree has been
    ///   canceled; if the context is already canceled, it runs at once on
    ///   this thread, before `after_func` returns.
    /// - No thread or task is spawned, and `f` never runs while a lock or an
    ///   epoch guard is held, so it may derive, cancel, wait on other
    ///   contexts or register more functions. Keep it short: it delays the
    ///   canceling thread, as a `Waker` does.
    /// - On a context that can never be canceled ([`Context::background`],
    ///   [`Context::without_cancel`]) nothing is registered.
    /// - If `f` panics, the cancel still completes and other functions still
    ///   run; the panic then resumes on the thread that ran `f` (returned from
    ///   [`CancelHandle::cancel`](crate::CancelHandle::cancel), from
    ///   `after_func` itself, or caught by the timer thread).
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
                // the whole subtree is canceled (F2), then run it here.
                node::cancel(node, Error::Canceled, None);
                waiters::run_callback(waiter.callback());
                waiters::panics::resume();
                AfterFunc { inner: Inner::Ran }
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
            Inner::Ran => false,
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
    /// by the same cancel on the same thread, it returns false at once
    /// instead of deadlocking.
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
        if let Inner::Registered { waiter, .. } = &self.inner {
            let callback = waiter.callback();
            if !waiter.is_abandoned() && !waiters::runs_here(callback) {
                waiters::wait_finished(callback);
            }
        }
        false
    }
}

impl fmt::Debug for AfterFunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.inner {
            Inner::Never(_) => "never canceled",
            Inner::Ran => "ran at registration",
            Inner::Registered { waiter, .. } if waiter.is_abandoned() => "stopped",
            Inner::Registered { waiter, .. } if waiter.is_notified() => "started",
            Inner::Registered { .. } => "registered",
        };
        f.debug_struct("AfterFunc").field("state", &state).finish()
    }
}

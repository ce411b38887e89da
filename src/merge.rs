//! Merged contexts: a child of one context that also ends when others do
//! (Go's proposed `context.Merge`, golang/go#36503).
//!
//! A merged context is a plain child of the *primary* context (its values,
//! its place in the tree) with two kinds of `after_func` registrations, so
//! no new protocol is involved (F1–F7 carry it):
//! - on each other context, a function that cancels the merged child with
//!   that context's err and cause;
//! - on the merged child itself, a function that stops those
//!   registrations once the child is done, however it ended — so a merged
//!   context dropped early leaves only abandoned entries on the others,
//!   which their waiter stacks collect (W4): memory stays flat however many
//!   merges a long-lived context sees.
//!
//! No thread, task or timer per link, and no recursion: a cancel that
//! reaches a merged context through another context runs as a callback of
//! that context's cancel, and callbacks run from a per-thread FIFO (F5), so
//! chains and diamonds of merges of any depth cancel iteratively. The
//! merged deadline is the earliest of all (a timer only if another
//! context's deadline is earlier than the primary's).

use crate::after_func::AfterFunc;
use crate::context::Context;
use crate::handle::CancelHandle;
use crate::plant::planted;
use crate::time::Deadline;
use crate::tree::node::{self, Label};
use crate::tree::state::How;

impl Context {
    /// A child of `self` that is also canceled when `other` is: Go's
    /// proposed `context.Merge`. It ends when `self` ends, when `other`
    /// ends, or when its handle cancels it, whichever reaches it first,
    /// and takes that cancellation's err and cause; its deadline is the
    /// earlier of the two; its values are `self`'s (the primary's). A
    /// merge with a context that is already done is born done.
    ///
    /// Nothing runs per merge but two `after_func` registrations (no
    /// thread or task); dropping the merged context's handle removes the
    /// one on `other`, so a long-lived `other` does not accumulate them.
    ///
    /// ```
    /// use ctxtree::{Cause, Context, Error};
    ///
    /// let (request, _request_handle) = Context::background().with_cancel();
    /// let (server, shutdown) = Context::background().with_cancel();
    /// // Work that must stop when either the request or the server ends.
    /// let (work, _work_handle) = request.merge(&server);
    /// assert!(!work.is_done());
    /// shutdown.cancel_with_cause(Cause::msg("shutting down"));
    /// assert_eq!(work.err(), Some(Error::Canceled));
    /// assert_eq!(work.cause().unwrap().to_string(), "shutting down");
    /// ```
    pub fn merge(&self, other: &Context) -> (Context, CancelHandle) {
        self.merge_all(std::slice::from_ref(other))
    }

    /// [`merge`](Context::merge) with any number of other contexts: the
    /// child ends when `self`, any of `others` or its handle ends it.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use ctxtree::{Context, Error};
    ///
    /// let root = Context::background();
    /// let (a, _a) = root.with_cancel();
    /// let (b, _b) = root.with_timeout(Duration::from_secs(5));
    /// let (c, c_handle) = root.with_cancel();
    /// let (merged, _handle) = a.merge_all([&b, &c]);
    /// // The earliest deadline of all (b's).
    /// assert!(merged.deadline().unwrap() <= Instant::now() + Duration::from_secs(5));
    /// c_handle.cancel();
    /// assert_eq!(merged.err(), Some(Error::Canceled));
    /// ```
    pub fn merge_all<'a>(
        &self,
        others: impl IntoIterator<Item = &'a Context>,
    ) -> (Context, CancelHandle) {
        let others: Vec<&Context> = others.into_iter().collect();
        let deadline = others
            .iter()
            .map(|other| other.deadline_raw())
            .fold(self.deadline_raw(), Deadline::min);
        let expired = deadline <= self.now();
        let (merged, handle) =
            self.with_deadline_labeled(deadline, expired, None, Some(Label::merged()));
        let Some(child) = merged.node() else {
            unreachable!("a derived context has a node");
        };
        let mut registrations: Vec<AfterFunc> = Vec::with_capacity(others.len());
        for other in others {
            if child.err().is_some() {
                break; // born done, or ended while registering
            }
            // A root or a detached context is never canceled.
            if other.node().is_none() {
                continue;
            }
            let watched = other.clone();
            if planted!("merge_unheld_child") {
                // Planted bug: the registration names the merged node without
                // a user of it (to spare the count), so the merged context
                // may be freed while the function runs.
                let child = child.as_ptr() as usize;
                registrations.push(other.after_func(move || {
                    if let Some(err) = watched.err() {
                        // SAFETY: none (planted).
                        node::cancel(
                            unsafe { &*(child as *const node::Node) },
                            err,
                            watched.cause(),
                            How::Merged,
                        );
                    }
                }));
                continue;
            }
            // The function holds a user of the merged node: it may run after
            // every handle of the merged context is gone.
            let child = child.clone();
            // Runs at once, on this thread, if `other` is already done.
            registrations.push(other.after_func(move || {
                if let Some(err) = watched.err() {
                    node::cancel(&child, err, watched.cause(), How::Merged);
                }
            }));
        }
        if !registrations.is_empty() {
            // Once the merged context is done, however it ended, nothing
            // is left registered on the others (their functions, holding
            // the merged node, are dropped at the stop).
            // (Dropping the returned handle does not stop the function.)
            drop(merged.after_func(move || {
                for registration in registrations {
                    registration.stop();
                }
            }));
        }
        (merged, handle)
    }
}

//! Firing a due deadline: the ordinary cancel of its node.
//!
//! Invariant:
//! - **T4** A fire is the ordinary cancel (first writer wins, S1), so a
//!   deadline racing a manual or parent cancel needs no extra protocol. The
//!   timer thread is the outermost caller of P1: a panic the fire's cancel
//!   resumes (a waker's, or a freed cause's `drop`) is caught and dropped,
//!   and the driver keeps running. The fire holds a user of its node (T8)
//!   and runs no `after_func` callback on the timer thread: those are
//!   handed to the callback runners (F6).

use crate::error::Error;
use crate::plant::planted;
use crate::time::deadline::Deadline;
use crate::time::hold::TimerHold;
use crate::tree::node;
use crate::tree::state::How;

/// One armed deadline: the node's own (effective) deadline and the timer's
/// hold on it (T6).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) struct Entry {
    pub(crate) deadline: Deadline,
    pub(crate) hold: TimerHold,
}

/// Fires `entry` if its node is still active (T4). A disarmed entry is
/// dropped: its node was canceled and only its block is held (T7).
pub(crate) fn fire(entry: Entry) {
    let Some(node) = entry.hold.take() else {
        return;
    };
    if node.err().is_some() {
        return;
    }
    let cause = node.timer_slot().cause.clone();
    stat!(TimerFired);
    // A panicking waker must not take the driver down with it (T4, P1).
    // The node's last user may be this one: its free (a cause's `drop`) is
    // inside the guard too.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        if planted!("fire_no_propagate") {
            node::cancel_without_propagation(&node, Error::DeadlineExceeded, cause);
        } else {
            node::cancel(&node, Error::DeadlineExceeded, cause, How::Deadline);
        }
    }));
}

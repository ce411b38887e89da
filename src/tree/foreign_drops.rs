//! Where a thread that must not run foreign drops sends them (K3): a
//! per-thread sink, installed by the collector on the timer thread, so
//! that `error.rs` — below the collector — hands a cause's drop there
//! without importing it.

use std::cell::Cell;

/// A job that drops foreign values on another thread.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

std::thread_local! {
    /// This thread's sink for foreign drops, if it has one (K3). No
    /// destructor: readable during thread-local destruction too.
    static SINK: Cell<Option<fn(Job)>> = const { Cell::new(None) };
}

/// Sends this thread's foreign drops to `sink` from now on.
pub(crate) fn send_to(sink: fn(Job)) {
    SINK.with(|s| s.set(Some(sink)));
}

/// This thread's sink for foreign drops, if any.
pub(crate) fn sink() -> Option<fn(Job)> {
    SINK.with(Cell::get)
}

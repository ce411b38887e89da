//! `tracing` events for cancellations (feature `tracing`): each cancel a
//! context makes itself — its handle, its deadline, a merge, a bridge, a
//! request abort, a task group — emits one event with its err, cause,
//! origin and name. Contexts canceled by an ancestor's cancel emit none
//! (a server's shutdown would otherwise log every context it has): the
//! ancestor's event says it all.
//!
//! The event is emitted at the level [`set_cancel_level`] chose (DEBUG by
//! default) with target `ctxtree::cancel`; its fields are computed only when
//! a subscriber wants it.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

use tracing::Level;

use crate::display::write_node_path;
use crate::origin::{kind_of, what_happened};
use crate::time::Deadline;
use crate::tree::node::{name_of, Node};
use crate::tree::state::How;

const OFF: u8 = 0;
static LEVEL: AtomicU8 = AtomicU8::new(2); // DEBUG

/// Sets the level of the cancellation events, or turns them off (`None`).
///
/// ```
/// ctxtree::trace::set_cancel_level(Some(tracing::Level::INFO));
/// let (ctx, h) = ctxtree::Context::background().named("job").with_cancel();
/// h.cancel(); // an INFO event, target `ctxtree::cancel`, name = "job"
/// ctxtree::trace::set_cancel_level(None);
/// # drop(ctx);
/// ```
pub fn set_cancel_level(level: Option<Level>) {
    let code = match level {
        None => OFF,
        Some(Level::TRACE) => 1,
        Some(Level::DEBUG) => 2,
        Some(Level::INFO) => 3,
        Some(Level::WARN) => 4,
        Some(Level::ERROR) => 5,
    };
    LEVEL.store(code, Ordering::Relaxed);
}

/// The node's path, then what happened to it: the origin's sentence.
struct Origin<'a>(&'a Node, How);

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_node_path(f, self.0, Deadline::now())?;
        f.write_str(what_happened(kind_of(self.1)))
    }
}

/// Emits the event for `node`, just canceled by its own claim of kind `how`.
#[cold]
pub(crate) fn canceled(node: &Node, how: How) {
    macro_rules! emit {
        ($level:expr) => {
            tracing::event!(
                target: "ctxtree::cancel",
                $level,
                err = %node.err().map_or("", |e| if e.is_timeout() { "deadline exceeded" } else { "canceled" }),
                cause = %node.cause().map(|c| c.to_string()).unwrap_or_default(),
                origin = %Origin(node, how),
                name = name_of(node).as_deref().unwrap_or(""),
                "context canceled"
            )
        };
    }
    match LEVEL.load(Ordering::Relaxed) {
        OFF => {}
        1 => emit!(Level::TRACE),
        2 => emit!(Level::DEBUG),
        3 => emit!(Level::INFO),
        4 => emit!(Level::WARN),
        _ => emit!(Level::ERROR),
    }
}

//! The `tracing` event of a cancel (feature `tracing`; the public switch is
//! `ctxtree::trace`): each cancel a node makes itself — a claim whose `H`
//! is not inherited (S4) — emits one event with its err, cause, origin and
//! name. Nodes canceled by an ancestor's cancel emit none (a server's
//! shutdown would otherwise log every context it has): the ancestor's
//! event says it all. Fields are computed only when a subscriber wants the
//! event.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

use tracing::Level;

use super::layout::Node;
use super::names;
use super::path::write_node_path;
use crate::time::Deadline;
use crate::tree::state::How;

/// 0: off; 1–5: TRACE to ERROR. DEBUG by default.
static LEVEL: AtomicU8 = AtomicU8::new(2);

pub(crate) fn set_level(level: Option<Level>) {
    let code = match level {
        None => 0,
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
        f.write_str(self.1.sentence())
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
                name = names::get(node).as_deref().unwrap_or(""),
                "context canceled"
            )
        };
    }
    match LEVEL.load(Ordering::Relaxed) {
        0 => {}
        1 => emit!(Level::TRACE),
        2 => emit!(Level::DEBUG),
        3 => emit!(Level::INFO),
        4 => emit!(Level::WARN),
        _ => emit!(Level::ERROR),
    }
}

//! `tracing` events for cancellations (feature `tracing`): each cancel a
//! context makes itself — its handle, its deadline, a merge, a bridge, a
//! request abort, a task group — emits one event, target `ctxtree::cancel`,
//! with its `err`, `cause`, `origin` and `name`; contexts canceled by an
//! ancestor's cancel emit none. The events come from the tree
//! (`tree/node/events.rs`); this module is their switch.

use tracing::Level;

/// Sets the level of the cancellation events (DEBUG until set), or turns
/// them off (`None`).
///
/// ```
/// ctxtree::trace::set_cancel_level(Some(tracing::Level::INFO));
/// let (ctx, h) = ctxtree::Context::background().named("job").with_cancel();
/// h.cancel(); // an INFO event, target `ctxtree::cancel`, name = "job"
/// ctxtree::trace::set_cancel_level(None);
/// # drop(ctx);
/// ```
pub fn set_cancel_level(level: Option<Level>) {
    crate::tree::node::events::set_level(level);
}

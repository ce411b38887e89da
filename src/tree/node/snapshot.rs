//! What the tree dump reads of a live node: its children, each with a
//! user of its own (visited under L9), its waiters (counted by a
//! collection, W4), when it was derived and whether it is a merge.

use super::layout::Node;
use super::refs::NodeRef;
use crate::tree::children::Visit;
use crate::tree::state;
use crate::tree::waiters::{self, Callbacks, Census};

/// Up to `shown` live children of `node`, each held by a new user, and
/// what the visit found of the rest (counted up to `count_cap`).
pub(crate) fn children(node: &Node, shown: usize, count_cap: usize) -> (Vec<NodeRef>, Visit) {
    let mut held = Vec::new();
    let mut take = |child: *const Node| {
        if held.len() == shown {
            return false;
        }
        // SAFETY: the visit hands over a live, linked, not deleted node
        // under L9, which allows a grant of a user (N1); the user is ours.
        unsafe {
            (*child).grant(1);
            held.push(NodeRef::adopt(child));
        }
        true
    };
    let visit = node.children.visit::<Node>(count_cap, &mut take);
    (held, visit)
}

/// Who waits on `node` while it is active (a `wait`, a `done()` future, an
/// `after_func` function), counted over at most `limit` entries, and
/// whether there were more: a collection of its stack (W4, W6), which
/// frees the abandoned entries it meets. The caller holds a user of `node`.
pub(crate) fn waiters(node: &Node, limit: usize) -> (Census, bool) {
    let word = node.state_word();
    if state::is_canceled(word) || state::waiter_head(word) == 0 {
        return (Census::default(), false);
    }
    let mut callbacks = Callbacks::default();
    let (census, rest) = waiters::census(&node.state, &node.waiter_gc, &mut callbacks, limit);
    let more = rest.is_some();
    super::cancel::after_collection(node, callbacks, rest);
    (census, more)
}

/// When `node` was derived, if it was named (the names table keeps it).
pub(crate) fn born(node: &Node) -> Option<std::time::Instant> {
    super::names::label(node).map(|label| label.born)
}

/// Whether `merge` derived `node`.
pub(crate) fn merged(node: &Node) -> bool {
    node.parent.merged()
}

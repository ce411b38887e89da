//! What the tree dump reads of a live node: its children, each with a
//! user of its own (visited under L9), and its waiters' presence.

use super::layout::Node;
use super::refs::NodeRef;
use crate::tree::children::Visit;
use crate::tree::state;

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

/// Whether anyone waits on `node` (a `wait`, a `done()` future, an
/// `after_func` function) while it is active.
pub(crate) fn has_waiters(node: &Node) -> bool {
    let word = node.state_word();
    !state::is_canceled(word) && state::waiter_head(word) != 0
}

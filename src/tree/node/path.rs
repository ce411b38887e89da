//! How a node's cancel chain prints, root first: Go's derivation path
//! (`context.Background.WithCancel.WithDeadline([1.500s])`) with names;
//! `display.rs` interleaves the value layers, origins and cancel events
//! print the chain alone.

use std::fmt;

use super::layout::{Kind, Node};
use super::names;
use crate::time::Deadline;

/// One cancel node's step of the path: `.WithCancel`, `.WithDeadline([1.500s])`,
/// with the node's name first inside the parentheses if it has one.
pub(crate) fn write_node(f: &mut fmt::Formatter<'_>, node: &Node, now: Deadline) -> fmt::Result {
    let name = names::get(node);
    match (node.kind(), name) {
        (Kind::Cancel, None) => f.write_str(".WithCancel"),
        (Kind::Cancel, Some(name)) => write!(f, ".WithCancel({name:?})"),
        (Kind::Deadline, name) => {
            // Go prints the wall-clock deadline and the time left;
            // an `Instant` has no wall clock, so only the time left.
            let (past, left) = node.deadline().remaining(now);
            let sign = if past { "-" } else { "" };
            match name {
                None => write!(f, ".WithDeadline([{sign}{left:.3?}])"),
                Some(name) => write!(f, ".WithDeadline({name:?}, [{sign}{left:.3?}])"),
            }
        }
    }
}

/// The path of `node`'s cancel chain alone, root first (value layers are
/// not reachable from a node): for origins and cancel events.
pub(crate) fn write_node_path(
    f: &mut fmt::Formatter<'_>,
    node: &Node,
    now: Deadline,
) -> fmt::Result {
    let mut nodes = vec![node];
    while let Some(parent) = nodes[nodes.len() - 1].parent() {
        nodes.push(parent);
    }
    f.write_str(node.root().name())?;
    for node in nodes.into_iter().rev() {
        write_node(f, node, now)?;
    }
    Ok(())
}

//! Context names: a side table from a named node's address to its name, so
//! that unnamed nodes (nearly all) carry nothing for it. A node is named at
//! its derivation and tagged in its parent link (`ParentLink::named`); its
//! entry is removed when it is freed (`refs::free`), before its block can
//! hold another node. Readers (`Display`, origins, the dump)
//! hold a user of the node, or reach it where it cannot be freed, so the
//! entry they find is the node's own.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::layout::Node;

/// A context's name: a static string, or one made per request.
pub(crate) type Name = Cow<'static, str>;

/// Shards of the table, by address: naming from many threads at once
/// contends on one of these only.
const SHARDS: usize = 16;

#[allow(clippy::declare_interior_mutable_const)] // each array element is its own static lock
const EMPTY: Mutex<Option<HashMap<usize, Name>>> = Mutex::new(None);
static TABLE: [Mutex<Option<HashMap<usize, Name>>>; SHARDS] = [EMPTY; SHARDS];

fn shard(address: usize) -> MutexGuard<'static, Option<HashMap<usize, Name>>> {
    // Nodes are 8-aligned and mostly 64 bytes apart: skip the low bits.
    TABLE[(address >> 6) % SHARDS]
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn insert(node: &Node, name: Name) {
    let address = node as *const Node as usize;
    shard(address)
        .get_or_insert_with(HashMap::new)
        .insert(address, name);
}

pub(super) fn remove(node: &Node) {
    let address = node as *const Node as usize;
    if let Some(table) = shard(address).as_mut() {
        table.remove(&address);
    }
}

/// The name of `node`, if it was named.
pub(crate) fn get(node: &Node) -> Option<Name> {
    if !node.parent.named() {
        return None;
    }
    let address = node as *const Node as usize;
    shard(address).as_ref()?.get(&address).cloned()
}

//! Context labels: a side table from a labeled node's address to its
//! [`Label`] — a name, whether it is a merge, when it was derived — so that
//! plain nodes (nearly all) carry nothing for it. A node is labeled at its
//! derivation and tagged in its parent link (`ParentLink::named`); its
//! entry is removed when it is freed (`refs::free`), before its block can
//! hold another node. Readers (`Display`, origins, the dump)
//! hold a user of the node, or reach it where it cannot be freed, so the
//! entry they find is the node's own.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::layout::{Node, MERGED, NAMED};

/// A context's name: a static string, or one made per request.
pub(crate) type Name = Cow<'static, str>;

/// What a derivation says of its node beyond its shape: a name (kept in
/// the side table, with the time of the derivation for the dump's age) and
/// whether `merge` derived it (a tag in the parent link only).
#[derive(Clone, Debug)]
pub(crate) struct Label {
    /// Its name ([`Context::named`](crate::Context::named)).
    pub(crate) name: Option<Name>,
    /// Derived by `merge` (shown as such in the dump).
    pub(crate) merged: bool,
    /// When it was derived (the dump's age).
    pub(crate) born: Instant,
}

impl Label {
    pub(crate) fn named(name: Name) -> Label {
        Label {
            name: Some(name),
            merged: false,
            born: Instant::now(),
        }
    }

    pub(crate) fn merged() -> Label {
        Label {
            name: None,
            merged: true,
            born: Instant::now(),
        }
    }

    /// The parent link's tags for a node with this label.
    pub(super) fn tags(&self) -> usize {
        let named = if self.name.is_some() { NAMED } else { 0 };
        let merged = if self.merged { MERGED } else { 0 };
        named | merged
    }
}

/// Shards of the table, by address: naming from many threads at once
/// contends on one of these only.
const SHARDS: usize = 16;

#[allow(clippy::declare_interior_mutable_const)] // each array element is its own static lock
const EMPTY: Mutex<Option<HashMap<usize, Label>>> = Mutex::new(None);
static TABLE: [Mutex<Option<HashMap<usize, Label>>>; SHARDS] = [EMPTY; SHARDS];

fn shard(address: usize) -> MutexGuard<'static, Option<HashMap<usize, Label>>> {
    // Nodes are 8-aligned and mostly 64 bytes apart: skip the low bits.
    TABLE[(address >> 6) % SHARDS]
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn insert(node: &Node, label: Label) {
    let address = node as *const Node as usize;
    shard(address)
        .get_or_insert_with(HashMap::new)
        .insert(address, label);
}

/// Removes `node`'s entry. A shard a quarter full or less is shrunk to
/// half its room (`MIN_ROOM` at least), so after a burst of named
/// contexts the table gives its room back, not only its entries (each
/// shrink moves at most half the entries the shard lost since its last
/// resize: O(1) amortized per removal).
pub(super) fn remove(node: &Node) {
    let address = node as *const Node as usize;
    let mut shard = shard(address);
    let Some(table) = shard.as_mut() else {
        return;
    };
    table.remove(&address);
    if table.capacity() > MIN_ROOM && table.len() * 4 <= table.capacity() {
        table.shrink_to((table.len() * 2).max(MIN_ROOM));
    }
}

/// Entries a shard keeps room for however few it holds (no resizing for a
/// handful of named contexts coming and going).
const MIN_ROOM: usize = 64;

/// The name of `node`, if it was named.
pub(crate) fn get(node: &Node) -> Option<Name> {
    label(node)?.name
}

/// The label of `node`, if it was named (the table's entry).
pub(crate) fn label(node: &Node) -> Option<Label> {
    if !node.parent.named() {
        return None;
    }
    let address = node as *const Node as usize;
    shard(address).as_ref()?.get(&address).cloned()
}

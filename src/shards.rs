//! Shards of a contended children list: one list head per cache line, so
//! threads deriving from one shared parent write different lines.
//!
//! A parent's list starts as one head word (`children.rs`). The first insert
//! that loses its CAS to another thread's insert or unlink replaces that word
//! with a pointer to a [`ShardBlock`] (L8): `SHARDS` independent lists, each
//! with its own sweep budget, the first of which takes over the nodes already
//! linked. From then on each thread inserts into the shard its
//! [`hint`] names, and a canceler closes and walks every shard.
//!
//! Invariants:
//! - A shard is a plain list (L1–L7 hold for each shard on its own) and is
//!   never sharded itself, so a walk meets at most one level of shards.
//! - A block is immutable once published (only its shards' atomic words
//!   change) and lives exactly as long as the node whose list it is: it is
//!   freed with the node, so whatever may touch the node may touch it.

use crossbeam_utils::CachePadded;

use crate::children::{ChildList, SweepBudget};

/// Shards per block: a power of two. A sharded list costs `SHARDS` padded
/// lines (1 KiB at 8 × 128 bytes); two threads collide on a shard only if
/// their hints agree modulo `SHARDS`. Two under loom (its models run at most
/// three threads).
pub(crate) const SHARDS: usize = if cfg!(loom) { 2 } else { 8 };

/// One shard: a list head and its sweep budget, alone on their line.
pub(crate) struct Shard {
    pub(crate) list: ChildList,
    pub(crate) budget: SweepBudget,
}

/// The shards of one list. Aligned to the padding (128 bytes), so a pointer
/// to it has seven low zero bits for the head word's tags.
pub(crate) struct ShardBlock {
    shards: [CachePadded<Shard>; SHARDS],
}

impl ShardBlock {
    /// A block whose first shard holds the list that starts at `first` (the
    /// nodes of the head word being replaced); the others are empty.
    pub(crate) fn new(first: usize) -> Box<ShardBlock> {
        Box::new(ShardBlock {
            shards: std::array::from_fn(|i| {
                CachePadded::new(Shard {
                    list: if i == 0 {
                        ChildList::with_first(first)
                    } else {
                        ChildList::new()
                    },
                    budget: SweepBudget::new(),
                })
            }),
        })
    }

    /// Every shard, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Shard> {
        self.shards.iter().map(|padded| &**padded)
    }

    /// The shard the calling thread inserts into (and tries to unlink from
    /// first, L7).
    pub(crate) fn mine(&self) -> &Shard {
        &self.shards[hint() % SHARDS]
    }
}

/// A small number naming the calling thread: consecutive threads get
/// consecutive numbers, so up to `SHARDS` threads get distinct shards.
#[cfg(not(loom))]
fn hint() -> usize {
    crate::sync::thread::token()
}

/// Under loom: numbered in the order the model's threads first ask, from a
/// counter that each execution starts afresh (loom replays executions and
/// needs the same choices for the same schedule).
#[cfg(loom)]
fn hint() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    loom::lazy_static! {
        static ref NEXT: AtomicUsize = AtomicUsize::new(0);
    }
    loom::thread_local! {
        static HINT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    HINT.with(|h| *h)
}

//! Shards of a contended children list: one list head per cache line, so
//! threads deriving from one shared parent write different lines.
//!
//! A parent's list starts as one head word (`children.rs`). The first insert
//! that loses its CAS to another thread's insert or unlink replaces that word
//! with a pointer to a [`ShardBlock`] (L8): [`shard_count`] independent lists, each
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

/// Shards per block under loom (its models run at most three threads).
#[cfg(loom)]
pub(crate) const SHARDS: usize = 2;

/// Shards per block: the number of cores rounded up to a power of two,
/// between 4 and 64, so that as many threads as there are cores can each
/// write their own line. A sharded list costs that many 128-byte lines (512
/// bytes on 2 cores, 2 KiB on 16). Threads collide on a shard only if their
/// hints agree modulo the count.
#[cfg(not(loom))]
pub(crate) fn shard_count() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let count = COUNT.load(Ordering::Relaxed);
    if count != 0 {
        return count;
    }
    let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
    let count = cores.next_power_of_two().clamp(4, 64);
    COUNT.store(count, Ordering::Relaxed);
    count
}

#[cfg(loom)]
pub(crate) fn shard_count() -> usize {
    SHARDS
}

/// One shard: a list head and its sweep budget, alone on their line.
pub(crate) struct Shard {
    pub(crate) list: ChildList,
    pub(crate) budget: SweepBudget,
}

/// The shards of one list (`shard_count()` of them, fixed at allocation).
/// Aligned to 128 bytes, so a pointer to it has seven low zero bits for the
/// head word's tags.
#[repr(align(128))]
pub(crate) struct ShardBlock {
    shards: Box<[CachePadded<Shard>]>,
    /// `shards.len() - 1` (a power of two minus one).
    mask: usize,
}

impl ShardBlock {
    /// A block whose first shard holds the list that starts at `first` (the
    /// nodes of the head word being replaced); the others are empty.
    pub(crate) fn new(first: usize) -> Box<ShardBlock> {
        let count = shard_count();
        let shards = (0..count)
            .map(|i| {
                CachePadded::new(Shard {
                    list: if i == 0 {
                        ChildList::with_first(first)
                    } else {
                        ChildList::new()
                    },
                    budget: SweepBudget::new(),
                })
            })
            .collect();
        Box::new(ShardBlock {
            shards,
            mask: count - 1,
        })
    }

    /// Every shard, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Shard> {
        self.shards.iter().map(|padded| &**padded)
    }

    /// The shard the calling thread inserts into (and tries to unlink from
    /// first, L7).
    pub(crate) fn mine(&self) -> &Shard {
        &self.shards[hint() & self.mask]
    }
}

/// A small number naming the calling thread: consecutive threads get
/// consecutive numbers, so up to `shard_count()` threads get distinct shards.
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

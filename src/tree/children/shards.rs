//! Shards of a contended children list: one list head per cache line, so
//! threads deriving from one shared parent write different lines.
//!
//! A parent's list starts as one head word (`list.rs`). An insert that
//! loses its CAS twice to other threads' inserts or unlinks replaces that
//! word with a pointer to a [`ShardBlock`] (L8): [`shard_count`] independent
//! lists, each with its own sweep budget, the first of which takes over the
//! nodes already linked. From then on each thread inserts into the shard its
//! [`hint`] names, and a canceler closes and walks every shard. Each sweep
//! of a shard also sweeps one other, idle shard, in turn
//! ([`ShardBlock::other_to_sweep`]).
//!
//! Invariants:
//! - A shard is a plain list (L1–L7 hold for each shard on its own) and is
//!   never sharded itself, so a walk meets at most one level of shards.
//! - A block is immutable once published (only its shards' atomic words,
//!   and their heuristic sweep memos, change) and lives exactly as long as
//!   the node whose list it is: it is freed with the node, so whatever may
//!   touch the node may touch it.
//! - Every block has `shard_count()` shards: the count is set once per
//!   process and no block records its own, so shard `i` of any block is at
//!   `first + i` for every `i < shard_count()`.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::marker::PhantomData;

use crossbeam_utils::CachePadded;

use super::list::ChildList;
use super::sweep::SweepBudget;

/// Shards per block under loom (its models run at most three threads).
#[cfg(loom)]
pub(crate) const SHARDS: usize = 2;

/// Shards per block: the number of cores rounded up to a power of two,
/// between 4 and 64, so that as many threads as there are cores can each
/// write their own line. A sharded list costs that many 128-byte lines (512
/// bytes on 2 cores, 2 KiB on 16). Threads collide on a shard only if their
/// hints agree modulo the count.
#[cfg(not(loom))]
#[inline]
pub(crate) fn shard_count() -> usize {
    let count = SHARD_COUNT.load(std::sync::atomic::Ordering::Relaxed);
    if count != 0 {
        return count;
    }
    first_shard_count()
}

#[cfg(not(loom))]
static SHARD_COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[cfg(not(loom))]
#[cold]
fn first_shard_count() -> usize {
    use std::sync::atomic::Ordering;
    let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
    let count = cores.next_power_of_two().clamp(4, 64);
    // Set once: every block has this many shards, and no block records its
    // own count, so a second answer (the CPU count may change) must lose.
    match SHARD_COUNT.compare_exchange(0, count, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => count,
        Err(first) => first,
    }
}

#[cfg(loom)]
pub(crate) fn shard_count() -> usize {
    SHARDS
}

/// One shard: a list head, its sweep budget and its sweep rotation, alone
/// on their line.
pub(crate) struct Shard {
    pub(crate) list: ChildList,
    pub(crate) budget: SweepBudget,
    /// The other shard this shard's next sweep looks at (`index + 1`; 0
    /// before the first look) and that shard's budget word when this one
    /// last looked: see [`ShardBlock::other_to_sweep`]. A heuristic,
    /// updated with plain loads and stores of std atomics even under loom
    /// (it is per block, so each model execution starts afresh). Two words,
    /// not one packed `usize`, so it holds on 32-bit targets too. Threads
    /// sharing this shard may update them at once (lost updates, or a pair
    /// from two writers): a look misjudged that way costs one extra sweep
    /// of another shard, or postpones one until the rotation comes back.
    memo_look: std::sync::atomic::AtomicU32,
    memo_budget: std::sync::atomic::AtomicU32,
    /// Model-checking oracle, as the node's (`node/layout.rs`), read in the
    /// first shard: set when the block is freed with its node; every access
    /// asserts it is clear.
    #[cfg(loom)]
    freed: std::sync::atomic::AtomicBool,
    /// Model-checking oracle (first shard): read by every access, written by
    /// the free, so loom reports an access not ordered before the free.
    #[cfg(loom)]
    alive: crate::sync::UnsafeCell<()>,
}

/// A padded shard: 128 bytes aligned to 128 (crossbeam's `CachePadded` on
/// x86-64), so the head word's three tag bits are free.
type Padded = CachePadded<Shard>;

/// The shards of one list: [`shard_count`] padded shards in one allocation,
/// named by the address of the first (what the sharded head word holds).
/// There is no header: the count is the process-wide `shard_count()`, and
/// shard `i` is at `first + i`, so finding the calling thread's shard is
/// address arithmetic on the head word (a header holding a pointer to the
/// shards, and their count, made every sharded insert and unlink wait for
/// one more load).
///
/// A copyable raw handle rather than a reference: a reference to the first
/// shard would not cover the others. `'a` is the life of the list whose
/// head word it came from (the block is freed with that list).
#[derive(Clone, Copy)]
pub(crate) struct ShardBlock<'a> {
    first: *const Padded,
    _list: PhantomData<&'a ChildList>,
}

impl<'a> ShardBlock<'a> {
    /// Allocates a block whose first shard holds the list that starts at
    /// `first` (the nodes of the head word being replaced); the others are
    /// empty. Returns its address, for the head word.
    pub(crate) fn allocate(first: usize) -> usize {
        let count = shard_count();
        let layout = Layout::array::<Padded>(count).expect("at most 64 shards");
        // SAFETY: `count` ≥ 1, so the layout has a non-zero size.
        let block = unsafe { alloc(layout) } as *mut Padded;
        if block.is_null() {
            handle_alloc_error(layout);
        }
        for i in 0..count {
            let shard = CachePadded::new(Shard {
                list: if i == 0 {
                    ChildList::with_first(first)
                } else {
                    ChildList::new()
                },
                budget: SweepBudget::new(),
                memo_look: std::sync::atomic::AtomicU32::new(0),
                memo_budget: std::sync::atomic::AtomicU32::new(0),
                #[cfg(loom)]
                freed: std::sync::atomic::AtomicBool::new(false),
                #[cfg(loom)]
                alive: crate::sync::UnsafeCell::new(()),
            });
            // SAFETY: `i < count`, inside the fresh allocation.
            unsafe { block.add(i).write(shard) };
        }
        block as usize
    }

    /// The block at `address`, from a sharded head word.
    ///
    /// # Safety
    /// `address` came from [`ShardBlock::allocate`], and the block stays
    /// allocated for `'a` (it is freed only with its list).
    #[inline]
    pub(crate) unsafe fn at(address: usize) -> ShardBlock<'a> {
        ShardBlock {
            first: address as *const Padded,
            _list: PhantomData,
        }
    }

    /// Drops the block's shards and frees it.
    ///
    /// # Safety
    /// As [`ShardBlock::at`], and nobody can reach the block any more (its
    /// list is being dropped); it is not used again.
    pub(crate) unsafe fn free(self) {
        let count = shard_count();
        let block = self.first as *mut Padded;
        // SAFETY: the caller's contract; `count` shards were written by
        // `allocate`, with this layout.
        unsafe {
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(block, count));
            dealloc(
                block as *mut u8,
                Layout::array::<Padded>(count).expect("as allocated"),
            );
        }
    }

    /// Shard `i` (`i < shard_count()`).
    #[inline]
    fn shard(self, i: usize) -> &'a Shard {
        debug_assert!(i < shard_count());
        // SAFETY: `i` is in bounds; the block lives for `'a` (`at`).
        unsafe { &*self.first.add(i) }
    }

    /// Every shard, in order.
    pub(crate) fn iter(self) -> impl Iterator<Item = &'a Shard> {
        self.assert_live();
        (0..shard_count()).map(move |i| self.shard(i))
    }

    /// The shard the calling thread inserts into (and tries to unlink from
    /// first, L7), with its index.
    #[inline]
    pub(crate) fn mine(self) -> (usize, &'a Shard) {
        self.assert_live();
        let at = hint() & (shard_count() - 1);
        (at, self.shard(at))
    }

    /// The other shard to sweep, if any, now that shard `at`'s own sweep is
    /// due. Sweeps are driven by inserts, so a shard that gets no more
    /// inserts (its threads are gone, or its children are dropped by other
    /// threads, so L7 misses them) would keep its deleted children until
    /// the close. So each sweep of `at` looks at one other shard, in turn,
    /// and sweeps it if its budget word (insert count and sweep generation)
    /// has not moved since `at`'s previous sweep looked — no insert into it
    /// since — or at the first look. (The count alone misled: two threads
    /// inserting at the same rate find each other's count at the same phase
    /// of its 64-insert cycle at every look.) A shard that
    /// still gets inserts sweeps itself, and is left alone: sweeping another
    /// thread's shard writes its hot line and makes its L7 unlinks fail
    /// meanwhile (sweeping one other shard on every sweep, idle or not, cost
    /// a third of the 16-thread throughput; on every 16th, still 15 %).
    /// Reads one word of the other shard's line, writes only `at`'s.
    pub(crate) fn other_to_sweep(self, at: usize) -> Option<&'a Shard> {
        self.assert_live();
        let mask = shard_count() - 1;
        let next_after = |j: usize| {
            let next = (j + 1) & mask;
            if next == at {
                (next + 1) & mask
            } else {
                next
            }
        };
        use std::sync::atomic::Ordering::Relaxed;
        let mine = self.shard(at);
        let (look, idle) = match mine.memo_look.load(Relaxed) {
            0 => (next_after(at), true),
            seen => {
                let look = seen as usize - 1;
                let budget = self.shard(look).budget.word();
                (look, budget == mine.memo_budget.load(Relaxed))
            }
        };
        let next = next_after(look);
        mine.memo_look.store(next as u32 + 1, Relaxed);
        mine.memo_budget
            .store(self.shard(next).budget.word(), Relaxed);
        idle.then(|| self.shard(look))
    }

    /// Under loom, fails the model if the block was freed.
    #[inline(always)]
    fn assert_live(self) {
        #[cfg(loom)]
        {
            // SAFETY: under loom a freed block's memory is kept (`dispose`).
            let first = unsafe { &*self.first };
            assert!(
                !first.freed.load(std::sync::atomic::Ordering::Relaxed),
                "use after free of a shard block"
            );
            first.alive.with(|_| ());
        }
    }

    /// Under loom, what freeing does (the memory is kept, as the node's).
    #[cfg(loom)]
    pub(crate) fn dispose(self) {
        // SAFETY: as in `assert_live`.
        let first = unsafe { &*self.first };
        first.alive.with_mut(|_| ());
        first
            .freed
            .store(true, std::sync::atomic::Ordering::Relaxed);
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

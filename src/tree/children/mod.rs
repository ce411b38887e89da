//! The children list: an intrusive, lock-free singly-linked list of a node's
//! cancelable children, threaded through the children themselves.
//!
//! The algorithm is Harris's list (Harris 2001, "A pragmatic implementation of
//! non-blocking linked-lists") specialised to what a cancellation tree needs:
//! inserts only at the head, logical deletion by a mark bit in the deleted
//! node's own `next`, and physical unlinking done in batches by a single
//! *sweeper* at a time, amortized over inserts, except that a deleted node
//! still first in the list when its last user leaves is unlinked from the
//! head by that user (L7). Memory is reclaimed with crossbeam-epoch: walkers
//! are pinned, and the list's reference to a node is ended through `defer`
//! unless the head word proves that no walker can reach it (L6, L7).
//!
//! ```text
//!   head (in the parent):  [ first child ptr ...... | HELPED SWEEPING CLOSED ]
//!   sharded head (L8):     [ ShardBlock ptr ....... | 1      0        0      ]
//!   link (in each child):  [ next sibling ptr ..... |        DETACHED DELETED ]
//! ```
//!
//! - `CLOSED`: the parent is canceled; no insert succeeds any more. While the
//!   pointer is still there, cancelers are walking the children; `CLOSED` with
//!   a 0 pointer means every descendant below is canceled (L3).
//! - `SWEEPING`: one thread owns the right to unlink marked nodes (L5).
//! - `HELPED`: a thread other than the closer walks (or walked) this closed
//!   list, so the closer must release through the epoch (L6).
//! - `DELETED`: the child canceled itself; it may be unlinked.
//! - `DETACHED`: the closer's claim pass has passed this child: its
//!   successor can no longer be unlinked, and the sweeper stops here (L4).
//!
//! Invariants:
//! - **L1** Every node that is not `DELETED` and was inserted before the
//!   list was closed is reachable from `head` by following `next` pointers.
//!   Only `DELETED` nodes are unlinked: by the sweeper, or by their last
//!   user from the head (L7).
//! - **L2** An insert succeeds only on an open head (CAS), and the close is a
//!   CAS setting `CLOSED` on the same word: every insert is ordered before
//!   the close (and the closer's walk sees it) or fails and sees `CLOSED`.
//! - **L3** The head is reset to `CLOSED | 0` only by the thread whose
//!   `fetch_or` closed it, and only once every descendant below is canceled.
//! - **L4** The list holds one reference to each linked node (node.rs: its
//!   `LISTED` bit, N1). It is ended exactly once: by the sweeper if it
//!   unlinked the node, by the node's last user if it unlinked it from the
//!   head (L7), else by the closer.
//!   Where a sweeper ran at the close, the closer's claim pass sets `DETACHED`
//!   on each node it passes with an RMW that reads the successor: it reaches
//!   only nodes still linked, and every later unlink through a marked node
//!   fails. Where no sweeper ran, the closer needs no mark. The release goes
//!   through `Guard::defer`, so a pinned walker that reached the node can
//!   keep following it, unless L6 proves that no other thread can reach the
//!   node any more.
//! - **L5** At most one sweeper runs (it owns `SWEEPING`). Sweeps start after
//!   `budget` inserts, where `budget = max(MIN_SWEEP, live nodes found by the
//!   last sweep)`: each sweep walks O(n) nodes after Θ(n) inserts, so removal
//!   is O(1) amortized and the list holds at most about twice its live nodes
//!   plus `MIN_SWEEP`. Deleted nodes at the head are unlinked by the sweeper
//!   with `CAS(head: node | SWEEPING → successor | SWEEPING)`, expecting the
//!   head exactly as it left it (an insert or a close makes it fail); every
//!   other deleted node through its unmarked predecessor's link. The sweeper
//!   pins before it takes `SWEEPING`, so a closer's epoch release of the
//!   nodes it reads waits for it.
//! - **L6** A thread reaches a listed node without owning a count of it only
//!   while it is pinned and either sweeps the node's open list (owns
//!   `SWEEPING`), closed the list, or has set `HELPED` on the closed list with
//!   a read-modify-write that still returned a pointer. So a release may skip
//!   the epoch when the releaser's own RMW on the head proves the others
//!   absent: the sweeper's final `fetch_and(!SWEEPING)` finding the list open
//!   (a closer comes later in the head's modification order, synchronizes with
//!   that RMW, and walks a list the unlinks already left), or the closer's reset
//!   `swap` finding no `HELPED` when no sweeper ran at the close (a helper's
//!   `HELPED` RMW after the reset returns a null pointer and walks nothing).
//! - **L7** The last user of a listed node marked `DELETED` unlinks it if it
//!   is still first: `CAS(head: node → successor)` with no flag bits, where
//!   the successor is read from the node's link after the mark. The mark
//!   froze that successor (every unlink through a marked node fails), so it
//!   is current even if the head word returned to `node` meanwhile (ABA: a
//!   sweep started and ended, newer nodes came and left). The CAS succeeds
//!   only on an open list with no sweep running, so no thread walks the list
//!   at that moment, and a later walk starts past `node` (it has no
//!   predecessor): the caller takes the list's reference and may free the
//!   node at once (no epoch). The sweeper's own head unlinks (L5) need
//!   `SWEEPING`, so they never race this one, and a node they removed never
//!   shows as first again. Acquire on the CAS orders every earlier
//!   walker's accesses to `node` (each walk ends with an RMW on the head)
//!   before that. Linearization point: the CAS.
//! - **L8** An insert that loses its CAS twice to other threads' inserts or
//!   unlinks (the head's pointer changed, the list is open) *shards* the list:
//!   `CAS(head: word → block | SHARDED)` where the block's first shard starts
//!   at `word`'s pointer (`shards.rs`). It is refused while `SWEEPING` is
//!   set: the sweeper's releases rely on RMWs on the word it swept (L6). A
//!   sharded head is never written again; each shard is a plain list for
//!   which L1–L7 hold, inserts go to the calling thread's shard, L7 tries
//!   the calling thread's shard, and the close closes every shard (its
//!   `close` returns `Close::Sharded`, and the walk closes and walks each).
//!   Each sweep of a shard also sweeps one other shard, in turn, if that
//!   one had no insert since this shard last looked (`shards.rs`), so L5's
//!   bound holds for shards nobody inserts into any more.
//!   Why nothing is lost: before the sharding CAS the list was open and
//!   unswept, so no thread walked it (L6), and the nodes it held are the
//!   first shard's from the CAS on (the CAS continues the release sequences
//!   of their inserts, so a shard's closer sees them published); an insert
//!   or L7 unlink still aimed at the old word fails its CAS and retries on
//!   the shards or gives up; a sweep started on the old word finds it
//!   sharded and stops. The close is a CAS rather than a `fetch_or` so that
//!   `CLOSED` is never or'ed into a sharded word (`SHARDED | CLOSED` is a
//!   helped plain list). Linearization point of the sharding: its CAS.

pub(crate) mod shards;

use crate::plant::planted;
use crate::sync::epoch::{self, Guard};
use crate::sync::{AtomicU32, AtomicUsize, Ordering};
use crate::tree::children::shards::ShardBlock;

const CLOSED: usize = 0b001;
const SWEEPING: usize = 0b010;
const HELPED: usize = 0b100;
/// A sharded head (L8): a `ShardBlock` pointer tagged `HELPED` without
/// `CLOSED`, which no plain list has (only closed lists are helped). A
/// sharded head is never written again: shards are closed one by one.
const SHARDED: usize = HELPED;
/// The pointer bits of a head word.
const HEAD_PTR: usize = !0b111;
const DELETED: usize = 0b01;
const DETACHED: usize = 0b10;
/// The pointer bits of a link word.
const PTR_MASK: usize = !0b11;

/// Inserts between sweeps, at least (L5). Under loom every insert sweeps, so
/// the models explore sweeps against every other operation.
const MIN_SWEEP: u32 = if cfg!(loom) { 0 } else { 64 };

/// Batches at least this large are flushed to the global epoch queue at once.
/// Every batch under loom (to explore collection) and under miri, where
/// crossbeam-epoch shrinks its bags to 4 objects, so one deferred object per
/// pin would outgrow its collection again without a flush.
const FLUSH_BATCH: usize = if cfg!(any(loom, miri)) { 1 } else { 64 };

/// A type whose values can be children in a [`ChildList`].
///
/// The list's reference to a node (L4) is ended by `unlist`, in *passes*
/// over nodes of one list: the type may owe the list's owner something for
/// each node it unlists (node.rs: a parent grant for a node that still has
/// users, N1), settled per pass.
///
/// # Safety
/// `link` always returns the same field, values are at least 8-aligned, and
/// `unlist` ends exactly the reference that a successful
/// [`ChildList::attach`] transferred to the list.
pub(crate) unsafe trait Listed: Sized + 'static {
    /// What a pass carries from one `unlist` to the next.
    type Pass;

    fn link(&self) -> &ChildLink;

    /// Starts a pass over nodes of the list that `first` (still referenced
    /// by it) belongs to; `prepaid` nodes were paid for by [`Listed::prepay`].
    ///
    /// # Safety
    /// The list's reference to `first` is not yet ended.
    unsafe fn begin_pass(first: *const Self, prepaid: u32) -> Self::Pass;

    /// Ends the list's reference to `this`; may free it.
    ///
    /// # Safety
    /// Called once per successful attach, after no new walker can reach
    /// `this`, with a pass of its list.
    unsafe fn unlist(this: *const Self, pass: &mut Self::Pass);

    /// Settles a pass.
    ///
    /// # Safety
    /// `pass` came from `begin_pass`.
    unsafe fn end_pass(pass: Self::Pass);

    /// Pays now, while the list's owner is surely alive, for `n` nodes of
    /// the list `first` belongs to that a later pass (after the epoch)
    /// unlists.
    ///
    /// # Safety
    /// The list's reference to `first` is not yet ended.
    unsafe fn prepay(first: *const Self, n: u32);
}

/// The list head, stored in the parent.
pub(crate) struct ChildList {
    head: AtomicUsize,
}

impl ChildList {
    /// Under loom, marks the block of a sharded list freed (its memory is
    /// kept, as the node's; later accesses fail the model).
    #[cfg(loom)]
    pub(crate) fn dispose(&self) {
        if let Some(block) = shards_of(self.head.load(Ordering::Relaxed)) {
            block.dispose();
        }
    }
}

impl Drop for ChildList {
    fn drop(&mut self) {
        // Relaxed: the list's node is being freed, so its last user's
        // Acquire ordered every write to this word before us.
        let word = self.head.load(Ordering::Relaxed);
        if word & (CLOSED | SHARDED) == SHARDED {
            free_block(word);
        }
    }
}

/// Frees the block of a sharded head word, with its list.
#[cold]
#[inline(never)]
fn free_block(word: usize) {
    // SAFETY: the block was made by `ShardBlock::allocate` in `shard` and
    // lives as long as the list (L8), which is being dropped: nobody can
    // reach it.
    unsafe { ShardBlock::at(word & HEAD_PTR).free() };
}

/// Inserts left before the parent's next sweep (L5), stored in the parent
/// beside its reference count (32 bits each, so the node packs into 56 bytes).
/// Approximate: updated with plain loads and stores, because a lost decrement
/// only delays a sweep. No correctness argument depends on it.
pub(crate) struct SweepBudget(AtomicU32);

impl SweepBudget {
    pub(crate) fn new() -> SweepBudget {
        SweepBudget(AtomicU32::new(MIN_SWEEP))
    }

    /// The whole word: it changes with every insert (the count) and every
    /// sweep (the generation), so two equal reads mean no activity in
    /// between, give or take a lost racy update (L8's idle test).
    pub(crate) fn word(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }

    /// After a sweep: `left` inserts until the next one, next generation.
    fn renew(&self, left: u32) {
        let generation =
            (self.0.load(Ordering::Relaxed) & !BUDGET_LEFT).wrapping_add(BUDGET_LEFT + 1);
        self.0
            .store(generation | left.min(BUDGET_LEFT), Ordering::Relaxed);
    }
}

/// The count bits of a sweep budget; the 8 bits above count sweeps.
const BUDGET_LEFT: u32 = (1 << 24) - 1;

/// The sibling link, stored in the child.
pub(crate) struct ChildLink {
    next: AtomicUsize,
}

/// How a finished list's references are released (L4, L6).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Release {
    /// Nobody else can reach the nodes: release now (`release_now`).
    Now,
    /// A helper or sweeper may still hold pointers: `claim_for_epoch`, then
    /// `release_later`.
    Epoch,
}

/// What `close` found.
pub(crate) enum Close<'a> {
    /// This call closed the list: walk it from `first`, then `finish_close`
    /// it (L3). `swept`: a sweeper was running at the close, so releases
    /// follow the `DETACHED` protocol and the epoch (L4).
    Owner { first: usize, swept: bool },
    /// Someone else closed it; a non-zero first child means their walk may
    /// still be running, so help: pin, announce with [`ChildList::help`], and
    /// walk what it returns (but do not finish it).
    Helper(usize),
    /// The list is sharded (L8): close each shard's list in turn; none of
    /// them is sharded.
    Sharded(ShardBlock<'a>),
}

/// Lost insert races (against another thread's insert or unlink) in one
/// `attach` that shard the list (L8): two, so that one accidental collision
/// does not cost a block for the list's life. One under loom, so the models
/// reach the sharding within their preemption bound, and in the unit tests,
/// whose real-contention test must shard under the sanitizers too (two
/// losses in a row were not seen in 20 s under ThreadSanitizer on 2 cores).
/// The threshold is a heuristic; the sharding protocol is the same.
const LOSSES_TO_SHARD: u32 = if cfg!(any(loom, test)) { 1 } else { 2 };

/// Whether an insert that expected the head word `cur` and found `actual`
/// lost to another thread's insert or unlink (the first node changed), as
/// opposed to a flag change alone: what makes a list contended (L8).
fn lost_race(cur: usize, actual: usize) -> bool {
    actual & HEAD_PTR != cur & HEAD_PTR && actual & CLOSED == 0
}

/// Inserts `child` into the calling thread's shard of `block` (L8). When
/// that shard's sweep is due, one other shard is looked at, in turn, and
/// swept if it is idle ([`ShardBlock::other_to_sweep`]): the bound of L5
/// then holds for every shard, including those no thread inserts into any
/// more.
fn attach_sharded<T: Listed>(block: ShardBlock<'_>, child: *const T) -> Result<bool, ()> {
    let (at, shard) = block.mine();
    let swept = shard.list.attach_plain(child, &shard.budget)?;
    if swept {
        // A plain load first: an empty, closed or busy shard needs no sweep,
        // and its line is another thread's hot one.
        if let Some(other) = block.other_to_sweep(at).filter(|o| o.list.may_need_sweep()) {
            other.list.sweep::<T>(&other.budget);
        }
    }
    Ok(swept)
}

/// The block of a sharded head word, if it is one (L8).
fn shards_of<'a>(word: usize) -> Option<ShardBlock<'a>> {
    if word & (CLOSED | SHARDED) == SHARDED {
        // SAFETY: a sharded head holds a block published by the CAS in
        // `shard` (read here with Acquire or after it), which lives as
        // long as the list's node; callers hold the node alive.
        Some(unsafe { ShardBlock::at(word & HEAD_PTR) })
    } else {
        None
    }
}

impl ChildList {
    pub(crate) fn new() -> ChildList {
        ChildList {
            head: AtomicUsize::new(0),
        }
    }

    /// An open list whose nodes start at `first`: the first shard of a new
    /// block takes over the list it replaces (L8).
    pub(crate) fn with_first(first: usize) -> ChildList {
        ChildList {
            head: AtomicUsize::new(first),
        }
    }

    /// A list that was never open: for a node born canceled.
    pub(crate) fn new_closed() -> ChildList {
        ChildList {
            head: AtomicUsize::new(CLOSED),
        }
    }

    /// Links `child` at the head, or in the calling thread's shard if the
    /// list is sharded (L8). On success the list owns one reference to it
    /// (L4), and `Ok` tells whether the insert may have run a sweep (which
    /// frees nodes: a cause's drop may have panicked, held until the caller
    /// resumes it); on `Err` the list is closed and the caller keeps it.
    #[inline]
    pub(crate) fn attach<T: Listed>(
        &self,
        child: *const T,
        budget: &SweepBudget,
    ) -> Result<bool, ()> {
        let cur = self.head.load(Ordering::Acquire);
        if cur & (CLOSED | SHARDED) != 0 {
            // A sharded list's inserts go straight to the thread's shard: a
            // contended list stays contended, this is its common path.
            if let Some(block) = shards_of(cur) {
                return attach_sharded(block, child);
            }
            return Err(());
        }
        // The uncontended case, inline: one CAS on an open, plain head.
        match self.try_link(child, cur) {
            Ok(()) => Ok(self.inserted::<T>(budget)),
            Err(actual) => {
                let lost = u32::from(lost_race(cur, actual));
                self.attach_contended(child, budget, actual, lost)
            }
        }
    }

    /// `attach` after its first try: `cur` is the head word as last read,
    /// `lost` the races it lost to another insert or unlink so far; at
    /// `LOSSES_TO_SHARD` it shards the list (L8).
    #[cold]
    #[inline(never)]
    fn attach_contended<T: Listed>(
        &self,
        child: *const T,
        budget: &SweepBudget,
        mut cur: usize,
        mut lost: u32,
    ) -> Result<bool, ()> {
        loop {
            if lost >= LOSSES_TO_SHARD {
                cur = self.shard(cur);
                lost = 0;
            }
            if cur & CLOSED != 0 {
                return Err(());
            }
            if let Some(block) = shards_of(cur) {
                return attach_sharded(block, child);
            }
            match self.try_link(child, cur) {
                Ok(()) => return Ok(self.inserted::<T>(budget)),
                Err(actual) => {
                    lost += u32::from(lost_race(cur, actual));
                    cur = actual;
                }
            }
        }
    }

    /// `attach` on a list that is never sharded: a shard (L8). `Ok(true)`
    /// if the insert ran a sweep.
    fn attach_plain<T: Listed>(&self, child: *const T, budget: &SweepBudget) -> Result<bool, ()> {
        let mut cur = self.head.load(Ordering::Acquire);
        loop {
            if cur & CLOSED != 0 {
                return Err(());
            }
            match self.try_link(child, cur) {
                Ok(()) => return Ok(self.inserted::<T>(budget)),
                Err(actual) => cur = actual,
            }
        }
    }

    /// One try at linking `child` first in the open, plain list whose head
    /// word was read as `cur`: its link takes the old first node, then a
    /// CAS publishes it. `Err` returns the head word found instead.
    #[inline(always)]
    fn try_link<T: Listed>(&self, child: *const T, cur: usize) -> Result<(), usize> {
        // SAFETY: the caller passes a live node that is not in any list.
        let link = unsafe { &(*child).link().next };
        link.store(cur & HEAD_PTR, Ordering::Relaxed);
        let new = child as usize | (cur & SWEEPING);
        // Release publishes the child's fields (and its link) to walkers
        // (L2); Acquire on failure makes a closer's claim visible to a
        // caller that then inherits the parent's state (N2).
        self.head
            .compare_exchange(cur, new, Ordering::Release, Ordering::Acquire)
            .map(|_| ())
    }

    /// Shards the list now if it is open, idle and plain (loom models and
    /// unit tests); returns whether it did.
    #[cfg(any(loom, test))]
    pub(crate) fn shard_now(&self) -> bool {
        let cur = self.head.load(Ordering::Acquire);
        shards_of(cur).is_none() && shards_of(self.shard(cur)).is_some()
    }

    /// Whether the list is sharded (unit tests).
    #[cfg(test)]
    pub(crate) fn is_sharded(&self) -> bool {
        shards_of(self.head.load(Ordering::Acquire)).is_some()
    }

    /// Counts an insert against the sweep budget and sweeps when it runs
    /// out (L5); returns whether it swept.
    #[inline]
    fn inserted<T: Listed>(&self, budget: &SweepBudget) -> bool {
        let word = budget.0.load(Ordering::Relaxed);
        if word & BUDGET_LEFT > 0 {
            budget.0.store(word - 1, Ordering::Relaxed);
            false
        } else {
            self.sweep::<T>(budget);
            true
        }
    }

    /// Whether a sweep may find something: the list is open, not being
    /// swept, and holds a node (a plain load; `sweep` decides).
    fn may_need_sweep(&self) -> bool {
        let word = self.head.load(Ordering::Relaxed);
        word & (CLOSED | SWEEPING) == 0 && word & HEAD_PTR != 0
    }

    /// Whether the list is closed and its walk finished (`CLOSED | 0`, L3):
    /// everything below is canceled.
    pub(crate) fn is_finished(&self) -> bool {
        self.head.load(Ordering::Acquire) == CLOSED
    }

    /// The nodes linked in the list, each shard's count if it is sharded
    /// (unit tests; the caller keeps the list from changing).
    #[cfg(test)]
    pub(crate) fn linked_counts<T: Listed>(&self) -> Vec<usize> {
        let count = |list: &ChildList| {
            let mut n = 0;
            let mut cur = list.head.load(Ordering::Acquire) & HEAD_PTR;
            while cur != 0 {
                n += 1;
                // SAFETY: linked nodes are alive, and the caller keeps the
                // list from changing.
                cur =
                    unsafe { (*(cur as *const T)).link().next.load(Ordering::Acquire) } & PTR_MASK;
            }
            n
        };
        match shards_of(self.head.load(Ordering::Acquire)) {
            Some(block) => block.iter().map(|shard| count(&shard.list)).collect(),
            None => vec![count(self)],
        }
    }

    /// Replaces the open, unsharded head word `cur` with a block whose
    /// first shard takes over its nodes (L8), unless a sweep runs (its
    /// unlinked nodes are released by an RMW on this word, L6) or the word
    /// changed. Returns the head word as it now is.
    fn shard(&self, cur: usize) -> usize {
        let busy = if planted!("shard_while_sweeping") {
            CLOSED
        } else {
            CLOSED | SWEEPING
        };
        if cur & busy != 0 || shards_of(cur).is_some() {
            return cur;
        }
        let block = ShardBlock::allocate(cur & HEAD_PTR);
        let sharded = block | SHARDED;
        // Release publishes the block; the nodes moved into its first shard
        // stay published through this RMW (it continues the release
        // sequences of their inserts). Acquire on failure as in `attach`.
        match self
            .head
            .compare_exchange(cur, sharded, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => sharded,
            Err(actual) => {
                // SAFETY: never published.
                unsafe { ShardBlock::at(block).free() };
                actual
            }
        }
    }

    /// Closes the list (L2). Idempotent; see [`Close`].
    pub(crate) fn close(&self) -> Close<'_> {
        // A list already closed and finished (`CLOSED | 0`, L3) stays so:
        // skip the RMW (a handle dropped after its cancel lands here).
        // Acquire pairs with the owner's reset, so the subtree it finished
        // is visible as canceled, and with the CAS that sharded the list.
        let mut cur = self.head.load(Ordering::Acquire);
        if cur == CLOSED {
            return Close::Helper(0);
        }
        loop {
            if let Some(block) = shards_of(cur) {
                return Close::Sharded(block);
            }
            if cur & CLOSED != 0 {
                return Close::Helper(cur & HEAD_PTR);
            }
            // A CAS, not `fetch_or`: `CLOSED` or'ed into a sharded word would
            // read as a closed, helped plain list.
            let closed = if planted!("skip_close") {
                Ok(cur)
            } else {
                self.head.compare_exchange_weak(
                    cur,
                    cur | CLOSED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
            };
            match closed {
                Ok(_) => {
                    return Close::Owner {
                        first: cur & HEAD_PTR,
                        swept: cur & SWEEPING != 0,
                    }
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Closes the list if it is open, plain, empty and not being swept
    /// (head word 0): a leaf's whole walk, since an empty list closed is
    /// already finished (`CLOSED | 0`, L3). Returns whether it did; if not,
    /// the list is untouched and the caller closes it with [`close`].
    ///
    /// [`close`]: ChildList::close
    #[inline]
    pub(crate) fn close_if_empty(&self) -> bool {
        // A plain load first: a list with children (every level of a chain)
        // would fail the CAS, and a failing locked instruction costs as much
        // as a successful one. Not under loom: the CAS decides either way
        // (a stale non-zero read only sends the caller to `close`), and a
        // `Relaxed` load is a branch point in every model that cancels a
        // leaf — with it the core models took 37 minutes instead of 21.
        #[cfg(not(loom))]
        if self.head.load(Ordering::Relaxed) != 0 {
            return false;
        }
        planted!("skip_close_if_empty")
            || self
                .head
                .compare_exchange(0, CLOSED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// Announces a helper walk of a closed list (L6) and returns the first
    /// child to walk, or 0 if the owner already finished the walk.
    ///
    /// The caller is pinned, and must use only the pointer returned here: an
    /// owner that reset the head before this RMW may already have released
    /// the children without the epoch.
    pub(crate) fn help(&self) -> usize {
        let word = if planted!("help_unannounced") {
            self.head.load(Ordering::Acquire)
        } else {
            self.head.fetch_or(HELPED, Ordering::AcqRel)
        };
        debug_assert!(word & CLOSED != 0, "only closed lists are helped");
        word & HEAD_PTR
    }

    /// Marks the walk of a list closed by this thread complete (L3) and
    /// returns how its references must be released — `Release::Now` if no
    /// other thread can reach its nodes any more (L6), else `Release::Epoch`
    /// — and its first node: the pointer the closing `fetch_or` returned,
    /// which nobody changed since (no insert succeeds on a closed list, the
    /// sweeper never writes the head pointer, and only the closer resets).
    ///
    /// # Safety
    /// This thread's `close` returned `Owner { first, swept }`, every
    /// descendant below is canceled, and the caller has been pinned since
    /// before that `close`.
    pub(crate) unsafe fn finish_close(&self, swept: bool) -> (Release, usize) {
        // A swap, not a store: every write to the head is a read-modify-write,
        // which loom models soundly (a plain store racing an RMW is not:
        // tokio-rs/loom#254), and its result tells whether a helper came
        // (L6). On x86 the cost is one locked instruction per list.
        let old = self.head.swap(CLOSED, Ordering::AcqRel);
        let helped = old & HELPED != 0 && !planted!("ignore_helped");
        let how = if swept || helped {
            Release::Epoch
        } else {
            Release::Now
        };
        (how, old & HEAD_PTR)
    }

    /// Claims for the epoch the references of a finished list whose walk was
    /// helped or swept (L4): this pass marks each node `DETACHED` with an RMW
    /// that also reads its successor, so it claims exactly the nodes still
    /// linked when it passes them, and a concurrent sweeper can unlink none
    /// of those any more (its unlink CAS expects an unmarked predecessor).
    ///
    /// # Safety
    /// `first` is what this thread's owning `close` returned, `finish_close`
    /// returned `Release::Epoch`, and the caller is still pinned.
    pub(crate) unsafe fn claim_for_epoch<T: Listed>(first: usize, released: &mut Vec<*const T>) {
        let start = released.len();
        let mut cur = first;
        while cur != 0 {
            let node = cur as *const T;
            // SAFETY: `node` was reachable after the caller pinned, so its
            // release (L4) cannot have run yet.
            let link = unsafe { &(*node).link().next };
            let old = if planted!("claim_by_load") {
                link.load(Ordering::Acquire)
            } else {
                link.fetch_or(DETACHED, Ordering::AcqRel)
            };
            cur = old & PTR_MASK;
            // The RMW read `node`'s current successor and made every later
            // unlink of it fail: it stays ours. One already unlinked was
            // skipped by the predecessor's RMW; the sweeper releases it.
            debug_assert!(old & DETACHED == 0, "L4: a node is claimed once");
            released.push(node);
        }
        if let Some(&claimed) = released.get(start) {
            // SAFETY: claimed, so its list reference is not yet ended.
            unsafe { T::prepay(claimed, (released.len() - start) as u32) };
        }
    }

    /// Releases at once the references of a finished list that no sweeper
    /// and no helper touched (L4, L6). Nodes may be freed here, so each
    /// successor is read before its predecessor is released.
    ///
    /// # Safety
    /// `first` is what this thread's owning `close` returned, `finish_close`
    /// returned `Release::Now`, and every list this thread still has to
    /// finish was finished before this call (a freed node's list is read by
    /// nobody).
    pub(crate) unsafe fn release_now<T: Listed>(first: usize) {
        if first == 0 {
            return;
        }
        // SAFETY: the list still references `first`.
        let mut pass = unsafe { T::begin_pass(first as *const T, 0) };
        let mut cur = first;
        while cur != 0 {
            let node = cur as *const T;
            // SAFETY: the list's reference keeps `node` alive until ended
            // just below; no sweeper ran, so `next` is the sibling linked at
            // the close (only mark bits change).
            let next = unsafe { (*node).link().next.load(Ordering::Acquire) };
            cur = next & PTR_MASK;
            // SAFETY: the list's reference, never claimed by anyone else: no
            // sweeper ran (L4) and no helper can reach the node (L6).
            unsafe { T::unlist(node, &mut pass) };
        }
        // SAFETY: from `begin_pass`.
        unsafe { T::end_pass(pass) };
    }

    /// Unlinks `child`, marked `DELETED` (`marked` is its link word, read
    /// after the mark), if it is the first node of the open list and no
    /// sweep runs (L7). On `true` the list's reference to `child` belongs to
    /// the caller, and no other thread can reach `child` through the list
    /// any more: it may be released at once.
    ///
    /// # Safety
    /// `child` is alive and was attached to this list, and `marked` was read
    /// from its link after its `mark_deleted` (happens-before).
    pub(crate) unsafe fn unlink_first<T: Listed>(&self, child: *const T, marked: usize) -> bool {
        let me = child as usize;
        // A plain load first: most lists have moved on (another insert, a
        // sweep, a close), and a failing CAS would take the line exclusive.
        // Acquire: a block read here is dereferenced (L8).
        let word = self.head.load(Ordering::Acquire);
        if word != me {
            // Sharded: the calling thread's shard is the likely one (the
            // thread that derived a child often drops it); the node is in
            // exactly one shard, so a match there is the node's own list.
            if word & (CLOSED | SHARDED) == SHARDED {
                // SAFETY: forwarded.
                return unsafe { Self::unlink_first_sharded(word, child, marked) };
            }
            return false;
        }
        // `marked` is still `child`'s successor: the mark froze it against
        // the sweeper, and a closer would have set `CLOSED` here. Acquire
        // orders every earlier walker's accesses to `child` (their end is an
        // RMW on this word) before the caller's release; Release keeps a later
        // closer from walking into `child`.
        self.head
            .compare_exchange(me, marked & PTR_MASK, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// `unlink_first` on a sharded list whose head word is `word`.
    ///
    /// # Safety
    /// As `unlink_first`, and `word` is a sharded head word of this list.
    #[inline(never)]
    unsafe fn unlink_first_sharded<T: Listed>(word: usize, child: *const T, marked: usize) -> bool {
        let Some(block) = shards_of(word) else {
            return false;
        };
        // `child` was attached to this list, so to one of its shards, and
        // only that one can show it first; shards are plain lists, so this
        // is `unlink_first`'s plain case.
        let shard = &block.mine().1.list;
        let me = child as usize;
        shard.head.load(Ordering::Relaxed) == me
            && shard
                .head
                .compare_exchange(me, marked & PTR_MASK, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// The first child, for a walker that is pinned.
    pub(crate) fn first(&self) -> usize {
        self.head.load(Ordering::Acquire) & HEAD_PTR
    }

    /// True if the list holds no node (for a node's destructor).
    pub(crate) fn is_empty(&self) -> bool {
        let word = self.head.load(Ordering::Acquire);
        match shards_of(word) {
            Some(block) => block.iter().all(|shard| shard.list.is_empty()),
            None => word & HEAD_PTR == 0,
        }
    }

    /// Unlinks `DELETED` nodes if no other sweeper runs (L5).
    fn sweep<T: Listed>(&self, budget: &SweepBudget) {
        // Pinned before the first node is read: once `SWEEPING` is ours a
        // closer may close the list and release its nodes through the epoch
        // (L4), and only a pin that precedes that release keeps them alive
        // for us. (Pinned after the CAS, a sweep of a list whose first node
        // has no users could follow it after its release.)
        let early = (!planted!("sweep_pin_late")).then(epoch::pin);
        let mut cur = self.head.load(Ordering::Relaxed);
        loop {
            // Sharded since our insert: its nodes are the first shard's now.
            if cur & (CLOSED | SWEEPING | SHARDED) != 0 {
                return;
            }
            match self.head.compare_exchange_weak(
                cur,
                cur | SWEEPING,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        let guard = early.unwrap_or_else(epoch::pin);
        let mut unlinked = Unlinked::new(self, &guard);
        let first = self.unlink_deleted_first::<T>(cur | SWEEPING, &mut unlinked);
        let live = self.sweep_from::<T>(first, &mut unlinked);
        #[cfg(not(loom))]
        let next = live.max(MIN_SWEEP);
        #[cfg(loom)]
        let next = {
            let _ = live;
            0
        };
        budget.renew(next);
        let old = self.head.fetch_and(!SWEEPING, Ordering::AcqRel);
        unlinked.release(old);
    }

    /// The sweeper's unlinks at the head (L5): while the first node is
    /// `DELETED`, `CAS(head: word → successor | SWEEPING)`, expecting the
    /// head exactly as this sweep left it. Returns the first node for
    /// [`ChildList::sweep_from`] (0 if the list was closed meanwhile: the
    /// closer owns the rest). Without this a deleted first node would stop
    /// every sweep of the list (its successor can only be unlinked through
    /// an unmarked predecessor) until a newer insert or its last user's L7;
    /// a shard that gets no inserts any more has neither.
    fn unlink_deleted_first<T: Listed>(
        &self,
        mut word: usize,
        unlinked: &mut Unlinked<'_, T>,
    ) -> usize {
        loop {
            let first = word & HEAD_PTR;
            if first == 0 {
                return 0;
            }
            // SAFETY: reached from the head while pinned (L4, L6).
            let next = unsafe { (*(first as *const T)).link().next.load(Ordering::Acquire) };
            if next & (DELETED | DETACHED) != DELETED {
                return first; // live, or closed under us (`sweep_from` stops)
            }
            // The mark froze `next` (only sweeps rewrite links, and not
            // marked ones). The CAS fails if anything changed the head: an
            // insert (sweep from the new first node, an unmarked predecessor)
            // or a close (leave everything to the closer). L7's CAS expects
            // no flags, so it cannot unlink `first` while we hold SWEEPING.
            let successor = (next & PTR_MASK) | SWEEPING;
            match self
                .head
                .compare_exchange(word, successor, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    // Unlinked before any close: its list reference is ours
                    // (L4), released with the batch (at once or by the epoch).
                    unlinked.push(first as *const T);
                    word = successor;
                }
                Err(actual) if actual & CLOSED != 0 => return 0,
                Err(actual) => return actual & HEAD_PTR,
            }
        }
    }

    /// The sweeper's walk; returns the number of live nodes it saw.
    fn sweep_from<T: Listed>(&self, first: usize, released: &mut Unlinked<'_, T>) -> u32 {
        if first == 0 {
            return 0;
        }
        let mut live = 0u32;
        // `prev` is always a linked node: we never unlink it (L1).
        let mut prev = first as *const T;
        // SAFETY (whole loop): every node we touch was reachable while we were
        // pinned, so its memory is live (L4).
        let first_next = unsafe { (*prev).link().next.load(Ordering::Acquire) };
        if first_next & DETACHED != 0 {
            return live; // closed under us: the closer releases everything
        }
        if first_next & DELETED == 0 {
            live += 1;
        }
        let mut cur = first_next & PTR_MASK;
        while cur != 0 {
            let node = cur as *const T;
            let next = unsafe { (*node).link().next.load(Ordering::Acquire) };
            if next & DETACHED != 0 {
                return live;
            }
            let unlink = next & DELETED != 0 || planted!("sweep_unmarked");
            if unlink {
                // `node.next` can no longer change except for DETACHED: only
                // the sweeper rewrites pointers, and not of marked nodes.
                // SAFETY: `prev` is linked (we never unlink it) and reached
                // while pinned, so it is alive (L4).
                match unsafe { &(*prev).link().next }.compare_exchange(
                    cur,
                    next & PTR_MASK,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        // Unlinked before any claim pass passed `prev`, so
                        // its list reference is ours (L4); `Unlinked` releases
                        // it, at once or through the epoch (L6).
                        released.push(node);
                        cur = next & PTR_MASK;
                        continue;
                    }
                    Err(actual) if actual & DETACHED != 0 => return live,
                    // `prev` was deleted meanwhile: leave `node` for next time.
                    Err(_) => {}
                }
            } else {
                live = live.saturating_add(1);
            }
            prev = node;
            cur = next & PTR_MASK;
        }
        live
    }
}

/// Unlinked nodes per batch of a sweep (a stack array: a growing `Vec`
/// reaches glibc's large-request size at 128 pointers, and every such malloc
/// consolidates the allocator's fast bins, which the sweep's frees fill).
/// Under loom a batch is one node, so the models explore the release between
/// batches as well as the final one.
const UNLINK_BATCH: usize = if cfg!(loom) { 1 } else { 32 };

/// The nodes a sweep unlinked, released in batches (L4, L6).
///
/// A batch is released at once if an RMW on the head after its unlinks finds
/// the list open: a closer's `fetch_or` that comes later in the head's
/// modification order reads that RMW's value (or a later RMW's), synchronizes
/// with it, and walks the list as the unlinks left it; helpers come after the
/// close. The RMW is `fetch_add(0)` between batches and the sweep's final
/// `fetch_and(!SWEEPING)` for the last one. If the list was closed, a walker
/// may have read pointers to them: they go through the epoch.
pub(crate) struct Unlinked<'g, T: Listed> {
    list: &'g ChildList,
    guard: &'g Guard,
    nodes: [*const T; UNLINK_BATCH],
    len: usize,
}

impl<'g, T: Listed> Unlinked<'g, T> {
    fn new(list: &'g ChildList, guard: &'g Guard) -> Self {
        Unlinked {
            list,
            guard,
            nodes: [std::ptr::null(); UNLINK_BATCH],
            len: 0,
        }
    }

    /// Adds a node unlinked by this sweep (not yet claimed: see `release`).
    fn push(&mut self, node: *const T) {
        if self.len == UNLINK_BATCH {
            // AcqRel like the final `fetch_and`: Release is what the closer
            // synchronizes with (L6).
            let word = self.list.head.fetch_add(0, Ordering::AcqRel);
            self.release(word);
        }
        self.nodes[self.len] = node;
        self.len += 1;
    }

    /// Releases the batch, given `word`, the result of an RMW on the head
    /// made after every unlink of the batch.
    fn release(&mut self, word: usize) {
        let batch = &self.nodes[..self.len];
        self.len = 0;
        let open = word & CLOSED == 0 || planted!("sweep_release_closed");
        let Some(&first) = batch.first() else {
            return;
        };
        if open {
            // SAFETY: the batch's references are not yet ended.
            let mut pass = unsafe { T::begin_pass(first, 0) };
            for &node in batch {
                // SAFETY: unlinked by this sweep, and no closer has started, so
                // none can reach it to claim it (L4) or walk it (L6): the
                // list's reference is ours alone.
                unsafe { T::unlist(node, &mut pass) };
            }
            // SAFETY: from `begin_pass`.
            unsafe { T::end_pass(pass) };
        } else {
            // A walker may have read pointers to these before the unlinks:
            // release through the epoch. They are still ours alone (L4): the
            // closer's claim pass marks each node it passes `DETACHED` with an
            // RMW, so it reaches only nodes still linked at that moment, and
            // every unlink through a marked node fails.
            let claimed = batch.to_vec();
            // SAFETY: not yet ended; this sweeper holds the owner.
            unsafe { T::prepay(first, claimed.len() as u32) };
            // SAFETY: each node was unlinked by this sweep, which is pinned
            // by `guard` (L4), and prepaid.
            unsafe { release_later(self.guard, claimed) };
        }
    }
}

/// Releases the list references in `released` once no pinned thread can
/// still reach those nodes (L4).
///
/// One deferred closure per batch: crossbeam-epoch collects up to 8 bags of
/// 64 deferred objects every 128 pins of a thread, so deferring one object per
/// node let garbage outgrow collection under churn (crossbeam#566), while one
/// object per pin is always outpaced by collection. A large batch is also
/// flushed (bag to the global queue, collection attempted) so its nodes do not
/// wait for 64 more batches before they can be freed.
///
/// # Safety
/// Each pointer is a list reference owned by this thread (L4), paid for
/// with [`Listed::prepay`], and `guard` was pinned before the nodes were
/// unlinked or claimed.
pub(crate) unsafe fn release_later<T: Listed>(guard: &Guard, released: Vec<*const T>) {
    if released.is_empty() {
        return;
    }
    let large = released.len() >= FLUSH_BATCH;
    // SAFETY: walkers that can still reach these nodes are pinned; the
    // closure runs after they unpin, and each reference is released once.
    unsafe {
        guard.defer_unchecked(move || {
            // One pass per node: the nodes may belong to several lists.
            for node in released {
                let mut pass = T::begin_pass(node, 1);
                T::unlist(node, &mut pass);
                T::end_pass(pass);
            }
        })
    };
    if large {
        guard.flush();
    }
}

/// Nodes a walk visits at or above which it hurries the epoch collection
/// when it ends ([`collect_deferred`]).
pub(crate) const LARGE_WALK: usize = 1024;

/// Hurries the collection of what this thread and others deferred (L4), for
/// a thread that just ended a large walk and holds no guard: without it, a
/// batch of released nodes waits in crossbeam-epoch's global queue for
/// about a thousand later pins, on any thread — forever, in a process that
/// goes quiet. Each round pins, flushes the thread's bag and collects (which
/// advances the epoch if no thread is pinned in an older one); a deferred
/// batch needs two advances, so three rounds free it unless another thread
/// stays pinned (whose own walk then does the same when it ends), the
/// caller itself holds an older guard (a walk inside a deferred release),
/// or more than about 16 expired bags wait ahead of it in the global queue
/// (each collection pops at most 8): best effort, bounded work.
pub(crate) fn collect_deferred() {
    for _ in 0..3 {
        epoch::pin().flush();
    }
}

impl ChildLink {
    pub(crate) fn new() -> ChildLink {
        ChildLink {
            next: AtomicUsize::new(0),
        }
    }

    /// Logically deletes this child from its parent's list (L1). Its
    /// successor is frozen from now on (a sweeper's unlink CAS on this link
    /// expects it unmarked).
    pub(crate) fn mark_deleted(&self) {
        self.next.fetch_or(DELETED, Ordering::Release);
    }

    /// The link word, for [`ChildList::unlink_first`].
    pub(crate) fn word(&self) -> usize {
        self.next.load(Ordering::Acquire)
    }

    /// Whether a link word carries the `DELETED` mark.
    pub(crate) fn is_deleted(word: usize) -> bool {
        word & DELETED != 0
    }

    /// The next sibling, for a pinned walker.
    pub(crate) fn next_sibling(&self) -> usize {
        self.next.load(Ordering::Acquire) & PTR_MASK
    }
}

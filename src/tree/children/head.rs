//! The head word's two shapes (L8): a plain list, or a block of shards
//! that a contended list moves to. Insert, close and the last user's
//! unlink dispatch on the shape here.

use super::link::{Listed, PTR_MASK};
use super::list::{ChildList, CLOSED, HEAD_PTR, SHARDED, SWEEPING};
use super::shards::ShardBlock;
use super::sweep::{Full, Sweep, SweepBudget, Trigger, DROP_COST};
use crate::plant::planted;
use crate::sync::Ordering;

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
pub(super) fn free_block(word: usize) {
    // SAFETY: the block was made by `ShardBlock::allocate` in `shard` and
    // lives as long as the list (L8), which is being dropped: nobody can
    // reach it.
    unsafe { ShardBlock::at(word & HEAD_PTR).free() };
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
pub(super) const LOSSES_TO_SHARD: u32 = if cfg!(any(loom, test)) { 1 } else { 2 };

/// Unit tests: every 64th insert of a thread lets another thread run
/// between its read of the head and its CAS, so an insert loses a race
/// (L8) also where the test's threads share a core with other work.
#[cfg(test)]
fn yield_in_the_window() {
    std::thread_local!(static INSERTS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) });
    let n = INSERTS.with(|i| {
        i.set(i.get().wrapping_add(1));
        i.get()
    });
    if n % 64 == 0 {
        std::thread::yield_now();
    }
}

/// Whether an insert that expected the head word `cur` and found `actual`
/// lost to another thread's insert or unlink (the first node changed), as
/// opposed to a flag change alone: what makes a list contended (L8).
pub(super) fn lost_race(cur: usize, actual: usize) -> bool {
    actual & HEAD_PTR != cur & HEAD_PTR && actual & CLOSED == 0
}

/// Inserts `child` into the calling thread's shard of `block` (L8). When
/// that shard's sweep is due, one other shard is looked at, in turn, and
/// swept if it is idle ([`ShardBlock::other_to_sweep`]): the bound of L5
/// then holds for every shard, including those no thread inserts into any
/// more.
pub(super) fn attach_sharded<T: Listed>(
    block: ShardBlock<'_>,
    child: *const T,
) -> Result<Sweep, ()> {
    let (at, shard) = block.mine();
    let swept = shard.list.attach_plain(child, &shard.budget)?;
    Ok(with_other::<T>(block, at, swept, Trigger::Insert))
}

/// After shard `at`'s own sweep (`swept`), one other shard, if it is idle
/// (L5, L8); the more urgent of the two outcomes (L10).
fn with_other<T: Listed>(
    block: ShardBlock<'_>,
    at: usize,
    swept: Sweep,
    trigger: Trigger,
) -> Sweep {
    if swept == Sweep::Idle {
        return swept;
    }
    // A plain load first: an empty, closed or busy shard needs no sweep,
    // and its line is another thread's hot one.
    let other = match block.other_to_sweep(at).filter(|o| o.list.may_need_sweep()) {
        Some(other) => other.list.sweep_due::<T>(&other.budget, trigger),
        None => Sweep::Idle,
    };
    match (swept, other) {
        (Sweep::HandOff, _) | (_, Sweep::HandOff) => Sweep::HandOff,
        (Sweep::Ran, _) | (_, Sweep::Ran) => Sweep::Ran,
        _ => swept,
    }
}

/// The block of a sharded head word, if it is one (L8).
pub(super) fn shards_of<'a>(word: usize) -> Option<ShardBlock<'a>> {
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
    /// Counts the drop of a node that stays linked: its last users left
    /// while it is marked `DELETED` and not first (L7 could not unlink it).
    /// Drops count like inserts, `DROP_COST` each, against the calling
    /// thread's shard if the list is sharded (L8), so a list whose children
    /// are dropped in any order is swept with no insert to come (L5).
    ///
    /// The caller still holds those users of a child listed here, which
    /// keeps this list's node alive until the count. A sweep needs more:
    /// the nodes it unlinks are no longer in the list, and until their
    /// release grants the owner they hold it by nothing. So before a sweep
    /// `hold` takes a user of the list's node, as a deriving sweeper holds
    /// one (N1), and the sweep ends before the user `hold` returned is
    /// dropped.
    /// Returns what the sweep did: `HandOff` asks the caller to queue a
    /// full sweep (L10).
    pub(crate) fn note_dropped<T: Listed, H>(
        &self,
        budget: &SweepBudget,
        hold: impl FnOnce() -> H,
    ) -> Sweep {
        if !drop_sweeps() {
            return Sweep::Idle;
        }
        let word = self.head.load(Ordering::Acquire);
        if let Some(block) = shards_of(word) {
            let (at, shard) = block.mine();
            if shard.budget.spend(DROP_COST) {
                let _owner = owner_user(hold);
                let swept = shard.list.sweep_due::<T>(&shard.budget, Trigger::Drop);
                return with_other::<T>(block, at, swept, Trigger::Drop);
            }
        } else if word & CLOSED == 0 && budget.spend(DROP_COST) {
            let _owner = owner_user(hold);
            return self.sweep_due::<T>(budget, Trigger::Drop);
        }
        Sweep::Idle
    }

    /// The collector's job (L10): sweeps the list in full, or each shard
    /// of a sharded one, and tells whether to run again. The caller holds
    /// a user of the list's node.
    pub(crate) fn sweep_in_full<T: Listed>(&self, budget: &SweepBudget) -> Full {
        let word = self.head.load(Ordering::Acquire);
        match shards_of(word) {
            Some(block) => block.iter().fold(Full::Done, |full, shard| {
                full.and(shard.list.sweep_in_full_plain::<T>(&shard.budget))
            }),
            None => self.sweep_in_full_plain::<T>(budget),
        }
    }

    /// Links `child` at the head, or in the calling thread's shard if the
    /// list is sharded (L8). On success the list owns one reference to it
    /// (L4), and `Ok` tells whether the insert ran a sweep (which frees
    /// nodes: a cause's drop may have panicked, held until the caller
    /// resumes it) and whether the caller must queue the rest (L10); on
    /// `Err` the list is closed and the caller keeps it.
    #[inline]
    pub(crate) fn attach<T: Listed>(
        &self,
        child: *const T,
        budget: &SweepBudget,
    ) -> Result<Sweep, ()> {
        let cur = self.head.load(Ordering::Acquire);
        if cur & (CLOSED | SHARDED) != 0 {
            // A sharded list's inserts go straight to the thread's shard: a
            // contended list stays contended, this is its common path.
            if let Some(block) = shards_of(cur) {
                return attach_sharded(block, child);
            }
            return Err(());
        }
        #[cfg(test)]
        yield_in_the_window();
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
    pub(super) fn attach_contended<T: Listed>(
        &self,
        child: *const T,
        budget: &SweepBudget,
        mut cur: usize,
        mut lost: u32,
    ) -> Result<Sweep, ()> {
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

    /// `attach` on a list that is never sharded: a shard (L8).
    pub(super) fn attach_plain<T: Listed>(
        &self,
        child: *const T,
        budget: &SweepBudget,
    ) -> Result<Sweep, ()> {
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

    /// The nodes linked in the list, each shard's count if it is sharded
    /// (unit tests and loom models; the caller keeps the list from changing).
    #[cfg(any(test, loom))]
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
    pub(super) fn shard(&self, cur: usize) -> usize {
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
        self.unlink_head(me, marked)
    }

    /// [`unlink_first`](Self::unlink_first) on a list that is not sharded:
    /// false, with nothing changed, if the head word is not `child` (also if
    /// the list is sharded; then `unlink_first` may still succeed). The last
    /// user's fast path, with no call in it.
    ///
    /// # Safety
    /// As for `unlink_first`.
    #[inline(always)]
    pub(crate) unsafe fn unlink_first_plain<T: Listed>(
        &self,
        child: *const T,
        marked: usize,
    ) -> bool {
        let me = child as usize;
        self.head.load(Ordering::Acquire) == me && self.unlink_head(me, marked)
    }

    /// The CAS of `unlink_first` once the head word showed `me`.
    #[inline(always)]
    fn unlink_head(&self, me: usize, marked: usize) -> bool {
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
    pub(super) unsafe fn unlink_first_sharded<T: Listed>(
        word: usize,
        child: *const T,
        marked: usize,
    ) -> bool {
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

    /// True if the list holds no node (for a node's destructor).
    pub(crate) fn is_empty(&self) -> bool {
        let word = self.head.load(Ordering::Acquire);
        match shards_of(word) {
            Some(block) => block.iter().all(|shard| shard.list.is_empty()),
            None => word & HEAD_PTR == 0,
        }
    }
}

/// The user of the list's node a drop-driven sweep holds (L5).
#[inline(always)]
fn owner_user<H>(hold: impl FnOnce() -> H) -> Option<H> {
    // Planted bug: the sweep holds only the dropped child, which it may
    // unlink, and the owner may be freed before the unlinked child's
    // release grants it.
    (!planted!("drop_sweep_unheld")).then(hold)
}

/// Whether drops sweep (L5). Always, except under loom, where every
/// counted operation sweeps (`MIN_SWEEP` is 0): the models that check
/// drop-driven sweeps turn them on for their thread
/// (`loom_hooks::sweep_on_drop`), the others keep their state space.
#[inline(always)]
fn drop_sweeps() -> bool {
    #[cfg(loom)]
    return DROP_SWEEPS.with(std::cell::Cell::get);
    #[cfg(not(loom))]
    true
}

#[cfg(loom)]
std::thread_local! {
    /// Per OS thread, which is per test: loom runs a model on its test's
    /// thread.
    static DROP_SWEEPS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Under loom, turns drop-driven sweeps on or off for this test's models.
#[cfg(loom)]
pub fn set_drop_sweeps(on: bool) {
    DROP_SWEEPS.with(|d| d.set(on));
}

//! The sweep (L5, L6): unlinking the nodes marked `DELETED`, paid for by
//! inserts through the parent's `SweepBudget`, and releasing what it
//! unlinked in batches after the epoch (L4).

use crate::plant::planted;
use crate::sync::epoch::{self, Guard};
use crate::sync::{AtomicU32, Ordering};

use super::link::{Listed, DELETED, DETACHED, PTR_MASK};
use super::list::{ChildList, CLOSED, HEAD_PTR, SHARDED, SWEEPING};

/// What the drop of a node left linked costs against the sweep budget,
/// counted in inserts (L5): two, so drops alone sweep the list once half
/// the live nodes of the last sweep have left, and the deleted nodes never
/// outnumber the live ones by more than `MIN_SWEEP`, also while the list
/// shrinks to nothing.
pub(super) const DROP_COST: u32 = 2;

/// Inserts between sweeps, at least (L5). Under loom every insert sweeps, so
/// the models explore sweeps against every other operation.
pub(super) const MIN_SWEEP: u32 = if cfg!(loom) { 0 } else { 64 };

/// Batches at least this large are flushed to the global epoch queue at once.
/// Every batch under loom (to explore collection) and under miri, where
/// crossbeam-epoch shrinks its bags to 4 objects, so one deferred object per
/// pin would outgrow its collection again without a flush.
pub(super) const FLUSH_BATCH: usize = if cfg!(any(loom, miri)) { 1 } else { 64 };

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

    /// Counts `cost` against the budget; true if less was left: a sweep is
    /// due (L5), and the budget is left as it is for the sweep to renew.
    #[inline]
    pub(super) fn spend(&self, cost: u32) -> bool {
        let word = self.0.load(Ordering::Relaxed);
        if word & BUDGET_LEFT >= cost {
            self.0.store(word - cost, Ordering::Relaxed);
            false
        } else {
            true
        }
    }

    /// After a sweep: `left` inserts until the next one, next generation.
    pub(super) fn renew(&self, left: u32) {
        let generation =
            (self.0.load(Ordering::Relaxed) & !BUDGET_LEFT).wrapping_add(BUDGET_LEFT + 1);
        self.0
            .store(generation | left.min(BUDGET_LEFT), Ordering::Relaxed);
    }
}

/// The count bits of a sweep budget; the 8 bits above count sweeps.
pub(super) const BUDGET_LEFT: u32 = (1 << 24) - 1;

/// Nodes a sweep run by a derive or a drop visits at most (L10): more, and
/// the rest of the sweep is queued for the collector thread, where it runs
/// in full. About 10–150 µs, cache-hot to scattered. Under loom a model
/// sets its own (`loom_hooks::set_inline_sweep`), unbounded by default so
/// the other models keep their state space.
#[cfg(not(loom))]
pub(crate) fn inline_sweep() -> usize {
    1024
}

#[cfg(loom)]
pub(crate) fn inline_sweep() -> usize {
    INLINE_SWEEP.with(std::cell::Cell::get)
}

#[cfg(loom)]
std::thread_local! {
    /// Per OS thread, which is per test (loom runs a model on its test's thread).
    static INLINE_SWEEP: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// Under loom, sets the inline sweep's node limit for this test's models.
#[cfg(loom)]
pub fn set_inline_sweep(limit: usize) {
    INLINE_SWEEP.with(|l| l.set(limit));
}

/// The most nodes an inline sweep visited so far (the tests' bound on L10).
static MAX_INLINE_SWEEP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The most nodes one sweep run by a derive or a drop has visited (L10).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn max_inline_sweep() -> usize {
    MAX_INLINE_SWEEP.load(std::sync::atomic::Ordering::Relaxed)
}

/// What a sweep due on a derive or a drop did (L10).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Sweep {
    /// No sweep was due, or the list is closed or was sharded.
    Idle,
    /// A sweep ran: it may have freed nodes (a cause's drop may have
    /// panicked, held for the caller to resume).
    Ran,
    /// A sweep ran and stopped at its limit, or found another sweeper
    /// running (which may be the collector's, past the nodes this count
    /// was for): the caller queues a full sweep of the owner's lists on
    /// the collector, holding a user of it. A sweep that ran may have
    /// freed nodes, as for `Ran`.
    HandOff,
}

/// Unlinked nodes per batch of a sweep (a stack array: a growing `Vec`
/// reaches glibc's large-request size at 128 pointers, and every such malloc
/// consolidates the allocator's fast bins, which the sweep's frees fill).
/// Under loom a batch is one node, so the models explore the release between
/// batches as well as the final one.
pub(super) const UNLINK_BATCH: usize = if cfg!(loom) { 1 } else { 32 };

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
    pub(super) fn new(list: &'g ChildList, guard: &'g Guard) -> Self {
        Unlinked {
            list,
            guard,
            nodes: [std::ptr::null(); UNLINK_BATCH],
            len: 0,
        }
    }

    /// Adds a node unlinked by this sweep (not yet claimed: see `release`).
    pub(super) fn push(&mut self, node: *const T) {
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
    pub(super) fn release(&mut self, word: usize) {
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

/// What made a sweep due (L5, L10).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Trigger {
    Insert,
    Drop,
}

/// What [`ChildList::sweep`] did.
pub(super) enum Swept {
    /// It swept, visiting `visited` nodes, `dead` if any was `DELETED`,
    /// `stalled` if it left a run of them linked behind a node deleted
    /// under it (see [`ChildList::sweep_from`]).
    Visited {
        visited: usize,
        dead: bool,
        stalled: bool,
    },
    /// Another sweeper runs.
    Busy,
    /// The list is closed, or was sharded: nothing to sweep here.
    Closed,
}

/// The nodes a sweep may still visit (L10).
pub(super) struct Visits {
    left: usize,
}

impl Visits {
    /// Counts one visit; false once the limit is reached (the sweep stops
    /// where it is: the nodes after that wait for the next sweep).
    #[inline]
    fn take(&mut self) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        true
    }
}

impl ChildList {
    /// Counts an insert against the sweep budget and sweeps when it runs
    /// out (L5, L10).
    #[inline]
    pub(super) fn inserted<T: Listed>(&self, budget: &SweepBudget) -> Sweep {
        if budget.spend(1) {
            self.sweep_due::<T>(budget, Trigger::Insert)
        } else {
            Sweep::Idle
        }
    }

    /// A sweep found due by a derive or a drop: at most `inline_sweep()`
    /// nodes here, the rest handed off (L10) — by an insert only if its
    /// part met dead nodes: a drop's node is somewhere in the list, but
    /// an insert into a list of live children (a fan-out being built) has
    /// nothing to collect further on.
    pub(super) fn sweep_due<T: Listed>(&self, budget: &SweepBudget, trigger: Trigger) -> Sweep {
        let limit = inline_sweep();
        match self.sweep::<T>(budget, limit) {
            Swept::Visited {
                visited,
                dead,
                stalled,
            } => {
                if !cfg!(loom) {
                    MAX_INLINE_SWEEP.fetch_max(visited, std::sync::atomic::Ordering::Relaxed);
                }
                let rest_worth_it = dead || trigger == Trigger::Drop;
                if (visited >= limit && rest_worth_it) || stalled {
                    Sweep::HandOff
                } else {
                    Sweep::Ran
                }
            }
            // An insert behind a running sweep's cursor is no garbage; the
            // budget stays spent, so the next operation looks again (a
            // plain load while the sweep runs).
            Swept::Busy if trigger == Trigger::Insert || planted!("busy_drop_forgotten") => {
                Sweep::Idle
            }
            Swept::Busy => {
                // Counted again only after `MIN_SWEEP` more operations:
                // the collector dedupes queued jobs, but each try takes
                // its lock.
                budget.renew(MIN_SWEEP);
                Sweep::HandOff
            }
            Swept::Closed => Sweep::Idle,
        }
    }

    /// The collector's sweep (L10): the whole list, whatever its length.
    /// The budget is emptied first, so the first insert or drop made while
    /// this sweep runs is due, finds it running, and queues another: the
    /// nodes left behind this sweep's cursor are swept by that one, even
    /// if nothing happens on the list afterwards.
    ///
    /// Returns [`Full::Again`] if the job must run again: the sweep
    /// stalled (dead nodes left behind a node deleted under it), another
    /// sweeper or a visit held the list (an inline sweep stops at its
    /// limit and may hand nothing off), or the list was sharded since the
    /// caller looked (its nodes are the first shard's now).
    pub(crate) fn sweep_in_full_plain<T: Listed>(&self, budget: &SweepBudget) -> Full {
        budget.renew(0);
        match self.sweep::<T>(budget, usize::MAX) {
            Swept::Visited { stalled: true, .. } => Full::Again,
            Swept::Visited { .. } => Full::Done,
            Swept::Busy if !planted!("full_sweep_busy_dropped") => Full::Busy,
            Swept::Busy => Full::Done,
            Swept::Closed => {
                let word = self.head.load(Ordering::Relaxed);
                if word & (CLOSED | SHARDED) == SHARDED {
                    Full::Again
                } else {
                    Full::Done
                }
            }
        }
    }

    /// Unlinks `DELETED` nodes if no other sweeper runs (L5), visiting at
    /// most `limit` nodes (L10).
    pub(super) fn sweep<T: Listed>(&self, budget: &SweepBudget, limit: usize) -> Swept {
        // Pinned before the first node is read: once `SWEEPING` is ours a
        // closer may close the list and release its nodes through the epoch
        // (L4), and only a pin that precedes that release keeps them alive
        // for us. (Pinned after the CAS, a sweep of a list whose first node
        // has no users could follow it after its release.)
        // A plain look first: a busy or closed list needs no pin. (Not
        // under loom: the CAS loop below decides the same, and the models
        // keep their state space.)
        if !cfg!(loom) {
            let word = self.head.load(Ordering::Relaxed);
            if word & (CLOSED | SHARDED) != 0 {
                return Swept::Closed;
            }
            if word & SWEEPING != 0 {
                return Swept::Busy;
            }
        }
        let early = (!planted!("sweep_pin_late")).then(epoch::pin);
        let mut cur = self.head.load(Ordering::Relaxed);
        loop {
            // Sharded since our insert: its nodes are the first shard's now.
            if cur & (CLOSED | SHARDED) != 0 {
                return Swept::Closed;
            }
            if cur & SWEEPING != 0 {
                return Swept::Busy;
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
        let mut visits = Visits { left: limit };
        let first = self.unlink_deleted_first::<T>(cur | SWEEPING, &mut unlinked, &mut visits);
        let (live, stalled) = self.sweep_from::<T>(first, &mut unlinked, &mut visits);
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
        let visited = limit - visits.left;
        Swept::Visited {
            visited,
            dead: visited > live as usize,
            stalled,
        }
    }

    /// The sweeper's unlinks at the head (L5): while the first node is
    /// `DELETED`, `CAS(head: word → successor | SWEEPING)`, expecting the
    /// head exactly as this sweep left it. Returns the first node for
    /// [`ChildList::sweep_from`] (0 if the list was closed meanwhile: the
    /// closer owns the rest). Without this a deleted first node would stop
    /// every sweep of the list (its successor can only be unlinked through
    /// an unmarked predecessor) until a newer insert or its last user's L7;
    /// a shard that gets no inserts any more has neither.
    pub(super) fn unlink_deleted_first<T: Listed>(
        &self,
        mut word: usize,
        unlinked: &mut Unlinked<'_, T>,
        visits: &mut Visits,
    ) -> usize {
        loop {
            let first = word & HEAD_PTR;
            if first == 0 || !visits.take() {
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

    /// The sweeper's walk; returns the number of live nodes it saw, and
    /// whether it *stalled*: an unlink failed because its predecessor was
    /// deleted after the sweep passed it. That predecessor can only be
    /// unlinked through its own (passed) predecessor, and so can every
    /// deleted node up to the next live one: the run is left linked, and
    /// the caller makes sure another sweep follows (L10), or a quiet
    /// list could keep it (a dropper marking nodes toward the head while
    /// this sweep walks toward the tail stalls it where they cross).
    pub(super) fn sweep_from<T: Listed>(
        &self,
        first: usize,
        released: &mut Unlinked<'_, T>,
        visits: &mut Visits,
    ) -> (u32, bool) {
        if first == 0 {
            return (0, false);
        }
        let mut live = 0u32;
        let mut stalled = false;
        // `prev` is always a linked node: we never unlink it (L1).
        let mut prev = first as *const T;
        // SAFETY: every node this sweep touches (here and in the loop) was
        // reachable while we were pinned, so its memory is live (L4).
        let first_next = unsafe { (*prev).link().next.load(Ordering::Acquire) };
        if first_next & DETACHED != 0 {
            return (live, stalled); // closed under us: the closer releases everything
        }
        if first_next & DELETED == 0 {
            live += 1;
        }
        let mut cur = first_next & PTR_MASK;
        while cur != 0 && visits.take() {
            let node = cur as *const T;
            // SAFETY: reachable while pinned (L4), as above.
            let next = unsafe { (*node).link().next.load(Ordering::Acquire) };
            if next & DETACHED != 0 {
                return (live, stalled);
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
                    Err(actual) if actual & DETACHED != 0 => return (live, stalled),
                    // `prev` was deleted meanwhile: leave `node` for next time.
                    Err(_) => stalled = !planted!("sweep_stall_ignored"),
                }
            } else {
                live = live.saturating_add(1);
            }
            prev = node;
            cur = next & PTR_MASK;
        }
        (live, stalled)
    }
}

/// What the collector's sweep of one list asks of its job (L10).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Full {
    /// The list is swept, or closed: nothing more to do.
    Done,
    /// Sweep it again: it stalled, or was sharded meanwhile.
    Again,
    /// Another sweeper or a visit held it: sweep it again once that one
    /// had a chance to end.
    Busy,
}

impl Full {
    /// The more urgent of two outcomes (for the shards of one list).
    pub(crate) fn and(self, other: Full) -> Full {
        match (self, other) {
            (Full::Busy, _) | (_, Full::Busy) => Full::Busy,
            (Full::Again, _) | (_, Full::Again) => Full::Again,
            _ => Full::Done,
        }
    }
}

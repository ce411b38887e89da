//! The children list: an intrusive, lock-free singly-linked list of a node's
//! cancelable children, threaded through the children themselves.
//!
//! The algorithm is Harris's list (Harris 2001, "A pragmatic implementation of
//! non-blocking linked-lists") specialised to what a cancellation tree needs:
//! inserts only at the head, logical deletion by a mark bit in the deleted
//! node's own `next`, and physical unlinking done in batches by a single
//! *sweeper* at a time, amortized over inserts. Memory is reclaimed with
//! crossbeam-epoch: walkers are pinned, and the list's reference to a node is
//! released through `defer`, never directly.
//!
//! ```text
//!   head (in the parent):  [ first child ptr ...... | SWEEPING CLOSED ]
//!   link (in each child):  [ next sibling ptr ..... | DETACHED DELETED ]
//! ```
//!
//! - `CLOSED`: the parent is canceled; no insert succeeds any more. While the
//!   pointer is still there, cancelers are walking the children; `CLOSED` with
//!   a 0 pointer means every descendant below is canceled (L3).
//! - `SWEEPING`: one thread owns the right to unlink marked nodes (L5).
//! - `DELETED`: the child canceled itself; it may be unlinked.
//! - `DETACHED`: the list's reference to this child has been claimed for
//!   release, by the sweeper (after unlinking it) or by the closer (L4).
//!
//! Invariants:
//! - **L1** Every node that is not `DELETED` and was inserted before the
//!   list was closed is reachable from `head` by following `next` pointers.
//!   Only the sweeper unlinks, and only `DELETED` nodes.
//! - **L2** An insert succeeds only on an open head (CAS), and the close is a
//!   `fetch_or(CLOSED)` on the same word: every insert is ordered before the
//!   close (and the closer's walk sees it) or fails and sees `CLOSED`.
//! - **L3** The head is reset to `CLOSED | 0` only by the thread whose
//!   `fetch_or` closed it, and only once every descendant below is canceled.
//! - **L4** The list holds one reference to each linked node. It is released
//!   exactly once, by whichever of sweeper and closer first sets `DETACHED`,
//!   and always through `Guard::defer`, so a pinned walker that reached the
//!   node can keep following it.
//! - **L5** At most one sweeper runs (it owns `SWEEPING`). Sweeps start after
//!   `budget` inserts, where `budget = max(MIN_SWEEP, live nodes found by the
//!   last sweep)`: each sweep walks O(n) nodes after Θ(n) inserts, so removal
//!   is O(1) amortized and the list holds at most about twice its live nodes
//!   plus `MIN_SWEEP` (and one marked first node, which the sweeper never
//!   unlinks because it never writes the head pointer).

use crate::sync::epoch::{self, Guard};
use crate::sync::{AtomicU32, AtomicUsize, Ordering};

const CLOSED: usize = 0b01;
const SWEEPING: usize = 0b10;
const DELETED: usize = 0b01;
const DETACHED: usize = 0b10;
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
/// # Safety
/// `link` always returns the same field, values are at least 4-aligned, and
/// `release_listed` gives back exactly the reference that a successful
/// [`ChildList::attach`] transferred to the list.
pub(crate) unsafe trait Listed: Sized + 'static {
    fn link(&self) -> &ChildLink;

    /// Drops the list's reference to `this`.
    ///
    /// # Safety
    /// Called once per successful attach, after no new walker can reach `this`.
    unsafe fn release_listed(this: *const Self);
}

/// The list head, stored in the parent.
pub(crate) struct ChildList {
    head: AtomicUsize,
}

/// Inserts left before the parent's next sweep (L5), stored in the parent
/// beside its `ChildList` (separate so the node packs into 64 bytes).
/// Approximate: updated with plain loads and stores, because a lost decrement
/// only delays a sweep. No correctness argument depends on it.
pub(crate) struct SweepBudget(AtomicU32);

impl SweepBudget {
    pub(crate) fn new() -> SweepBudget {
        SweepBudget(AtomicU32::new(MIN_SWEEP))
    }
}

/// The sibling link, stored in the child.
pub(crate) struct ChildLink {
    next: AtomicUsize,
}

/// What `close` found.
pub(crate) enum Close {
    /// This call closed the list: walk it, then `finish_close` it (L3).
    Owner(usize),
    /// Someone else closed it; a non-zero first child means their walk may
    /// still be running, so help (walk it too, but do not finish it).
    Helper(usize),
}

impl ChildList {
    pub(crate) fn new() -> ChildList {
        ChildList {
            head: AtomicUsize::new(0),
        }
    }

    /// A list that was never open: for a node born canceled.
    pub(crate) fn new_closed() -> ChildList {
        ChildList {
            head: AtomicUsize::new(CLOSED),
        }
    }

    /// Links `child` at the head. On success the list owns one reference to
    /// it (L4); on `Err` the list is closed and the caller keeps it.
    pub(crate) fn attach<T: Listed>(
        &self,
        child: *const T,
        budget: &SweepBudget,
    ) -> Result<(), ()> {
        // SAFETY: the caller passes a live node that is not in any list.
        let link = unsafe { &(*child).link().next };
        let mut cur = self.head.load(Ordering::Acquire);
        loop {
            if cur & CLOSED != 0 {
                return Err(());
            }
            link.store(cur & PTR_MASK, Ordering::Relaxed);
            let new = child as usize | (cur & SWEEPING);
            // Release publishes the child's fields to walkers (L2); Acquire on
            // failure makes the closer's claim visible to a caller that then
            // inherits the parent's state.
            match self
                .head
                .compare_exchange_weak(cur, new, Ordering::Release, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        let left = budget.0.load(Ordering::Relaxed);
        if left > 0 {
            budget.0.store(left - 1, Ordering::Relaxed);
        } else {
            self.sweep::<T>(budget);
        }
        Ok(())
    }

    /// Closes the list (L2). Idempotent; see [`Close`].
    pub(crate) fn close(&self) -> Close {
        #[cfg(not(ctxtree_plant = "skip_close"))]
        let old = self.head.fetch_or(CLOSED, Ordering::AcqRel);
        #[cfg(ctxtree_plant = "skip_close")]
        let old = self.head.load(Ordering::Acquire);
        if old & CLOSED == 0 {
            Close::Owner(old & PTR_MASK)
        } else {
            Close::Helper(old & PTR_MASK)
        }
    }

    /// Marks the walk of a list closed by this thread complete and claims the
    /// list's references (L3, L4) into `released`, for [`release_later`].
    ///
    /// # Safety
    /// This thread's `close` returned `Owner(first)`, every descendant below is
    /// canceled, and the caller has been pinned since before that `close`.
    pub(crate) unsafe fn finish_close<T: Listed>(
        &self,
        first: usize,
        released: &mut Vec<*const T>,
    ) {
        // A swap, not a store: every write to the head is a read-modify-write,
        // which loom models soundly (a plain store racing an RMW is not:
        // tokio-rs/loom#254). On x86 the cost is one locked instruction per
        // list, not per child.
        self.head.swap(CLOSED, Ordering::AcqRel);
        let mut cur = first;
        while cur != 0 {
            let node = cur as *const T;
            // SAFETY: `node` was reachable after the caller pinned, so its
            // release (L4) cannot have run yet.
            let old = unsafe { (*node).link().next.fetch_or(DETACHED, Ordering::AcqRel) };
            cur = old & PTR_MASK;
            if old & DETACHED == 0 {
                released.push(node);
            }
        }
    }

    /// The first child, for a walker that is pinned.
    pub(crate) fn first(&self) -> usize {
        self.head.load(Ordering::Acquire) & PTR_MASK
    }

    /// True if the list holds no node (for a node's destructor).
    pub(crate) fn is_empty(&self) -> bool {
        self.head.load(Ordering::Acquire) & PTR_MASK == 0
    }

    /// Unlinks `DELETED` nodes if no other sweeper runs (L5).
    fn sweep<T: Listed>(&self, budget: &SweepBudget) {
        let mut cur = self.head.load(Ordering::Relaxed);
        loop {
            if cur & (CLOSED | SWEEPING) != 0 {
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
        let guard = epoch::pin();
        let mut released = Vec::new();
        let live = self.sweep_from::<T>(cur & PTR_MASK, &mut released);
        // SAFETY: each node was unlinked and claimed by this sweep (L4).
        unsafe { release_later(&guard, released) };
        #[cfg(not(loom))]
        let next = live.max(MIN_SWEEP);
        #[cfg(loom)]
        let next = {
            let _ = live;
            0
        };
        budget.0.store(next, Ordering::Relaxed);
        self.head.fetch_and(!SWEEPING, Ordering::Release);
    }

    /// The sweeper's walk; returns the number of live nodes it saw.
    fn sweep_from<T: Listed>(&self, first: usize, released: &mut Vec<*const T>) -> u32 {
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
            #[cfg(not(ctxtree_plant = "sweep_unmarked"))]
            let unlink = next & DELETED != 0;
            #[cfg(ctxtree_plant = "sweep_unmarked")]
            let unlink = true;
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
                        // SAFETY: `node` was reached while pinned; its release
                        // cannot run before we unpin (L4).
                        let old =
                            unsafe { (*node).link().next.fetch_or(DETACHED, Ordering::AcqRel) };
                        if old & DETACHED == 0 {
                            released.push(node); // unlinked and claimed (L4)
                        }
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
/// Each pointer is a list reference claimed by this thread (DETACHED, L4),
/// and `guard` was pinned before the nodes were detached.
pub(crate) unsafe fn release_later<T: Listed>(guard: &Guard, released: Vec<*const T>) {
    if released.is_empty() {
        return;
    }
    let large = released.len() >= FLUSH_BATCH;
    // SAFETY: walkers that can still reach these nodes are pinned; the
    // closure runs after they unpin, and each reference is released once.
    unsafe {
        guard.defer_unchecked(move || {
            for node in released {
                T::release_listed(node);
            }
        })
    };
    if large {
        guard.flush();
    }
}

impl ChildLink {
    pub(crate) fn new() -> ChildLink {
        ChildLink {
            next: AtomicUsize::new(0),
        }
    }

    /// Logically deletes this child from its parent's list (L1).
    pub(crate) fn mark_deleted(&self) {
        #[cfg(not(ctxtree_plant = "no_mark_deleted"))]
        self.next.fetch_or(DELETED, Ordering::Release);
    }

    /// The next sibling, for a pinned walker.
    pub(crate) fn next_sibling(&self) -> usize {
        self.next.load(Ordering::Acquire) & PTR_MASK
    }
}

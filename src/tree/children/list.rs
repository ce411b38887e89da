//! The list head word of one (unsharded) list and the operations on it
//! that do not depend on its shape: closing when empty, helping a walk
//! (L3), finishing a close, and ending the list's references to the nodes
//! it held (L4, L6).

use crate::plant::planted;
use crate::sync::{AtomicUsize, Ordering};

use super::link::{Listed, DETACHED, PTR_MASK};

pub(super) const CLOSED: usize = 0b001;

pub(super) const SWEEPING: usize = 0b010;

pub(super) const HELPED: usize = 0b100;

/// A sharded head (L8): a `ShardBlock` pointer tagged `HELPED` without
/// `CLOSED`, which no plain list has (only closed lists are helped). A
/// sharded head is never written again: shards are closed one by one.
pub(super) const SHARDED: usize = HELPED;

/// The pointer bits of a head word.
pub(super) const HEAD_PTR: usize = !0b111;

/// The list head, stored in the parent.
pub(crate) struct ChildList {
    pub(super) head: AtomicUsize,
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

    /// One try at linking `child` first in the open, plain list whose head
    /// word was read as `cur`: its link takes the old first node, then a
    /// CAS publishes it. `Err` returns the head word found instead.
    #[inline(always)]
    pub(super) fn try_link<T: Listed>(&self, child: *const T, cur: usize) -> Result<(), usize> {
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

    /// Whether a sweep may find something: the list is open, not being
    /// swept, and holds a node (a plain load; `sweep` decides).
    pub(super) fn may_need_sweep(&self) -> bool {
        let word = self.head.load(Ordering::Relaxed);
        word & (CLOSED | SWEEPING) == 0 && word & HEAD_PTR != 0
    }

    /// Whether the list is closed and its walk finished (`CLOSED | 0`, L3):
    /// everything below is canceled.
    pub(crate) fn is_finished(&self) -> bool {
        self.head.load(Ordering::Acquire) == CLOSED
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

    /// The first child, for a walker that is pinned.
    pub(crate) fn first(&self) -> usize {
        self.head.load(Ordering::Acquire) & HEAD_PTR
    }
}

//! A node's link in its parent's list and what the list needs of a node
//! (the `Listed` trait): the `DELETED` mark (L1) and the `DETACHED` tag.

use crate::sync::{AtomicUsize, Ordering};

pub(super) const DELETED: usize = 0b01;

pub(super) const DETACHED: usize = 0b10;

/// The pointer bits of a link word.
pub(super) const PTR_MASK: usize = !0b11;

/// A type whose values can be children in a [`ChildList`](super::ChildList).
///
/// The list's reference to a node (L4) is ended by `unlist`, in *passes*
/// over nodes of one list: the type may owe the list's owner something for
/// each node it unlists (`node/listed.rs`: a parent grant for a node that
/// still has users, N1), settled per pass.
///
/// # Safety
/// `link` always returns the same field, values are at least 8-aligned, and
/// `unlist` ends exactly the reference that a successful
/// [`ChildList::attach`](super::ChildList::attach) transferred to the list.
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

/// The sibling link, stored in the child.
pub(crate) struct ChildLink {
    pub(super) next: AtomicUsize,
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

    /// The link word, for
    /// [`ChildList::unlink_first`](super::ChildList::unlink_first).
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

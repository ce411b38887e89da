//! Visiting a list's live children without owning counts of them, for the
//! tree dump: a *visit* is a sweep that unlinks nothing (L9).
//!
//! - **L9** A visitor reaches linked nodes under the same rights as the
//!   sweeper (L6): it pins, then takes `SWEEPING` with a CAS on an open
//!   list, walks `next` pointers (stopping at `DETACHED`, where a closer
//!   took over, as the sweeper does) and clears `SWEEPING` with an RMW.
//!   While it holds `SWEEPING`, no node of the list is unlinked (only the
//!   sweeper unlinks inside the list, and L7's head CAS expects no flags),
//!   and a closer's releases go through the epoch (L4, L6), after the
//!   visitor's pin. So every node it reaches is alive, and it may grant
//!   itself a user of one that is not `DELETED` (N1): L7's last-user
//!   argument holds, because its CAS fails while `SWEEPING` is held, and a
//!   closer's release of the list's reference, deferred past the pin, sees
//!   the user and grants the owner (N1). A visit unlinks and releases
//!   nothing, so it ends with no release to order. A sharded list (L8) is
//!   visited shard by shard, each under its own `SWEEPING`.
//!
//! Bound: a visit reads at most `shown + count_cap` linked nodes past
//! the `DELETED` ones it meets; the caller picks both.
//!
//! Linearization: a visit shows the children linked between its
//! `SWEEPING` CAS and its release; a dump of many lists is not one atomic
//! snapshot (each list is read at its own moment).

use crate::plant::planted;
use crate::sync::{epoch, Ordering};

use super::head::shards_of;
use super::link::{Listed, DELETED, DETACHED, PTR_MASK};
use super::list::{ChildList, CLOSED, HEAD_PTR, SHARDED, SWEEPING};

/// What a visit found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Visit {
    /// The list was open: `more` live children beyond those handed to the
    /// visitor were counted (at most the count cap).
    Open { more: usize },
    /// The list is closed: its owner is canceled, its children are being
    /// or were canceled and released.
    Closed,
    /// Another sweeper or visitor held the list (or one of its shards)
    /// every time this visit tried.
    Busy,
}

/// Tries to take `SWEEPING` this many times before reporting `Busy`:
/// sweeps are short, visits are rare.
const TRIES: usize = 64;

impl ChildList {
    /// Hands each live child (linked, not `DELETED`) to `take` until it
    /// returns false (declined), then counts the others, the declined one
    /// included, up to `count_cap` (L9). `take` may grant itself a user of
    /// a node it takes.
    pub(crate) fn visit<T: Listed>(
        &self,
        count_cap: usize,
        take: &mut dyn FnMut(*const T) -> bool,
    ) -> Visit {
        let word = self.head.load(Ordering::Acquire);
        if let Some(block) = shards_of(word) {
            let mut more = 0;
            for shard in block.iter() {
                match shard
                    .list
                    .visit_plain(count_cap - more.min(count_cap), take)
                {
                    Visit::Open { more: m } => more += m,
                    other => return other,
                }
            }
            return Visit::Open { more };
        }
        self.visit_plain(count_cap, take)
    }

    fn visit_plain<T: Listed>(
        &self,
        count_cap: usize,
        take: &mut dyn FnMut(*const T) -> bool,
    ) -> Visit {
        let guard = epoch::pin();
        let Some(first) = self.take_sweeping() else {
            let word = self.head.load(Ordering::Relaxed);
            return if word & CLOSED != 0 {
                Visit::Closed
            } else {
                Visit::Busy
            };
        };
        let more = visit_from(first, count_cap, take);
        self.head.fetch_and(!SWEEPING, Ordering::AcqRel);
        drop(guard);
        Visit::Open { more }
    }

    /// Takes `SWEEPING` on this open, plain list (L5); returns its first
    /// node (0 when empty), or `None` if closed, or still held by another
    /// sweeper after [`TRIES`] attempts. The planted bug skips it.
    fn take_sweeping(&self) -> Option<usize> {
        let mut cur = self.head.load(Ordering::Relaxed);
        if planted!("visit_unswept") {
            return (cur & (CLOSED | SHARDED) == 0).then_some(cur & HEAD_PTR);
        }
        for _ in 0..TRIES {
            if cur & (CLOSED | SHARDED) != 0 {
                return None;
            }
            if cur & SWEEPING != 0 {
                crate::sync::yield_now();
                cur = self.head.load(Ordering::Relaxed);
                continue;
            }
            match self.head.compare_exchange_weak(
                cur,
                cur | SWEEPING,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(cur & HEAD_PTR),
                Err(actual) => cur = actual,
            }
        }
        None
    }
}

/// The walk of a visit from `first`: live nodes to `take` until it
/// declines one, then that one and the rest counted up to `count_cap`;
/// returns the count.
fn visit_from<T: Listed>(
    first: usize,
    count_cap: usize,
    take: &mut dyn FnMut(*const T) -> bool,
) -> usize {
    let (mut cur, mut taking, mut more) = (first, true, 0);
    while cur != 0 && more < count_cap {
        let node = cur as *const T;
        // SAFETY: reached from the head while pinned and holding
        // `SWEEPING` (L9): linked, or released through the epoch after us.
        let next = unsafe { (*node).link().next.load(Ordering::Acquire) };
        if next & DETACHED != 0 {
            break; // closed under us: the closer has the rest
        }
        if next & DELETED == 0 {
            taking = taking && take(node);
            if !taking {
                more += 1;
            }
        }
        cur = next & PTR_MASK;
    }
    more
}

//! Canceling a node: the claim of its state word (S1–S4), the timer's
//! disarm (T6), closing its children list (N2) and walking what is below
//! (N4), the mark in its parent's list (L1), the callbacks (F2).

use super::layout::{Kind, Node};
use super::refs::{release_users, NodePtr, NodeUser};
use super::walk::{walk, Start};
use crate::error::{Cause, Error};
use crate::plant::planted;
use crate::sync::Ordering;
use crate::tree::children::Close;
use crate::tree::collector;
use crate::tree::panics;
use crate::tree::state::{self, How};
use crate::tree::waiters::{self, Callbacks};

impl Node {
    /// Disarms this node's deadline right after its claim (T6): the timer's
    /// entry gives back its user, so a canceled node waiting in the timer's
    /// queues pins only its own block, never its parent (N1), and the driver
    /// is told it may reclaim the entry (T3). The caller keeps the node
    /// alive (a user, or its listing in a closed list), so the user released
    /// here is never the last.
    #[inline]
    pub(super) fn disarm_timer(&self) {
        if self.kind() == Kind::Deadline {
            self.disarm_deadline();
        }
    }

    /// [`disarm_timer`](Node::disarm_timer) of a deadline node, kept out of
    /// line: the plain cancel needs only the kind test.
    #[inline(never)]
    fn disarm_deadline(&self) {
        if self.timer_slot().disarm() {
            stat!(TimerDisarmed);
            // SAFETY: the timer's user, handed to us by `disarm` (T6).
            unsafe { release_users(self, 1) };
            // The timer thread counts its own entries only (T3).
            #[cfg(not(loom))]
            if !self.virtual_time() {
                crate::time::registry::note_disarmed();
            }
        }
    }

    /// Installs the canceled `word` (which owns its cause count) if the node
    /// is still active, and wakes the waiters it took (S1, S3), queueing their
    /// callbacks on `callbacks` (F2). Returns whether this call made the
    /// transition. `cur` is a value of the state word the caller loaded with Acquire
    /// (the walk and `cancel` have just loaded it to skip canceled nodes).
    pub(super) fn claim_from(
        &self,
        mut cur: usize,
        word: usize,
        callbacks: &mut Callbacks,
    ) -> bool {
        loop {
            if state::is_canceled(cur) {
                // SAFETY: `word` was never stored; give back its cause count.
                unsafe { state::release(word) };
                return false;
            }
            // Release publishes err+cause (S2); Acquire takes the waiter
            // entries pushed with Release (W3).
            match self
                .state
                .compare_exchange_weak(cur, word, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    count_claim(state::err_of(word));
                    let waiters = state::waiter_head(cur);
                    // Most nodes end with nobody waiting: skip the call.
                    if waiters != 0 {
                        // SAFETY: the CAS moved the whole stack to us (S3).
                        unsafe { waiters::wake_chain(waiters, callbacks) };
                    }
                    return true;
                }
                Err(actual) => cur = actual,
            }
        }
    }
}

/// Cancels `node` with `err` and `cause` (first writer wins, S1), recording
/// `how` (S4), and returns once its whole subtree is canceled (N4) and the
/// `after_func` callbacks this cancel found have run (F2).
#[inline]
pub(crate) fn cancel(node: &Node, err: Error, cause: Option<Cause>, how: How) {
    let cur = node.state_word();
    if state::is_canceled(cur) {
        // Canceled and its walk finished (`CLOSED | 0`, L3): the subtree is
        // canceled and nothing is left to claim, help or run. A handle
        // dropped after its cancel lands here.
        if node.children.is_finished() {
            return;
        }
    } else if cur == state::ACTIVE && cause.is_none() {
        // Nobody waiting, no cause to count: the claim (S1) is one CAS that
        // wakes nobody and queues no callback, and a leaf's walk is closing
        // its empty list. The common cancel, without the general machinery.
        let won = node
            .state
            .compare_exchange(
                state::ACTIVE,
                state::canceled(err, None, how),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if won {
            count_claim(Some(err));
            #[cfg(feature = "tracing")]
            super::events::canceled(node, how);
            if node.children.close_if_empty() {
                // No subtree: leave the parent's list as below (L1).
                node.link.mark_deleted();
                node.disarm_timer();
                return;
            }
            return finish_cancel(node, true, Callbacks::default());
        }
    }
    cancel_slow(node, err, cause, how)
}

#[inline(never)]
pub(super) fn cancel_slow(node: &Node, err: Error, cause: Option<Cause>, how: How) {
    let mut callbacks = Callbacks::default();
    let cur = node.state_word();
    let won = !state::is_canceled(cur)
        && node.claim_from(cur, state::canceled(err, cause, how), &mut callbacks);
    #[cfg(feature = "tracing")]
    if won {
        super::events::canceled(node, how);
    }
    finish_cancel(node, won, callbacks)
}

/// The rest of a cancel after the claim (which `won` tells whether this
/// call made): the walk, the mark, the callbacks.
#[inline(never)]
pub(super) fn finish_cancel(node: &Node, won: bool, mut callbacks: Callbacks) {
    let mark_first = planted!("mark_before_walk");
    if won && mark_first {
        node.link.mark_deleted();
    }
    propagate(node, &mut callbacks);
    if won {
        // A node canceled on its own leaves its parent's list (L1), but only
        // now that its subtree is canceled: while it is still linked, a walk
        // from an ancestor finds it and helps (N4). Marked earlier, a sweep
        // could unlink it and that walk return with this subtree still
        // active (found by tests/stress.rs). Nodes canceled by their
        // parent's walk skip this: that list is closed.
        // Marked, it may leave the list: by a sweep, or by its last user
        // if it is then first in the list (L7).
        if !mark_first {
            node.link.mark_deleted();
        }
        node.disarm_timer();
    }
    // Callbacks run now: the subtree is canceled and nothing is pinned.
    callbacks.run();
    // A waker or callback that panicked was held until now, so the whole
    // subtree is canceled and every other waiter woken before the panic
    // reaches us.
    panics::resume();
}

/// Records that an entry of `node`'s waiter stack was abandoned (W4). If the
/// collection this triggers finds the node canceled, it wakes the survivors
/// itself (W2); their callbacks run here once the subtree is canceled,
/// helping a concurrent cancel finish first (F2).
/// The caller holds a user of `node`.
pub(crate) fn note_abandoned(node: &Node) {
    let mut callbacks = Callbacks::default();
    let rest = waiters::note_abandoned(&node.state, &node.waiter_gc, &mut callbacks);
    after_collection(node, callbacks, rest);
}

/// What a collection of `node`'s waiters left to do (W2, W6): the rest of a
/// long chain to the collector, and the callbacks of survivors it woke
/// because the node was canceled meanwhile, run once the subtree is
/// canceled (F2). The caller holds a user of `node`.
pub(super) fn after_collection(node: &Node, mut callbacks: Callbacks, rest: Option<waiters::Rest>) {
    if let Some(rest) = rest {
        collect_later(node, rest);
    }
    if !callbacks.is_empty() {
        propagate(node, &mut callbacks);
        callbacks.run();
    }
    // A waker that panicked while the collection woke its survivors was
    // held (with or without callbacks): raise it here, not at some later,
    // unrelated cancel (the fast paths of `cancel` and `derive` do not look).
    panics::resume();
}

/// Hands the rest of a long waiter chain to the collector thread (W6),
/// with a user of `node` that keeps the stack's node alive until it ends.
#[cold]
#[inline(never)]
fn collect_later(node: &Node, rest: waiters::Rest) {
    let held = NodeUser::take(node);
    let node = NodePtr(node);
    collector::run_later(Box::new(move || {
        // SAFETY: `held` keeps the node alive.
        let node = unsafe { node.get() };
        node.assert_live();
        let mut callbacks = Callbacks::default();
        rest.finish(&node.state, &node.waiter_gc, &mut callbacks);
        if !callbacks.is_empty() {
            propagate(node, &mut callbacks);
            callbacks.run();
        }
        drop(held);
    }));
}

/// Planted bug for the timer's loom models: claims without propagating.
pub(crate) fn cancel_without_propagation(node: &Node, err: Error, cause: Option<Cause>) {
    let how = How::Deadline;
    let mut callbacks = Callbacks::default();
    if !state::is_canceled(node.state_word())
        && node.claim_from(
            node.state_word(),
            state::canceled(err, cause, how),
            &mut callbacks,
        )
    {
        node.link.mark_deleted();
    }
}

/// Closes `node`'s children list and cancels everything below (N2, N4).
pub(super) fn propagate(node: &Node, callbacks: &mut Callbacks) {
    // A leaf (the common case) needs no pin: its list is empty.
    match node.children.close() {
        Close::Owner { first: 0, .. } | Close::Helper(0) => {}
        Close::Owner { first, swept } => walk(node, Start::Owner(first, swept), callbacks),
        Close::Helper(_) if planted!("skip_help") => {}
        Close::Helper(unpinned) => walk(node, Start::Helper(unpinned), callbacks),
        // Every shard finished (a handle dropped after its cancel): nothing
        // to walk, no pin.
        Close::Sharded(block) if block.iter().all(|shard| shard.list.is_finished()) => {}
        Close::Sharded(_) => walk(node, Start::Sharded, callbacks),
    }
}

/// Counts a claim by its err (feature `stats`; nothing without it).
#[inline(always)]
fn count_claim(err: Option<Error>) {
    #[cfg(feature = "stats")]
    crate::stats::count(match err {
        Some(Error::Canceled) => crate::stats::Event::Canceled,
        _ => crate::stats::Event::DeadlineExceeded,
    });
    #[cfg(not(feature = "stats"))]
    let _ = err;
}

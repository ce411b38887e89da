//! The timer's hold on an armed deadline node, and how it lets go.
//!
//! An armed deadline sits in the timer's queues (a shard's stack, then the
//! driver's heap) until it fires or the driver drops it. Most deadlines are
//! canceled long before that, and the driver only notices lazily (T3). If
//! the queue's reference were a plain user of the node (N1), a canceled
//! node would keep its grant on its parent, and that parent its own, up the
//! whole chain: one stale entry could pin a million ancestors. So the timer
//! holds a user only while the node is active; the cancel that claims the
//! node swaps that user for a hold on the node's *memory* alone, and the
//! node is retired as usual by its last user or list (its cause, waiters
//! and parent grant go at once) while its block waits for the timer.
//!
//! Each deadline node's [`TimerSlot`] carries one `hold` word: a state (low
//! three bits) and `TREE`, set while the tree side (users and list, N1) has
//! not freed the node.
//!
//! Invariants:
//! - **T6** The timer's entry is, in turn: nothing (`IDLE`), a user of the
//!   node (`ARMED`), a hold on the block only (`WEAK`), or released
//!   (`TAKEN`); `EARLY` marks a node claimed before it was armed, which is
//!   then never armed. Every transition is one CAS on `hold`, so exactly one
//!   of the arming thread, the claiming canceler and the timer decides each:
//!   `IDLE → ARMED` by the arm; `IDLE → EARLY` or `ARMED → WEAK` by the
//!   canceler right after its claim (S1), which after `ARMED → WEAK`
//!   releases the timer's user (never the last: the canceler holds the node
//!   alive, by a user or a list); `ARMED → TAKEN` or `WEAK → TAKEN` by the timer when it fires
//!   or drops the entry.
//! - **T7** The block is freed exactly once, by whoever of the tree side and
//!   the timer leaves it last: the tree side clears `TREE` (one RMW) after
//!   retiring the node (dropping the node's own fields); if it finds `WEAK`,
//!   the timer still holds the block and will free it. The timer's
//!   `WEAK → TAKEN` CAS that finds `TREE` clear frees it. A `TAKEN` or
//!   `EARLY` or `IDLE` entry leaves the block to the tree side.
//! - **T8** The timer touches a node's fields (state word, list, cause) only
//!   while it holds a user (`ARMED`, or `TAKEN` by its own CAS from
//!   `ARMED`); a `WEAK` entry is read through its slot (`hold`, `next`)
//!   and the node's immutable `shape` word (its deadline, no drop glue)
//!   only, which the retired node's block keeps.
//!
//! Linearization: an arm takes effect at its `IDLE → ARMED` CAS; a disarm at
//! the canceler's `ARMED → WEAK` CAS (the entry is garbage from then on).

use crate::error::Cause;
use crate::plant::planted;
use crate::sync::{AtomicU32, AtomicUsize, Ordering};

const STATE: u32 = 0b111;
const IDLE: u32 = 0;
const ARMED: u32 = 1;
const EARLY: u32 = 2;
const WEAK: u32 = 3;
const TAKEN: u32 = 4;
/// Set until the tree side has retired the node (T7).
const TREE: u32 = 8;

/// The part of a deadline node that only the timer uses, allocated with the
/// node (`node::TimedNode`): no allocation of its own per armed deadline.
pub(crate) struct TimerSlot {
    /// The next node in a submission shard's stack (T1). Written by the
    /// arming thread before it publishes the node, and by whoever took the
    /// stack (the driver, a collecting thread) before it pushes entries back.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) next: AtomicUsize,
    /// The timer's hold (T6, T7).
    hold: AtomicU32,
    /// The cause to record if the deadline fires (`None`: the err itself).
    /// Immutable.
    pub(crate) cause: Option<Cause>,
    /// Model-checking oracle: set when the block is freed (T7), so that a
    /// later access through a hold, or a second free, fails the model.
    #[cfg(loom)]
    block_freed: std::sync::atomic::AtomicBool,
    /// Model-checking oracle: every use through a hold reads this cell and
    /// the free writes it, so loom reports a use not ordered before the
    /// free by happens-before, in every interleaving it explores.
    #[cfg(loom)]
    alive: crate::sync::UnsafeCell<()>,
}

impl TimerSlot {
    pub(crate) fn new(cause: Option<Cause>) -> TimerSlot {
        TimerSlot {
            next: AtomicUsize::new(0),
            hold: AtomicU32::new(TREE | IDLE),
            cause,
            #[cfg(loom)]
            block_freed: std::sync::atomic::AtomicBool::new(false),
            #[cfg(loom)]
            alive: crate::sync::UnsafeCell::new(()),
        }
    }

    /// The canceler's half of T6, right after it claimed the node: returns
    /// true if the timer held a user, which the caller must now release (the
    /// entry became garbage: a disarm, T3).
    pub(crate) fn disarm(&self) -> bool {
        let mut cur = self.hold.load(Ordering::Acquire);
        loop {
            let next = match cur & STATE {
                IDLE => EARLY,
                ARMED if !planted!("timer_keeps_user") => WEAK,
                _ => return false,
            };
            // AcqRel: ordered with the arm's and the timer's CASes.
            match self.hold.compare_exchange_weak(
                cur,
                (cur & TREE) | next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return next == WEAK,
                Err(actual) => cur = actual,
            }
        }
    }

    /// The tree side's half of T7, after the node's own fields were dropped:
    /// returns true if the caller must free the block now (the timer holds
    /// no part of it).
    pub(crate) fn retire(&self) -> bool {
        // AcqRel: the timer's accesses through a WEAK entry happen before a
        // free by us, ours before a free by the timer.
        let prev = self.hold.fetch_and(!TREE, Ordering::AcqRel);
        // Planted: the tree side frees the block the timer still holds.
        prev & STATE != WEAK || planted!("retire_ignores_timer")
    }

    /// Under loom, marks the block freed, failing the model if it was
    /// already (a double free).
    pub(crate) fn mark_block_freed(&self) {
        #[cfg(loom)]
        {
            assert!(
                !self
                    .block_freed
                    .swap(true, std::sync::atomic::Ordering::Relaxed),
                "a deadline node's block freed twice"
            );
            self.alive.with_mut(|_| ());
        }
    }

    /// Under loom, fails the model if the block was freed (T7).
    #[inline(always)]
    pub(crate) fn assert_block_live(&self) {
        #[cfg(loom)]
        {
            assert!(
                !self.block_freed.load(std::sync::atomic::Ordering::Relaxed),
                "a timer hold used after its block was freed"
            );
            self.alive.with(|_| ());
        }
    }

    /// The arm: `IDLE → ARMED` (T6). False if the node was claimed first
    /// (`EARLY`): it must not be armed.
    pub(crate) fn arm(&self) -> bool {
        if planted!("arm_by_store") {
            // Planted: a check-then-act instead of one CAS.
            if self.hold.load(Ordering::Acquire) != TREE | IDLE {
                return false;
            }
            self.hold.store(TREE | ARMED, Ordering::Release);
            return true;
        }
        self.hold
            .compare_exchange(
                TREE | IDLE,
                TREE | ARMED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Whether the timer's entry is garbage: the node was canceled and the
    /// timer's user given back (`WEAK`). Reads the slot alone (T8).
    pub(crate) fn is_disarmed(&self) -> bool {
        self.hold.load(Ordering::Acquire) & STATE == WEAK
    }

    /// The timer gives its entry up for good (`→ TAKEN`, T6) and learns
    /// what it held.
    pub(crate) fn take(&self) -> Taken {
        let mut cur = self.hold.load(Ordering::Acquire);
        loop {
            match self.hold.compare_exchange_weak(
                cur,
                (cur & TREE) | TAKEN,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        match cur & STATE {
            ARMED => Taken::User,
            WEAK if cur & TREE == 0 => Taken::LastOfBlock,
            // WEAK with the tree side alive: it frees the block (T7).
            WEAK => Taken::Nothing,
            state => unreachable!("a timer hold in state {state}"),
        }
    }
}

/// What the timer's entry held when the timer gave it up (T6, T7).
pub(crate) enum Taken {
    /// A user of the node (`ARMED`): the timer now owns it.
    User,
    /// The block alone (`WEAK`), which the tree side already left: the
    /// timer frees it.
    LastOfBlock,
    /// The block alone, which the tree side still uses and will free.
    Nothing,
}

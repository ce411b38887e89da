//! The timer's reference to an armed deadline node: a user while the slot
//! is `ARMED`, the block alone once `WEAK`. The protocol (T6–T8) is the
//! slot's ([`slot`](super::slot)); this is the owning handle the driver's
//! queues hold (T1).

use crate::sync::AtomicUsize;
use crate::time::deadline::Deadline;
use crate::time::slot::{Taken, TimerSlot};
use crate::tree::node::{self, Node, NodeRef};

/// The timer's reference to an armed deadline node: a user while `ARMED`,
/// the block alone once `WEAK` (T6). Dropping it lets go of whichever it is.
pub(crate) struct TimerHold(std::ptr::NonNull<Node>);

// SAFETY: the node and its slot are shared across threads by design; the
// hold is released through atomic transitions only (T6, T7).
unsafe impl Send for TimerHold {}

impl TimerHold {
    /// Arms `node` (`IDLE → ARMED`, T6); the hold owns the user `node`
    /// carries. `None` if the node was claimed first (`EARLY`): it must
    /// not be armed, and `node`'s user is released here.
    pub(crate) fn arm(node: NodeRef) -> Option<TimerHold> {
        if !node.timer_slot().arm() {
            return None;
        }
        // SAFETY: `into_raw` never returns null; the hold owns its user.
        Some(TimerHold(unsafe {
            std::ptr::NonNull::new_unchecked(node.into_raw() as *mut Node)
        }))
    }

    fn slot(&self) -> &TimerSlot {
        // SAFETY: the hold keeps the block (T7), and a deadline node's slot
        // is part of its block (`node::TimedNode`); the slot is never
        // dropped before the block is freed.
        let slot = unsafe { node::timer_slot_of(self.0.as_ptr()) };
        slot.assert_block_live();
        slot
    }

    /// Whether the entry is garbage: its node was canceled and its user
    /// given back (`WEAK`). Reads the slot alone (T8).
    pub(crate) fn is_disarmed(&self) -> bool {
        self.slot().is_disarmed()
    }

    /// Gives the hold up for good (`→ TAKEN`, T6): returns the node's user
    /// if the entry was still `ARMED` (to fire it, or to drop it).
    pub(crate) fn take(self) -> Option<NodeRef> {
        let this = std::mem::ManuallyDrop::new(self);
        this.take_inner()
    }

    /// Raw pointers of holds in the timer's stacks (T1).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn into_raw(self) -> *const Node {
        std::mem::ManuallyDrop::new(self).0.as_ptr()
    }

    /// Takes back a hold given up by [`TimerHold::into_raw`].
    ///
    /// # Safety
    /// `ptr` came from `into_raw` and that hold is not used again.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) unsafe fn from_raw(ptr: *const Node) -> TimerHold {
        // SAFETY: `into_raw` never returns null.
        TimerHold(unsafe { std::ptr::NonNull::new_unchecked(ptr as *mut Node) })
    }

    /// The node's slot's stack link (T1), readable in every state (T8).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn next(&self) -> &AtomicUsize {
        &self.slot().next
    }

    /// The node's deadline, immutable and kept with the block (T8).
    pub(crate) fn deadline(&self) -> Deadline {
        // SAFETY: the block is held; the shape word is immutable and not
        // dropped by retiring (it has no drop glue).
        unsafe { node::deadline_of(self.0.as_ptr()) }
    }

    fn take_inner(&self) -> Option<NodeRef> {
        match self.slot().take() {
            // SAFETY: an ARMED hold owns a user of the node (T6).
            Taken::User => Some(unsafe { NodeRef::from_raw(self.0.as_ptr()) }),
            Taken::LastOfBlock => {
                // SAFETY: the tree side retired the node and left the block
                // to us (T7); nobody else can reach it.
                unsafe { node::free_timed_block(self.0.as_ptr()) };
                None
            }
            Taken::Nothing => None,
        }
    }
}

impl Drop for TimerHold {
    fn drop(&mut self) {
        // Dropping the user (if any) may free the node (T7 then sees TAKEN).
        drop(self.take_inner());
    }
}

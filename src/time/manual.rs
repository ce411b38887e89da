//! Virtual time, the mechanism (`crate::VirtualClock` is its public face):
//! a clock owns the root node of a tree whose nodes carry the shape bit
//! `VIRTUAL_TIME` (copied by every derivation), a heap of that tree's armed
//! deadlines, and its time, which moves only when a test advances it.
//!
//! A node with the bit reads "now" from its clock and arms its deadline on
//! the clock's heap — the same `TimerHold` as the timer thread's (T6–T8) —
//! and `advance_to` fires what it passes in deadline order on the calling
//! thread with the ordinary cancel (T4). The clock is found from a node by
//! walking to the top of its chain, the clock's root, then one registry
//! lookup: only nodes with the bit pay it.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crate::error::Error;
use crate::time::deadline::Deadline;
use crate::time::hold::TimerHold;
use crate::tree::node::{self, Node, NodeRef};
use crate::tree::state::How;

/// A virtual clock: registered by its root node's address while it lives.
pub(crate) struct Clock {
    /// A user of the root: its address is the registry key, so it must not
    /// be reused while the clock is registered.
    root: NodeRef,
    state: Mutex<State>,
}

struct State {
    now: Deadline,
    armed: BinaryHeap<Pending>,
    seq: u64,
    /// Heap size at which disarmed entries are dropped.
    compact_at: usize,
}

/// An armed deadline of the tree: the timer's hold on its node (T6).
struct Pending {
    deadline: Deadline,
    seq: u64,
    hold: TimerHold,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Pending) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Pending) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    /// Reversed: `BinaryHeap` is a max-heap, the earliest (then the first
    /// armed) must be on top.
    fn cmp(&self, other: &Pending) -> CmpOrdering {
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

/// Live clocks by the address of their root node.
static CLOCKS: Mutex<Vec<(usize, Weak<Clock>)>> = Mutex::new(Vec::new());

fn clocks() -> MutexGuard<'static, Vec<(usize, Weak<Clock>)>> {
    CLOCKS.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Clock {
    /// A clock at the current real time for the tree under `root` (a node
    /// from `node::derive_virtual_root`), registered.
    pub(crate) fn register(root: NodeRef) -> Arc<Clock> {
        let address = root.as_ptr() as usize;
        let clock = Arc::new(Clock {
            root,
            state: Mutex::new(State {
                now: Deadline::now(),
                armed: BinaryHeap::new(),
                seq: 0,
                compact_at: 1024,
            }),
        });
        clocks().push((address, Arc::downgrade(&clock)));
        clock
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn now(&self) -> Deadline {
        self.lock().now
    }

    /// Moves the time to `target`, firing every armed deadline up to it,
    /// earliest first, each with the time at its deadline; also those the
    /// fires' functions arm. A panic from a fire's functions is resumed.
    pub(crate) fn advance_to(&self, target: Deadline) {
        loop {
            let due = {
                let mut state = self.lock();
                match state.armed.peek() {
                    Some(top) if top.deadline <= target => {
                        let due = state.armed.pop().expect("peeked");
                        state.now = state.now.max(due.deadline);
                        due
                    }
                    _ => {
                        state.now = state.now.max(target);
                        return;
                    }
                }
            };
            fire(due.hold);
        }
    }

    /// The earliest deadline still armed (disarmed ones are dropped).
    pub(crate) fn next_deadline(&self) -> Option<Deadline> {
        let mut state = self.lock();
        while let Some(top) = state.armed.peek() {
            if !top.hold.is_disarmed() {
                return Some(top.deadline);
            }
            state.armed.pop();
        }
        None
    }

    fn arm(&self, node: NodeRef) {
        let deadline = node.deadline();
        let Some(hold) = TimerHold::arm(node) else {
            return; // claimed already (T6)
        };
        let mut state = self.lock();
        if deadline <= state.now {
            // Passed while it was being derived: fire now, as the timer
            // thread would at once.
            drop(state);
            return fire(hold);
        }
        if state.armed.len() >= state.compact_at {
            state.armed.retain(|p| !p.hold.is_disarmed());
            state.compact_at = (2 * state.armed.len()).max(1024);
        }
        state.seq += 1;
        let seq = state.seq;
        state.armed.push(Pending {
            deadline,
            seq,
            hold,
        });
    }
}

impl Drop for Clock {
    fn drop(&mut self) {
        let address = self.root.as_ptr() as usize;
        clocks().retain(|(a, _)| *a != address);
        // The pending holds go with the heap.
        self.lock().armed.clear();
    }
}

/// Fires a due deadline on this thread: the ordinary cancel (T4), with its
/// `after_func` functions run here and a panic resumed to the caller.
fn fire(hold: TimerHold) {
    let Some(node) = hold.take() else {
        return; // disarmed: its node was canceled
    };
    if node.err().is_none() {
        let cause = node.timer_slot().cause.clone();
        node::cancel(&node, Error::DeadlineExceeded, cause, How::Deadline);
    }
}

/// The clock of the virtual tree `node` is in, if it is still alive.
fn clock_of(node: &Node) -> Option<Arc<Clock>> {
    let mut top = node;
    while let Some(parent) = top.parent() {
        top = parent;
    }
    let address = top as *const Node as usize;
    let clocks = clocks();
    let (_, clock) = clocks.iter().find(|(a, _)| *a == address)?;
    clock.upgrade()
}

/// The time for a node with the virtual-time bit: its clock's, or real
/// time once the clock is gone (its tree is then canceled).
#[cold]
pub(crate) fn now_for(node: &Node) -> Deadline {
    clock_of(node).map_or_else(Deadline::now, |clock| clock.now())
}

/// Arms a deadline node with the virtual-time bit on its clock. With the
/// clock gone its tree is canceled, so nothing needs to fire.
#[cold]
pub(crate) fn arm(node: NodeRef) {
    if let Some(clock) = clock_of(&node) {
        clock.arm(node);
    }
}

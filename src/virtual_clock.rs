//! Virtual time for tests: a [`VirtualClock`] owns a context tree whose
//! deadlines count on the clock, fired by [`VirtualClock::advance`] on the
//! calling thread, in deadline order, instead of by the timer thread.
//!
//! Scoped by construction: only contexts derived from the clock's
//! [`context`](VirtualClock::context) carry the shape bit
//! (`PackedShape::virtual_time`) that sends their clock reads and their
//! timers here, so tests running in parallel in one process, each with its
//! own clock or with real time, never see each other's time. Contexts
//! without the bit pay nothing: every path tests the bit of the node it
//! already holds. Found from a node by walking to the top of its chain,
//! the clock's root, then one registry lookup: test-time costs only.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::context::{Context, Repr};
use crate::error::Error;
use crate::handle::CancelHandle;
use crate::time::deadline::Deadline;
use crate::time::hold::TimerHold;
use crate::tree::node::{self, Node, NodeRef};
use crate::tree::state::How;

/// A clock for deterministic deadline tests: contexts derived from its
/// [`context`](VirtualClock::context) see time stand still until
/// [`advance`](VirtualClock::advance) moves it, which fires every deadline
/// it passes synchronously, earliest first, before returning.
///
/// ```
/// use std::time::Duration;
/// use ctxtree::{Error, VirtualClock};
///
/// let clock = VirtualClock::new();
/// let (request, _end) = clock.context().with_timeout(Duration::from_secs(30));
/// let (step, _end_step) = request.with_timeout(Duration::from_secs(5));
///
/// clock.advance(Duration::from_secs(4));
/// assert!(!step.is_done());
/// assert_eq!(step.remaining(), Some(Duration::from_secs(1)));
/// clock.advance(Duration::from_secs(1)); // no real time passes
/// assert_eq!(step.err(), Some(Error::DeadlineExceeded));
/// assert!(!request.is_done());
/// ```
///
/// What follows the clock: `with_timeout`, `with_deadline` (an `Instant`
/// at or before [`now`](VirtualClock::now) is expired), `remaining`,
/// `Display`'s time left, `wait`, `done()`, `after_func` (whose functions
/// run inside `advance`), task groups and the tower layer built on the
/// clock's context. What does not: time-bounded waits (`wait_timeout`, a
/// tower `handler_grace`) are in real time, and a context detached with
/// `without_cancel` is back on real time. A merge takes its clock from its
/// primary context.
///
/// Dropping the last clone of the clock cancels its context, and with it
/// every context derived from it; their pending deadlines never fire.
#[derive(Clone)]
pub struct VirtualClock {
    inner: Arc<Clock>,
}

struct Clock {
    root: Context,
    /// Cancels the tree when the clock goes (last field dropped: the
    /// registry entry is removed first, in `Drop`).
    _handle: CancelHandle,
    state: Mutex<State>,
}

struct State {
    now: Deadline,
    armed: BinaryHeap<Pending>,
    seq: u64,
    /// Heap size at which disarmed entries are dropped.
    compact_at: usize,
}

/// An armed deadline of the tree: the timer's hold on its node (T6), as
/// the timer thread keeps it.
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

/// Live clocks by the address of their root node (kept alive by the clock).
static CLOCKS: Mutex<Vec<(usize, Weak<Clock>)>> = Mutex::new(Vec::new());

fn clocks() -> MutexGuard<'static, Vec<(usize, Weak<Clock>)>> {
    CLOCKS.lock().unwrap_or_else(PoisonError::into_inner)
}

impl VirtualClock {
    /// A clock reading the current real time, with a fresh context tree
    /// (a child of `context.Background`).
    ///
    /// ```
    /// let clock = ctxtree::VirtualClock::new();
    /// assert!(!clock.context().is_done());
    /// ```
    #[allow(clippy::new_without_default)] // a clock per test, made explicitly
    pub fn new() -> VirtualClock {
        let (root, handle) = node::derive_virtual_root();
        let address = root.as_ptr() as usize;
        let inner = Arc::new(Clock {
            root: Context {
                repr: Repr::Node(root),
                values: None,
            },
            _handle: CancelHandle { node: handle },
            state: Mutex::new(State {
                now: Deadline::now(),
                armed: BinaryHeap::new(),
                seq: 0,
                compact_at: 1024,
            }),
        });
        clocks().push((address, Arc::downgrade(&inner)));
        VirtualClock { inner }
    }

    /// The root of the clock's tree: derive every context of the test from
    /// it (or from contexts derived from it).
    ///
    /// ```
    /// let clock = ctxtree::VirtualClock::new();
    /// let (ctx, _h) = clock.context().with_timeout(std::time::Duration::from_secs(1));
    /// assert_eq!(ctx.deadline(), Some(clock.now() + std::time::Duration::from_secs(1)));
    /// ```
    pub fn context(&self) -> &Context {
        &self.inner.root
    }

    /// The clock's time: the real time when it was made, plus every advance.
    ///
    /// ```
    /// use std::time::Duration;
    /// let clock = ctxtree::VirtualClock::new();
    /// let start = clock.now();
    /// clock.advance(Duration::from_secs(3600));
    /// assert_eq!(clock.now() - start, Duration::from_secs(3600));
    /// ```
    pub fn now(&self) -> Instant {
        self.inner
            .now()
            .to_instant()
            .expect("a clock's time is representable")
    }

    /// Moves the clock forward by `by`, firing every deadline of its tree
    /// that falls due, earliest first (the clock reads each deadline's time
    /// while it fires), also those armed by the functions a fire runs. Each
    /// fire is an ordinary cancel on this thread: its `after_func` functions
    /// have run when `advance` returns, and a panic from one is resumed here.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    ///
    /// let clock = ctxtree::VirtualClock::new();
    /// let order = Arc::new(Mutex::new(Vec::new()));
    /// let mut keep = Vec::new();
    /// for secs in [3, 1, 2] {
    ///     let (ctx, h) = clock.context().with_timeout(Duration::from_secs(secs));
    ///     let order = order.clone();
    ///     keep.push((ctx.after_func(move || order.lock().unwrap().push(secs)), h));
    /// }
    /// clock.advance(Duration::from_secs(10));
    /// assert_eq!(*order.lock().unwrap(), [1, 2, 3]);
    /// ```
    pub fn advance(&self, by: Duration) {
        let target = Deadline::after(self.inner.now(), by);
        self.inner.advance_to(target);
    }

    /// Moves the clock forward to `to` (nothing happens if it is already
    /// there or past), as [`advance`](VirtualClock::advance) does.
    ///
    /// ```
    /// use std::time::Duration;
    /// let clock = ctxtree::VirtualClock::new();
    /// let (ctx, _h) = clock.context().with_timeout(Duration::from_millis(250));
    /// clock.advance_to(ctx.deadline().unwrap());
    /// assert!(ctx.is_done());
    /// ```
    pub fn advance_to(&self, to: Instant) {
        self.inner.advance_to(Deadline::from_instant(to));
    }

    /// The earliest deadline still armed in the clock's tree, if any (a
    /// context canceled before its deadline no longer counts).
    ///
    /// ```
    /// use std::time::Duration;
    /// let clock = ctxtree::VirtualClock::new();
    /// assert_eq!(clock.next_deadline(), None);
    /// let (ctx, h) = clock.context().with_timeout(Duration::from_secs(2));
    /// assert_eq!(clock.next_deadline(), ctx.deadline());
    /// drop(h);
    /// assert_eq!(clock.next_deadline(), None);
    /// ```
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut state = self.inner.lock();
        while let Some(top) = state.armed.peek() {
            if !top.hold.is_disarmed() {
                return top.deadline.to_instant();
            }
            state.armed.pop();
        }
        None
    }
}

impl Clock {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> Deadline {
        self.lock().now
    }

    fn advance_to(&self, target: Deadline) {
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
        let address = self.root.node().map_or(0, |n| n.as_ptr() as usize);
        clocks().retain(|(a, _)| *a != address);
        // The pending holds go with the heap; `_handle` then cancels the tree.
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

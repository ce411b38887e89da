//! Virtual time for tests: a [`VirtualClock`] owns a context tree whose
//! deadlines count on the clock, fired by [`VirtualClock::advance`] on the
//! calling thread, in deadline order, instead of by the timer thread (the
//! mechanism is `time/manual.rs`).
//!
//! Scoped by construction: only contexts derived from the clock's
//! [`context`](VirtualClock::context) carry the shape bit that sends their
//! clock reads and their timers to the clock, so tests running in parallel
//! in one process, each with its own clock or with real time, never see
//! each other's time. Contexts without the bit pay nothing: every path
//! tests the bit of the node it already holds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::context::{Context, Repr};
use crate::handle::CancelHandle;
use crate::time::deadline::Deadline;
use crate::time::manual::Clock;
use crate::tree::node;

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
    inner: Arc<Inner>,
}

/// Dropped in field order: the clock leaves the registry, then the handle
/// cancels the tree.
struct Inner {
    clock: Arc<Clock>,
    root: Context,
    _handle: CancelHandle,
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
        VirtualClock {
            inner: Arc::new(Inner {
                clock: Clock::register(root.clone()),
                root: Context {
                    repr: Repr::Node(root),
                    values: None,
                },
                _handle: CancelHandle { node: handle },
            }),
        }
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
            .clock
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
        let target = Deadline::after(self.inner.clock.now(), by);
        self.inner.clock.advance_to(target);
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
        self.inner.clock.advance_to(Deadline::from_instant(to));
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
        self.inner.clock.next_deadline()?.to_instant()
    }
}

//! The waiter stack: who to wake when a node is canceled.
//!
//! A Treiber stack (Treiber 1986) whose head lives in the node's state word
//! (`state.rs`), so registering a waiter and canceling are two CASes on one
//! word and cannot miss each other. Each entry is an `Arc<Waiter>` shared by
//! the stack and the thread or future that waits; the stack owns one count per
//! entry through raw pointers.
//!
//! A waiter that gives up (a dropped `done()` future, a timed-out
//! `wait_timeout`) cannot unlink itself from the middle of a Treiber stack.
//! It only marks itself `ABANDONED`; an amortized *collection* removes marked
//! entries: it takes the whole stack with one CAS (the word stays active),
//! frees the abandoned entries, and pushes the survivors back.
//!
//! Invariants:
//! - **W1** A waiter's `state` moves `WAITING → NOTIFIED` (by whoever notifies)
//!   or `WAITING → ABANDONED` (by its owner), exactly once; the winner of that
//!   race decides whether a wake-up is delivered. Both transitions are
//!   compare-exchanges from `WAITING`, so `NOTIFIED` and `ABANDONED` are
//!   final: a stopped `after_func` still reads as stopped after a cancel took
//!   its entry. Hence `wait_timeout` returning `None` and a delivered wake-up
//!   never both happen, and a future dropped while being woken is not counted
//!   as garbage (W4) twice.
//! - **W2** Every entry is owned by exactly one of: the stack in the state word,
//!   the claimer that took it (cancel), or a collector that took it. Whoever
//!   owns an entry when the node is canceled notifies it: the claimer notifies
//!   the chain it took (S3); a collector that finds the word canceled when it
//!   returns the survivors notifies them itself. So no waiter registered
//!   before the claim is left asleep.
//! - **W3** `next` is written only by the entry's current owner before
//!   publishing it (Release CAS) and read only by an owner that took it
//!   (Acquire CAS). A link written for a CAS that then failed is stale: it
//!   is rewritten before the next attempt, or cut before the chain is used
//!   (a collector that finds the word canceled cuts its chain's bottom link
//!   before waking it), or never read again (a push that finds the word
//!   canceled gives its entry up unpublished).
//! - **W4**, **W6** (the collection of abandoned entries: how often, and
//!   how much per call) are stated in `collect.rs`.
//! - **W5** An abandoned entry keeps no waker: the owner that wins W1 by
//!   abandoning takes its waker out and drops it at once, so what a quiet
//!   stack holds for its abandoned entries is their own small allocations
//!   (`Waiter`, under 64 bytes each), never the tasks their wakers own. The
//!   cell is touched only by the winner of W1: an abandoning owner takes and
//!   drops the waker, a notifier takes it and wakes it by value (no extra
//!   reference on the task). The owner's `will_wake` compares the waker's
//!   identity (data and vtable pointers) recorded at registration and never
//!   reads the cell.
//!
//! Linearization: a waiter is registered at its push CAS, woken-or-not is
//! decided at its `state` transition (W1).

mod collect;

#[cfg(not(loom))]
pub(crate) use collect::max_inline_collect;
#[cfg(loom)]
pub use collect::set_inline_collect;
pub(crate) use collect::{census, note_abandoned, Census, Rest, WaiterGc};

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::task::{RawWakerVTable, Waker};

use crate::plant::planted;
use crate::sync::thread::{self, Thread};
use crate::sync::{Arc, AtomicUsize, Ordering, UnsafeCell};
use crate::tree::panics;
use crate::tree::state::{self, ACTIVE};

const WAITING: usize = 0;
const NOTIFIED: usize = 1;
const ABANDONED: usize = 2;

/// Abandoned entries tolerated before a collection (W4). Tiny under loom so a
/// model with two waiters exercises collection.
const MIN_COLLECT: u32 = if cfg!(loom) { 1 } else { 32 };

/// One registered waiter: a parked thread or an async task.
#[repr(align(8))] // the state word tags a pointer to it with three bits (state.rs)
pub(crate) struct Waiter {
    /// `WAITING`, `NOTIFIED` or `ABANDONED` (W1).
    state: AtomicUsize,
    /// Immutable after creation; a future whose waker changes registers anew.
    wake: Wake,
    /// The entry below this one (a raw `Arc<Waiter>`, or 0); see W3.
    next: UnsafeCell<usize>,
}

// The stack's head shares the state word with its tag bits (`state.rs`).
const _: () = assert!(std::mem::align_of::<Waiter>() > state::TAG_MASK);

enum Wake {
    Thread(Thread),
    /// The task's waker, until the winner of W1 takes it (W5).
    Task(TaskWake),
    /// An `after_func` callback (`after_func.rs`, F1–F4).
    Func(Callback),
}

/// A task's registration: its waker, taken by the winner of W1, and the
/// waker's identity, immutable, for the owner's `will_wake` (W5).
struct TaskWake {
    waker: UnsafeCell<Option<Waker>>,
    data: *const (),
    vtable: *const RawWakerVTable,
}

impl TaskWake {
    fn new(waker: &Waker) -> TaskWake {
        TaskWake {
            waker: UnsafeCell::new(Some(waker.clone())),
            data: waker.data(),
            vtable: waker.vtable(),
        }
    }

    /// `Waker::will_wake` against the registered waker, which the cell may
    /// no longer hold.
    fn will_wake(&self, waker: &Waker) -> bool {
        waker.data() == self.data && std::ptr::eq(waker.vtable(), self.vtable)
    }

    /// Takes the waker out.
    ///
    /// # Safety
    /// The caller won W1 (W5): nobody else touches the cell.
    unsafe fn take(&self) -> Option<Waker> {
        // SAFETY: by the caller's contract.
        self.waker.with_mut(|w| unsafe { (*w).take() })
    }
}

/// The callback of an `after_func` registration.
pub(crate) struct Callback {
    /// The function; taken by the winner of the W1 transition (F1): run by a
    /// notifier, dropped by a stopper.
    f: UnsafeCell<Option<Box<dyn FnOnce() + Send>>>,
    /// `thread::token()` of the thread that will run `f`, written by the
    /// notifier right after it wins W1 (F3), and again by a runner thread
    /// that takes it over (F6).
    runner: AtomicUsize,
    /// A second state word (same encoding as a node's, `state.rs`): active
    /// with a stack of threads waiting for `f` to return, then `CANCELED`
    /// once it has returned (F3).
    finished: AtomicUsize,
}

// `state` is atomic; `wake` is immutable and `Send + Sync`, but for a
// callback's `f` cell and a task's waker cell, each touched only by the
// single winner of W1 (F1, W5), and a task waker's identity pointers, which
// are only compared, never dereferenced.
// SAFETY: as above, and `next` is accessed only by the entry's current
// owner (W3), handed over by Release/Acquire CASes on the state word.
unsafe impl Send for Waiter {}
// SAFETY: as above.
unsafe impl Sync for Waiter {}

impl Waiter {
    pub(crate) fn for_thread() -> Arc<Waiter> {
        Waiter::new(Wake::Thread(thread::current()))
    }

    pub(crate) fn for_task(waker: &Waker) -> Arc<Waiter> {
        Waiter::new(Wake::Task(TaskWake::new(waker)))
    }

    pub(crate) fn for_func(f: Box<dyn FnOnce() + Send>) -> Arc<Waiter> {
        Waiter::new(Wake::Func(Callback {
            f: UnsafeCell::new(Some(f)),
            runner: AtomicUsize::new(0),
            finished: AtomicUsize::new(ACTIVE),
        }))
    }

    fn new(wake: Wake) -> Arc<Waiter> {
        Arc::new(Waiter {
            state: AtomicUsize::new(WAITING),
            wake,
            next: UnsafeCell::new(0),
        })
    }

    /// True once a notifier delivered (or is delivering) the wake-up; the
    /// node's state word is canceled by then (S3 happens before W1).
    pub(crate) fn is_notified(&self) -> bool {
        self.state.load(Ordering::Acquire) == NOTIFIED
    }

    /// Whether a poll with `waker` can keep this registration.
    pub(crate) fn will_wake(&self, waker: &Waker) -> bool {
        match &self.wake {
            Wake::Task(task) => task.will_wake(waker),
            Wake::Thread(_) | Wake::Func(_) => false,
        }
    }

    /// Gives up waiting. True if this call abandoned a still-waiting entry,
    /// which the caller must report with [`note_abandoned`]; false if it was
    /// already notified.
    pub(crate) fn abandon(&self) -> bool {
        let unclaimed = planted!("take_waker_unclaimed");
        if unclaimed {
            self.drop_waker();
        }
        let won = self
            .state
            .compare_exchange(WAITING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if won && !unclaimed {
            self.drop_waker();
        }
        won
    }

    /// Drops a task entry's waker, which often owns a whole task, now
    /// rather than when a collection frees the entry (W5).
    fn drop_waker(&self) {
        if let Wake::Task(task) = &self.wake {
            // SAFETY: this thread won W1 by abandoning (W5); under the
            // planted bug it has not, which is what loom is to catch.
            let waker = unsafe { task.take() };
            // A waker's drop is foreign code: hold a panic like a wake's.
            panics::hold_from(move || drop(waker));
            panics::resume();
        }
    }

    /// True if the entry was abandoned (a stopped callback, F1).
    pub(crate) fn is_abandoned(&self) -> bool {
        self.state.load(Ordering::Acquire) == ABANDONED
    }

    /// The callback of a `Func` entry.
    pub(crate) fn callback(&self) -> &Callback {
        match &self.wake {
            Wake::Func(callback) => callback,
            _ => unreachable!("not an after_func entry"),
        }
    }

    /// Delivers the wake-up if the entry is still waiting (W1). A callback is
    /// not run here but queued on `callbacks`, to run once the cancel is
    /// complete and nothing is pinned (F2).
    fn notify(this: Arc<Waiter>, callbacks: &mut Callbacks) {
        // A CAS, not a swap: `ABANDONED` is final, so a stopped callback still
        // reads as stopped after the cancel (F1).
        let won = if planted!("callback_unclaimed") {
            // Planted bug: a check-then-act instead of one CAS.
            this.state.load(Ordering::Acquire) == WAITING && {
                this.state.store(NOTIFIED, Ordering::Release);
                true
            }
        } else {
            this.state
                .compare_exchange(WAITING, NOTIFIED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        };
        if won {
            match &this.wake {
                Wake::Thread(_) | Wake::Task(_) => stat!(WaiterWoken),
                Wake::Func(_) => {}
            }
            match &this.wake {
                Wake::Thread(t) => t.unpark(),
                // A waker is foreign code and may panic. The cancel that is
                // waking it must still wake everyone else and cancel the whole
                // subtree, so the panic is held and re-raised once the cancel
                // is complete (P1, `panics::resume`).
                Wake::Task(task) => {
                    // SAFETY: this notifier won W1 (W5).
                    let waker = unsafe { task.take() };
                    // By value: the waker's reference goes to the wake-up.
                    let wake = move || waker.map(Waker::wake);
                    if let Err(payload) = catch_unwind(AssertUnwindSafe(wake)) {
                        panics::hold(payload);
                    }
                }
                Wake::Func(callback) => {
                    // F3: this thread runs it (a stop_wait from inside any
                    // callback this thread runs must not wait for it), unless
                    // it hands it off (F6), whose runner records itself.
                    record_runner(callback);
                    // Planted bug: runs the callback inside the claim.
                    if planted!("callback_in_walk") {
                        run_callback(callback);
                    } else {
                        callbacks.queue.push(this);
                    }
                    return;
                }
            }
        }
        // Dropping the stack's count may drop a waker (foreign code, which
        // may panic) in the middle of a walk: held like a panicking wake.
        panics::hold_from(move || drop(this));
    }

    fn next(&self) -> usize {
        // SAFETY: only the entry's current owner calls this (W3).
        self.next.with(|p| unsafe { *p })
    }

    fn set_next(&self, next: usize) {
        // SAFETY: only the entry's current owner calls this, before publishing
        // the entry (W3).
        self.next.with_mut(|p| unsafe { *p = next })
    }
}

/// Pushes `waiter` onto the stack in the active word `state`.
///
/// Returns the canceled word instead if the node is already canceled (S3): the
/// caller is done waiting and nothing was registered.
pub(crate) fn push(state: &AtomicUsize, waiter: Arc<Waiter>) -> Result<(), usize> {
    let raw = Arc::into_raw(waiter);
    let mut cur = state.load(Ordering::Acquire);
    loop {
        if state::is_canceled(cur) {
            // SAFETY: `raw` came from `into_raw` above and was never published.
            drop(unsafe { Arc::from_raw(raw) });
            return Err(cur);
        }
        // SAFETY: `raw` is unpublished, so we are its only owner (W3).
        unsafe { (*raw).set_next(state::waiter_head(cur)) };
        // Release publishes `next` and the waker to whoever takes the stack.
        let success = if planted!("relaxed_push") {
            Ordering::Relaxed
        } else {
            Ordering::AcqRel
        };
        match state.compare_exchange_weak(cur, raw as usize, success, Ordering::Acquire) {
            Ok(_) => return Ok(()),
            Err(actual) => cur = actual,
        }
    }
}

/// Notifies every entry of a chain taken from the stack and drops the stack's
/// counts (the claimer's half of W2); callbacks are queued on `callbacks`.
///
/// # Safety
/// `head` is a chain this thread owns: taken by a CAS on the state word.
pub(crate) unsafe fn wake_chain(head: usize, callbacks: &mut Callbacks) {
    let mut cur = head;
    while cur != 0 {
        // SAFETY: we own the chain, so each entry's stack count is ours.
        let waiter = unsafe { Arc::from_raw(cur as *const Waiter) };
        cur = waiter.next();
        Waiter::notify(waiter, callbacks);
    }
}

/// Callbacks whose W1 transition this thread won, to run when the cancel
/// that found them is complete (F2). Running them, and dropping the queue —
/// which runs what is left, so an unwinding cancel still runs them and
/// releases their `stop_wait`ers — is `dispatch.rs`'s.
#[derive(Default)]
pub(crate) struct Callbacks {
    queue: Vec<Arc<Waiter>>,
}

impl Callbacks {
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Takes the queued callbacks out (to run them: `dispatch.rs`).
    pub(crate) fn take(&mut self) -> Vec<Arc<Waiter>> {
        std::mem::take(&mut self.queue)
    }

    /// A queue of one callback: an entry never published.
    pub(crate) fn one(waiter: Arc<Waiter>) -> Callbacks {
        Callbacks {
            queue: vec![waiter],
        }
    }
}

/// Runs a callback whose W1 transition this thread won, then marks it
/// finished and wakes its `stop_wait`ers (F3).
pub(crate) fn run_callback(callback: &Callback) {
    // SAFETY: this thread won the W1 transition, so it alone touches `f` (F1).
    let f = callback.f.with_mut(|f| unsafe { (*f).take() });
    if let Some(f) = f {
        stat!(CallbackRun);
        if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
            panics::hold(payload);
        }
    }
    // AcqRel: Release publishes f's effects to the stoppers that find the
    // word finished (their push fails with an Acquire load); Acquire takes
    // the entries they pushed with Release (W3).
    let order = if planted!("finish_relaxed") {
        Ordering::Relaxed
    } else {
        Ordering::AcqRel
    };
    let waiting = callback.finished.swap(state::CANCELED, order);
    let mut none = Callbacks::default();
    // SAFETY: the swap moved the stack of waiting stoppers to us (S3).
    unsafe { wake_chain(state::waiter_head(waiting), &mut none) };
}

/// Records the calling thread as the one that runs `callback` (F3): by the
/// notifier right after it wins W1, and again by a runner thread that takes
/// it over (F6). Relaxed: only the recording thread must find its own token
/// (`runs_here`); any other thread finds a token that is not its own either
/// way.
pub(crate) fn record_runner(callback: &Callback) {
    callback.runner.store(thread::token(), Ordering::Relaxed);
}

/// Drops the function of a callback whose W1 transition this thread won by
/// abandoning it (a stop, F1), so its captures are freed now.
pub(crate) fn drop_callback(callback: &Callback) {
    // SAFETY: this thread won the W1 transition, so it alone touches `f` (F1).
    drop(callback.f.with_mut(|f| unsafe { (*f).take() }));
}

/// Blocks until a running callback has returned (F3); returns at once if it
/// already has.
pub(crate) fn wait_finished(callback: &Callback) {
    let waiter = Waiter::for_thread();
    if push(&callback.finished, waiter.clone()).is_err() {
        return;
    }
    while !waiter.is_notified() {
        thread::park();
    }
}

/// Whether the calling thread is the one that runs (or will run) `callback`.
pub(crate) fn runs_here(callback: &Callback) -> bool {
    callback.runner.load(Ordering::Relaxed) == thread::token()
}

/// Drops a chain's counts without notifying anyone: for a node being freed,
/// whose remaining entries can only be abandoned (a live waiter holds the node).
///
/// # Safety
/// As for [`wake_chain`].
pub(crate) unsafe fn drop_chain(head: usize) {
    let mut cur = head;
    while cur != 0 {
        // SAFETY: we own the chain.
        let waiter = unsafe { Arc::from_raw(cur as *const Waiter) };
        cur = waiter.next();
    }
}

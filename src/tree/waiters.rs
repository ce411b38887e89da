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
//! - **W4** Abandoned entries are bounded: a collection runs when the count
//!   of abandoned entries reaches `max(MIN_COLLECT, half the survivors of
//!   the last collection)`. Until then fewer than half of those survivors
//!   have left, so the entries still waiting outnumber the abandoned ones:
//!   the stack stays within twice the live waiters plus `MIN_COLLECT`, also
//!   on a context where nothing else happens. Each collection's walk frees
//!   at least a third of the entries it visits (O(1) amortized per abandon).
//!   Concurrent collectors take disjoint chains; none waits for another.
//! - **W5** An abandoned entry keeps no waker: the owner that wins W1 by
//!   abandoning takes its waker out and drops it at once, so what a quiet
//!   stack holds for its abandoned entries is their own small allocations
//!   (`Waiter`, under 64 bytes each), never the tasks their wakers own. The
//!   cell is written only by that winner; a notifier reads it only after
//!   winning W1 the other way, and the owner only before abandoning.
//!
//! - **W6** No abandon walks more than `inline_collect()` (1,024) entries.
//!   A collection that took a longer chain walks that many, gives their
//!   survivors back, and hands the unwalked rest — still owned, as W2
//!   says of a collector's chain — to the collector thread
//!   (`tree/collector.rs`) with a user of the node. The collector walks it
//!   in full, gives it back or, if the node was canceled meanwhile, wakes
//!   it (W2), then collects again in full if abandons counted meanwhile
//!   made W4 due (they could not reach the rest). So a waiter in a rest
//!   is woken by the collector, not by the claim, if the cancel comes
//!   while the collector holds it: later by the job's queueing delay. A
//!   walk that left a rest keeps W4's survivor count less what it freed,
//!   so the next collection comes after half the stack again (O(1)
//!   amortized per abandon, also counting the collector's walks).
//!
//! Linearization: a waiter is registered at its push CAS, woken-or-not is
//! decided at its `state` transition (W1).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::task::Waker;

use crate::plant::planted;
use crate::sync::thread::{self, Thread};
use crate::sync::{Arc, AtomicU64, AtomicUsize, Ordering, UnsafeCell};
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
    /// The task's waker, until its abandon drops it (W5).
    Task(UnsafeCell<Option<Waker>>),
    /// An `after_func` callback (`after_func.rs`, F1–F4).
    Func(Callback),
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
// callback's `f` cell, touched only by the single winner of W1 (F1).
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
        Waiter::new(Wake::Task(UnsafeCell::new(Some(waker.clone()))))
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
            Wake::Task(w) => {
                // SAFETY: only the entry's owner calls this, before it
                // abandons the entry, and only its abandon writes the cell (W5).
                w.with(|w| unsafe { &*w }.as_ref().is_some_and(|w| w.will_wake(waker)))
            }
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
        if let Wake::Task(w) = &self.wake {
            // SAFETY: this thread won W1 by abandoning, so no notifier reads
            // the cell; the owner (us) reads it only before abandoning (W5).
            let waker = w.with_mut(|w| unsafe { (*w).take() });
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
                Wake::Task(w) => {
                    // SAFETY: this notifier won W1, so no abandon writes the
                    // cell (W5); other accesses are reads.
                    let wake = || w.with(|w| unsafe { &*w }.as_ref().map(Waker::wake_by_ref));
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

/// Bookkeeping for W4: low 32 bits count abandoned entries, high 32 bits hold
/// the survivors of the last collection (twice the next threshold). Approximate under
/// races (an abandon counted after its entry was already freed), which only
/// moves a collection earlier.
pub(crate) struct WaiterGc(AtomicU64);

impl WaiterGc {
    pub(crate) fn new() -> WaiterGc {
        WaiterGc(AtomicU64::new(0))
    }
}

/// Records that an entry of the stack in `state` was abandoned and collects
/// when garbage reaches the threshold (W4). A collection that finds the node
/// canceled wakes the survivors and queues their callbacks on `callbacks`
/// (`node::note_abandoned` runs them, F2). A collection that met more than
/// `inline_collect()` entries returns the rest of the chain it took, for
/// the caller to hand to the collector (W6).
pub(crate) fn note_abandoned(
    state: &AtomicUsize,
    gc: &WaiterGc,
    callbacks: &mut Callbacks,
) -> Option<Rest> {
    let prev = gc.0.fetch_add(1, Ordering::Relaxed);
    let abandoned = (prev as u32).wrapping_add(1);
    let threshold = ((prev >> 32) as u32 / 2).max(MIN_COLLECT);
    if abandoned >= threshold {
        collect(state, gc, callbacks, inline_collect())
    } else {
        None
    }
}

/// Entries a collection run by a waiter's abandon walks at most (W6): the
/// rest of the chain it took goes to the collector thread. Under loom a
/// model sets its own (`loom_hooks::set_inline_collect`), unbounded by
/// default so the other models keep their state space.
#[cfg(not(loom))]
fn inline_collect() -> usize {
    1024
}

#[cfg(loom)]
fn inline_collect() -> usize {
    INLINE_COLLECT.with(std::cell::Cell::get)
}

#[cfg(loom)]
std::thread_local! {
    /// Per OS thread, which is per test (loom runs a model on its test's thread).
    static INLINE_COLLECT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// Under loom, sets the inline collection's entry limit for this test's models.
#[cfg(loom)]
pub fn set_inline_collect(limit: usize) {
    INLINE_COLLECT.with(|l| l.set(limit));
}

/// The most entries a collection run by an abandon has walked (W6).
static MAX_INLINE_COLLECT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The most entries one collection run by an abandon has walked (W6).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn max_inline_collect() -> usize {
    MAX_INLINE_COLLECT.load(std::sync::atomic::Ordering::Relaxed)
}

/// The unwalked part of a chain a collection took (W6): owned entries, not
/// in the stack, that [`Rest::finish`] walks and gives back (or wakes).
#[must_use = "the entries of a chain's rest are woken or given back only by `finish`"]
pub(crate) struct Rest(usize);

// SAFETY: a chain of `Arc<Waiter>` counts owned by whoever holds the
// `Rest` (W2); `Waiter` is `Send + Sync`.
unsafe impl Send for Rest {}

impl Rest {
    /// Walks the rest in full, frees its abandoned entries and gives the
    /// survivors back to the stack in `state`, or wakes them if the node
    /// was canceled meanwhile (W2, W6).
    pub(crate) fn finish(self, state: &AtomicUsize, gc: &WaiterGc, callbacks: &mut Callbacks) {
        if planted!("rest_dropped") {
            // Planted bug: the rest is freed, its waiters never woken.
            // SAFETY: we own the chain.
            return unsafe { drop_chain(self.0) };
        }
        let survivors = Survivors::walk(self.0, usize::MAX);
        survivors.count(gc, Walk::Rest);
        survivors.give_back(state, callbacks);
        // Abandons counted while the rest was out of the stack may have
        // found the collection they made due unable to reach it: collect
        // again, in full (we are the collector), if W4 says so.
        let v = gc.0.load(Ordering::Relaxed);
        if v as u32 >= ((v >> 32) as u32 / 2).max(MIN_COLLECT) {
            let rest = collect(state, gc, callbacks, usize::MAX);
            debug_assert!(rest.is_none());
        }
    }
}

/// Takes the stack, frees abandoned entries, returns the survivors; the
/// rest of a chain longer than `limit` is returned for the collector (W6).
fn collect(
    state: &AtomicUsize,
    gc: &WaiterGc,
    callbacks: &mut Callbacks,
    limit: usize,
) -> Option<Rest> {
    let mut cur = state.load(Ordering::Acquire);
    loop {
        if state::is_canceled(cur) || state::waiter_head(cur) == 0 {
            return None; // the claimer owns the entries now, or there are none
        }
        match state.compare_exchange_weak(cur, ACTIVE, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => break,
            Err(actual) => cur = actual,
        }
    }
    // We own the chain (W2).
    let survivors = Survivors::walk(state::waiter_head(cur), limit);
    if !cfg!(loom) && limit != usize::MAX {
        let walked = (survivors.kept + survivors.removed) as usize;
        MAX_INLINE_COLLECT.fetch_max(walked, std::sync::atomic::Ordering::Relaxed);
    }
    let walk = if survivors.rest == 0 {
        Walk::Whole
    } else {
        Walk::Part
    };
    survivors.count(gc, walk);
    let rest = survivors.rest;
    survivors.give_back(state, callbacks);
    (rest != 0).then_some(Rest(rest))
}

/// Which part of a collection a walk was (W4's bookkeeping).
#[derive(Clone, Copy)]
enum Walk {
    Whole,
    Part,
    Rest,
}

/// A chain rebuilt from the entries still waiting (W4).
struct Survivors {
    top: usize,
    bottom: usize,
    kept: u32,
    removed: u32,
    /// The owned, unwalked rest of the chain (W6), or 0.
    rest: usize,
}

impl Survivors {
    /// Walks at most `limit` entries of the owned chain `head`, freeing
    /// the abandoned ones.
    fn walk(head: usize, limit: usize) -> Survivors {
        let mut chain = Survivors {
            top: 0,
            bottom: 0,
            kept: 0,
            removed: 0,
            rest: 0,
        };
        let mut next = head;
        let mut walked = 0usize;
        while next != 0 {
            if walked == limit {
                chain.rest = next;
                break;
            }
            walked += 1;
            // SAFETY: we own the chain, so each entry's stack count is ours.
            let waiter = unsafe { Arc::from_raw(next as *const Waiter) };
            next = waiter.next();
            if waiter.state.load(Ordering::Acquire) == ABANDONED {
                chain.removed += 1;
                continue; // dropping `waiter` frees the entry
            }
            chain.kept += 1;
            waiter.set_next(0);
            let raw = Arc::into_raw(waiter) as usize;
            if chain.top == 0 {
                chain.top = raw;
            } else {
                // SAFETY: `bottom` is an entry of our chain, kept alive by its count.
                unsafe { (*(chain.bottom as *const Waiter)).set_next(raw) };
            }
            chain.bottom = raw;
        }
        chain
    }

    /// Records the walk in W4's bookkeeping: the entries it freed, and the
    /// survivors of the collection. A whole walk counts them exactly; a walk
    /// that left a rest keeps the last count less what it freed (the rest
    /// is mostly survivors); the rest's own walk changes only the garbage.
    fn count(&self, gc: &WaiterGc, walk: Walk) {
        let (kept, removed) = (self.kept as u64, self.removed);
        let _ =
            gc.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                let survivors = match walk {
                    Walk::Whole => kept,
                    Walk::Part => (v >> 32).saturating_sub(removed as u64).max(kept),
                    Walk::Rest => v >> 32,
                };
                Some((survivors << 32) | (v as u32).saturating_sub(removed) as u64)
            });
    }

    /// Gives the survivors back, or wakes them if the node was canceled
    /// while we held them (W2).
    fn give_back(self, state: &AtomicUsize, callbacks: &mut Callbacks) {
        let (top, bottom) = (self.top, self.bottom);
        if top == 0 {
            return;
        }
        let mut cur = state.load(Ordering::Acquire);
        loop {
            if state::is_canceled(cur) {
                // A failed CAS below may have linked `bottom` to entries the
                // claimer has since taken, woken and released: cut that link
                // before waking our own chain (found by the concurrent fuzz
                // target as a use-after-free; W2).
                if !planted!("stale_link") {
                    // SAFETY: `bottom` belongs to our unpublished chain (W3).
                    unsafe { (*(bottom as *const Waiter)).set_next(0) };
                }
                if planted!("no_rewake") {
                    // SAFETY: as below (planted bug: drops without notifying).
                    unsafe { drop_chain(top) };
                } else {
                    // SAFETY: we still own the chain `top`.
                    unsafe { wake_chain(top, callbacks) };
                }
                return;
            }
            // SAFETY: `bottom` belongs to our unpublished chain (W3).
            unsafe { (*(bottom as *const Waiter)).set_next(state::waiter_head(cur)) };
            match state.compare_exchange_weak(cur, top, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }
}

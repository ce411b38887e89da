//! The collection of abandoned waiter entries (W4, W6): when it runs, how
//! much one call walks, and the rest handed to the collector thread.
//!
//! - **W4** Abandoned entries are bounded: a collection runs when the count
//!   of abandoned entries reaches `max(MIN_COLLECT, half the survivors of
//!   the last collection)`. Until then fewer than half of those survivors
//!   have left, so the entries still waiting outnumber the abandoned ones:
//!   the stack stays within twice the live waiters plus `MIN_COLLECT`, also
//!   on a context where nothing else happens. Each collection's walk frees
//!   at least a third of the entries it visits (O(1) amortized per abandon).
//!   Concurrent collectors take disjoint chains; none waits for another.
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

use crate::plant::planted;
use crate::sync::{Arc, AtomicU64, AtomicUsize, Ordering};
use crate::tree::state::{self, ACTIVE};

use super::{drop_chain, wake_chain, Callbacks, Waiter, Wake, ABANDONED, MIN_COLLECT};

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
    census(state, gc, callbacks, limit).1
}

/// The entries still waiting in a stack, by kind (the tree dump).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Census {
    /// Threads blocked in `wait` or `wait_timeout`.
    pub(crate) threads: usize,
    /// Tasks waiting on a `done()` future.
    pub(crate) tasks: usize,
    /// `after_func` functions.
    pub(crate) callbacks: usize,
}

/// A collection (W4) that also counts what it keeps, by kind: of the first
/// `limit` entries, the rest returned for the collector (W6). Nothing is
/// counted if the node is canceled or has no waiter.
pub(crate) fn census(
    state: &AtomicUsize,
    gc: &WaiterGc,
    callbacks: &mut Callbacks,
    limit: usize,
) -> (Census, Option<Rest>) {
    let mut cur = state.load(Ordering::Acquire);
    loop {
        if state::is_canceled(cur) || state::waiter_head(cur) == 0 {
            // The claimer owns the entries now, or there are none.
            return (Census::default(), None);
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
    let (rest, census) = (survivors.rest, survivors.census);
    survivors.give_back(state, callbacks);
    (census, (rest != 0).then_some(Rest(rest)))
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
    /// The kept entries by kind.
    census: Census,
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
            census: Census::default(),
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
            match waiter.wake {
                Wake::Thread(_) => chain.census.threads += 1,
                Wake::Task(_) => chain.census.tasks += 1,
                Wake::Func(_) => chain.census.callbacks += 1,
            }
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

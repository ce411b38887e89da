//! Process-wide counters (feature `stats`; exported through the `metrics`
//! facade with feature `metrics`): contexts derived, freed and canceled by
//! err, timers armed, fired and disarmed, `after_func` functions run and
//! waiters woken.
//!
//! Counted per thread — each thread owns a block of counters it alone
//! writes (a relaxed load and store, no read-modify-write, no shared cache
//! line) — and summed by [`snapshot`], which reads every live thread's
//! block and what exited threads left. Without the feature none of this is
//! compiled.

use std::cell::OnceCell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

/// What is counted: an index into a thread's block.
#[derive(Clone, Copy)]
pub(crate) enum Event {
    Derived,
    Freed,
    Canceled,
    DeadlineExceeded,
    TimerArmed,
    TimerFired,
    TimerDisarmed,
    CallbackRun,
    WaiterWoken,
}

const EVENTS: usize = 9;

type Block = [AtomicU64; EVENTS];

/// Every live thread's block, and the sums of the exited threads' blocks.
struct Registry {
    live: Vec<Arc<Block>>,
    exited: [u64; EVENTS],
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    live: Vec::new(),
    exited: [0; EVENTS],
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A thread's block: registered at its first count, folded into the
/// exited sums when the thread ends.
struct Local(Arc<Block>);

impl Drop for Local {
    fn drop(&mut self) {
        let mut registry = registry();
        for (sum, count) in registry.exited.iter_mut().zip(self.0.iter()) {
            *sum += count.load(Relaxed);
        }
        registry.live.retain(|block| !Arc::ptr_eq(block, &self.0));
    }
}

std::thread_local! {
    static LOCAL: OnceCell<Local> = const { OnceCell::new() };
}

/// Counts one `event` on this thread's block. A count made while the
/// thread-local is being torn down goes straight to the exited sums.
#[inline]
pub(crate) fn count(event: Event) {
    let counted = LOCAL.try_with(|local| {
        let block = &local
            .get_or_init(|| {
                let block: Arc<Block> = Arc::new(Default::default());
                registry().live.push(block.clone());
                Local(block)
            })
            .0;
        let cell = &block[event as usize];
        cell.store(cell.load(Relaxed) + 1, Relaxed);
    });
    if counted.is_err() {
        registry().exited[event as usize] += 1;
    }
}

/// The counters' sums at one moment (each read once; counts made during
/// the read may be in or out).
///
/// ```
/// use ctxtree::stats;
/// let before = stats::snapshot();
/// let (ctx, handle) = ctxtree::Context::background().with_cancel();
/// drop(handle);
/// drop(ctx);
/// let after = stats::snapshot();
/// assert!(after.derived >= before.derived + 1);
/// assert!(after.canceled >= before.canceled + 1);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Snapshot {
    /// Contexts derived (cancel and deadline nodes; value layers are not
    /// contexts of their own).
    pub derived: u64,
    /// Contexts freed; `derived - freed` are alive.
    pub freed: u64,
    /// Contexts that ended with `Error::Canceled` (each one, including
    /// those an ancestor's cancel reached).
    pub canceled: u64,
    /// Contexts that ended with `Error::DeadlineExceeded`.
    pub deadline_exceeded: u64,
    /// Deadlines armed on the timer thread.
    pub timers_armed: u64,
    /// Deadlines the timer thread fired.
    pub timers_fired: u64,
    /// Armed deadlines disarmed by an earlier cancel.
    pub timers_disarmed: u64,
    /// `after_func` functions run.
    pub callbacks_run: u64,
    /// Waiters (`wait`, `done()` futures) woken by a cancel.
    pub waiters_woken: u64,
}

impl Snapshot {
    /// Contexts alive now: derived and not yet freed.
    ///
    /// ```
    /// let live = ctxtree::stats::snapshot().live();
    /// # let _ = live;
    /// ```
    pub fn live(&self) -> u64 {
        self.derived.saturating_sub(self.freed)
    }
}

/// Sums every thread's counters.
///
/// ```
/// let s = ctxtree::stats::snapshot();
/// assert!(s.freed <= s.derived);
/// ```
pub fn snapshot() -> Snapshot {
    let registry = registry();
    let mut sums = registry.exited;
    for block in &registry.live {
        for (sum, count) in sums.iter_mut().zip(block.iter()) {
            *sum += count.load(Relaxed);
        }
    }
    drop(registry);
    let [derived, freed, canceled, deadline_exceeded, timers_armed, timers_fired, timers_disarmed, callbacks_run, waiters_woken] =
        sums;
    Snapshot {
        derived,
        freed,
        canceled,
        deadline_exceeded,
        timers_armed,
        timers_fired,
        timers_disarmed,
        callbacks_run,
        waiters_woken,
    }
}

#[cfg(feature = "metrics")]
impl Snapshot {
    /// Records this snapshot through the `metrics` facade (feature
    /// `metrics`): `ctxtree_contexts_live` as a gauge, the rest as
    /// counters set to their totals (`ctxtree_contexts_derived_total`,
    /// `ctxtree_contexts_canceled_total{err="canceled"|"deadline_exceeded"}`,
    /// `ctxtree_timers_total{event="armed"|"fired"|"disarmed"}`,
    /// `ctxtree_callbacks_run_total`, `ctxtree_waiters_woken_total`). Call
    /// it when the exporter scrapes, or periodically.
    ///
    /// ```
    /// ctxtree::stats::snapshot().record_metrics(); // no recorder: a no-op
    /// ```
    pub fn record_metrics(&self) {
        metrics::gauge!("ctxtree_contexts_live").set(self.live() as f64);
        metrics::counter!("ctxtree_contexts_derived_total").absolute(self.derived);
        metrics::counter!("ctxtree_contexts_canceled_total", "err" => "canceled")
            .absolute(self.canceled);
        metrics::counter!("ctxtree_contexts_canceled_total", "err" => "deadline_exceeded")
            .absolute(self.deadline_exceeded);
        metrics::counter!("ctxtree_timers_total", "event" => "armed").absolute(self.timers_armed);
        metrics::counter!("ctxtree_timers_total", "event" => "fired").absolute(self.timers_fired);
        metrics::counter!("ctxtree_timers_total", "event" => "disarmed")
            .absolute(self.timers_disarmed);
        metrics::counter!("ctxtree_callbacks_run_total").absolute(self.callbacks_run);
        metrics::counter!("ctxtree_waiters_woken_total").absolute(self.waiters_woken);
    }
}

//! after_func registrations.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use ctxtree::{AfterFunc, Cause, Context, Error};

use super::model::At;

/// What a registered function saw when it ran.
pub(super) struct Seen {
    pub(super) err: Option<Error>,
    pub(super) cause: Option<Cause>,
    /// `is_done()` of every probe context (the arena before the op).
    pub(super) probe_done: Vec<bool>,
    /// A nested `after_func` on its own context: (runs right after
    /// registering, `stop()`, `stop_wait()`), and its run count, read
    /// again once the op has returned.
    pub(super) nested: Option<((usize, bool, bool), Arc<AtomicUsize>)>,
    /// A child derived from its own context: (err, cause equal to the
    /// context's, is_done).
    pub(super) child: Option<(Option<Error>, bool, bool)>,
    /// `stop()` and `stop_wait()` on its own registration, from inside.
    pub(super) own_stop: Option<(bool, bool)>,
}

/// Shared between a registered function and the harness.
#[derive(Default)]
pub(super) struct RegRec {
    pub(super) runs: AtomicUsize,
    /// Set when the function returns.
    pub(super) finished: AtomicBool,
    pub(super) seen: Mutex<Option<Seen>>,
    /// The registration itself, for the function's own `stop` calls.
    pub(super) own: OnceLock<AfterFunc>,
}

/// The model of a registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RegState {
    /// On a never-canceled context: nothing registered; counts stops.
    Never { stops: usize },
    /// Registered on a live node.
    Pending(usize),
    /// Ran inside `after_func` (the context was already canceled).
    RanAtOnce,
    /// Ran by a cancel.
    Ran,
    /// A `stop` prevented it.
    Stopped,
}

pub(super) struct Reg {
    pub(super) rec: Arc<RegRec>,
    /// Captured by the function: the closure is alive iff the count is 2.
    pub(super) token: Arc<()>,
    pub(super) ctx: Context,
    pub(super) at: At,
    pub(super) state: RegState,
    /// What it saw has been checked.
    pub(super) checked: bool,
}

pub(super) type Probe = Mutex<Vec<Context>>;

/// The registered function.
pub(super) fn after_func_body(rec: &Weak<RegRec>, ctx: &Context, probe: &Weak<Probe>, flags: u8) {
    let Some(rec) = rec.upgrade() else { return };
    rec.runs.fetch_add(1, Ordering::SeqCst);
    let probe_done = probe
        .upgrade()
        .map(|p| {
            let p = p.lock().unwrap_or_else(PoisonError::into_inner);
            p.iter().map(Context::is_done).collect()
        })
        .unwrap_or_default();
    let err = ctx.err();
    let cause = ctx.cause();
    let nested = (flags & 1 != 0).then(|| {
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = runs.clone();
        let inner = ctx.after_func(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let ran = runs.load(Ordering::SeqCst);
        ((ran, inner.stop(), inner.stop_wait()), runs)
    });
    let child = (flags & 2 != 0).then(|| {
        let (c, h) = ctx.with_cancel();
        let got = (c.err(), c.cause() == cause, c.is_done());
        drop(h);
        got
    });
    let own_stop = if flags & 4 != 0 {
        rec.own.get().map(|af| (af.stop(), af.stop_wait()))
    } else {
        None
    };
    *rec.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(Seen {
        err,
        cause,
        probe_done,
        nested,
        child,
        own_stop,
    });
    rec.finished.store(true, Ordering::SeqCst);
}

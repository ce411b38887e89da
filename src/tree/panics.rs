//! Panics raised by foreign code during a cancel, held until the cancel is
//! done.
//!
//! Invariant:
//! - **P1** Foreign code that a cancel runs — a waker's `wake` or `drop`,
//!   the `drop` of a cause freed with a node, an `after_func` function —
//!   cannot abandon the cancel half-way (the node claimed, later waiters
//!   asleep, the subtree active, children left listed under a parent that
//!   no longer counts them, N1). Each such call is wrapped in
//!   `catch_unwind`; the first payload is held in a thread-local until the
//!   whole cancel, walk and passes included, has finished, then resumed to
//!   the outermost caller ([`resume`]), or dropped if that thread is
//!   already unwinding (a second panic would abort). Later payloads are
//!   dropped. The other operations that run such code hold and resume the
//!   same way: a derive whose insert swept (its pass frees nodes), a
//!   collection of abandoned waiters that finds the node canceled (W2), an
//!   abandon that drops its waker (W5), an `after_func` on a context
//!   already canceled. Under loom [`hold_from`] runs its code unguarded
//!   (loom reports a failure by panicking).
//!
//! Extended by F4 and F5d (a callback-run loop leaves the resume to its
//! outermost run, [`defer_resume`]), F6 (a runner thread, which has no
//! caller, [`discard`]s the payload), T4 (the timer thread catches what its
//! fire's cancel resumes) and B3 (nothing unwinds into tokio-util).

use std::any::Any;
use std::cell::Cell;

type Payload = Box<dyn Any + Send + 'static>;

#[cfg(not(loom))]
std::thread_local! {
    /// Whether this thread's trampoline loop runs (F5d): it resumes what
    /// the cancels of its callbacks held.
    static DEFERRED: Cell<bool> = const { Cell::new(false) };
}

// Per modelled thread under loom, like the trampoline's own state.
#[cfg(loom)]
loom::thread_local! {
    static DEFERRED: Cell<bool> = Cell::new(false);
}

std::thread_local! {
    static HELD: Cell<Option<Payload>> = const { Cell::new(None) };
    /// Whether `HELD` may be set: a flag without a destructor, so the
    /// check on every cancel is one thread-local load.
    static ANY_HELD: Cell<bool> = const { Cell::new(false) };
}

/// Keeps the first payload of this cancel; later ones are dropped (P1).
/// On a thread whose locals are being destroyed (a cancel in another
/// thread-local's destructor) there is nowhere to hold it: it is dropped,
/// as a runner thread drops its own.
pub(crate) fn hold(payload: Payload) {
    let mut payload = Some(payload);
    let held = HELD.try_with(|held| {
        let first = held.take();
        held.set(first.or_else(|| payload.take()));
    });
    if held.is_ok() {
        ANY_HELD.with(|any| any.set(true));
    }
    if let Some(unheld) = payload {
        // Later payloads of this cancel, or nowhere to keep it. Its drop is
        // foreign code: guarded.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(unheld)));
    }
}

/// Runs `f`, which may run foreign code (a waker's or a cause's `drop`),
/// holding a panic it raises until [`resume`] (P1): a walk or a pass that
/// ends list references must complete, or children would be left
/// listed under a parent that no longer counts them (N1).
/// Under loom `f` runs unguarded (loom reports failures by panicking).
#[inline]
pub(crate) fn hold_from(f: impl FnOnce()) {
    #[cfg(not(loom))]
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        hold(payload);
    }
    #[cfg(loom)]
    f();
}

/// While a trampoline loop runs on this thread (`on`), [`resume`] leaves
/// held panics to it (F5d).
pub(crate) fn defer_resume(on: bool) {
    DEFERRED.with(|deferred| deferred.set(on));
}

/// Drops a held panic: for a runner thread, which has no caller to
/// resume it to (F6). The payload's drop is foreign code: guarded.
pub(crate) fn discard() {
    if ANY_HELD.with(Cell::get) {
        ANY_HELD.with(|any| any.set(false));
        let payload = HELD.try_with(Cell::take).ok().flatten();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(payload)));
    }
}

/// Re-raises a held panic once the cancel that caught it has finished,
/// unless this thread is already unwinding (a second panic would abort):
/// P1.
#[inline]
pub(crate) fn resume() {
    if ANY_HELD.with(Cell::get) {
        resume_held();
    }
}

#[cold]
fn resume_held() {
    if DEFERRED.with(Cell::get) {
        return; // the outermost runner resumes it (F5d)
    }
    ANY_HELD.with(|any| any.set(false));
    if let Some(payload) = HELD.try_with(Cell::take).ok().flatten() {
        if !std::thread::panicking() {
            std::panic::resume_unwind(payload);
        }
    }
}

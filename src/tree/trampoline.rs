//! The callback trampoline: `after_func` callbacks run one after another from
//! a per-thread FIFO, never nested on the stack.
//!
//! A callback may cancel a context that has callbacks of its own (Go's
//! linking idiom: `ctx_i.after_func(move || drop(handle_next))`). Running
//! those inside the nested `cancel` would recurse once per link and overflow
//! the stack on a long chain. Instead, the classic trampoline: a thread that
//! is already running callbacks only *appends* a nested cancel's queue to its
//! FIFO and returns; the outermost run loops until the FIFO is empty.
//!
//! State, per thread: `RUNNING` (a loop is active on this thread) and
//! `PENDING` (the FIFO). Both are `const` thread-locals; `RUNNING` has no
//! destructor, so it is readable even while the thread's locals are being
//! destroyed, and `PENDING` is reached with `try_with`: a cancel during
//! thread-local destruction that cannot reach it runs its queue inline.
//!
//! Invariants (they extend F1–F4 in `after_func.rs`):
//! - **F5** At most one callback-run loop is active per thread, and callbacks
//!   never nest on a thread's stack. [`run`] appends its queue (one cancel's
//!   callbacks, in their order) to the thread's FIFO; only if no loop is
//!   active does it run the loop, which pops and runs callbacks until the
//!   FIFO is empty. Hence:
//!   - **F5a** A cancel made inside a callback returns once its subtree is
//!     canceled, with its callbacks pending; they run on the same thread
//!     after the current callback (and those pending before them) returns,
//!     and before the outermost run returns. So when the outermost `cancel`
//!     returns, every callback taken by it or by any cancel its callbacks
//!     made has run. The stack holds one callback whatever the chain length.
//!   - **F5b** F2 holds for every queue: a cancel appends its queue only
//!     after its walk has finished, and the loop runs where no epoch guard
//!     is held (the outermost caller holds none; a callback drops its own
//!     before it returns).
//!   - **F5c** F3 holds: every pending callback's runner token is this
//!     thread's (its cancel won F1 here, or a runner re-recorded it, F6), so
//!     a `stop_wait` from any callback of the loop on one still pending
//!     returns at once instead of waiting for a callback queued behind it.
//!   - **F5d** F4 (P1 for callbacks) holds with one runner: while a loop is
//!     active, `panics::resume` leaves a held panic held (a nested cancel
//!     returns normally), and the outermost caller resumes it after the
//!     loop.
//!
//! Linearization: a nested cancel's callbacks become pending at the append
//! (after its walk); a callback starts when the loop pops it.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use crate::plant::planted;
use crate::sync::Arc;
use crate::tree::panics;
use crate::tree::waiters::{self, Waiter};

#[cfg(not(loom))]
std::thread_local! {
    /// Whether a callback-run loop is active on this thread (F5).
    static RUNNING: Cell<bool> = const { Cell::new(false) };
    /// Callbacks appended by cancels made inside a callback, oldest first.
    static PENDING: RefCell<VecDeque<Arc<Waiter>>> = const { RefCell::new(VecDeque::new()) };
}

// loom runs every modelled thread on one OS thread: its thread-locals are
// per modelled thread.
#[cfg(loom)]
loom::thread_local! {
    static RUNNING: Cell<bool> = Cell::new(false);
    static PENDING: RefCell<VecDeque<Arc<Waiter>>> = RefCell::new(VecDeque::new());
}

/// Whether a callback-run loop is active on this thread (F5d).
pub(crate) fn is_running() -> bool {
    RUNNING.with(Cell::get)
}

/// Runs `queue` (callbacks whose F1 transition this thread owns, with its
/// runner token recorded) after the callbacks already pending here (F5).
/// Returns at once if a loop is already active on this thread.
pub(crate) fn run(queue: Vec<Arc<Waiter>>) {
    if planted!("trampoline_drops_pending") && is_running() {
        // Planted bug: a nested cancel's callbacks are lost.
        return;
    }
    let mut queue = Some(queue);
    let appended = PENDING
        .try_with(|pending| {
            pending
                .borrow_mut()
                .extend(queue.take().unwrap_or_default())
        })
        .is_ok();
    if !appended {
        // The thread's locals are gone: no FIFO to defer to (nor, then, an
        // active loop), so run the queue here, as before F5.
        for waiter in queue.into_iter().flatten() {
            waiters::run_callback(waiter.callback());
        }
        return;
    }
    if !is_running() {
        drain();
    }
}

/// The outermost loop: runs pending callbacks until none is left (F5).
fn drain() {
    RUNNING.with(|running| running.set(true));
    panics::defer_resume(true);
    let done = Done;
    while let Some(waiter) = pop() {
        waiters::run_callback(waiter.callback());
    }
    drop(done);
}

fn pop() -> Option<Arc<Waiter>> {
    PENDING
        .try_with(|pending| pending.borrow_mut().pop_front())
        .ok()
        .flatten()
}

/// Ends the loop, also if it unwinds. `run_callback` catches a callback's
/// panic, so only a failure of the machinery itself unwinds through the
/// loop; what is still pending then runs here (with `RUNNING` cleared, so a
/// nested cancel starts a loop of its own), so no `stop_wait` waits for a
/// callback that would never run, as `Callbacks`'s drop does.
struct Done;

impl Drop for Done {
    fn drop(&mut self) {
        RUNNING.with(|running| running.set(false));
        panics::defer_resume(false);
        while let Some(waiter) = pop() {
            waiters::run_callback(waiter.callback());
        }
        // A cancel with many callbacks must not leave the thread holding a
        // FIFO of its size.
        let _ = PENDING.try_with(|pending| pending.borrow_mut().shrink_to(KEEP));
    }
}

/// FIFO capacity a thread keeps between loops.
const KEEP: usize = 64;

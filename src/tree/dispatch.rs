//! Where the callbacks a cancel found run, once the cancel is complete
//! (F2): through this thread's trampoline (F5), or on a runner thread when
//! this thread hands callbacks off (F6, the timer thread).

use crate::sync::Arc;
use crate::tree::callback_pool;
use crate::tree::trampoline;
use crate::tree::waiters::{record_runner, Callbacks, Waiter};

impl Callbacks {
    /// Runs the queued callbacks in their order (for one node, newest
    /// registration first, as the stack holds them): through this thread's
    /// trampoline (F5: at once, or after the current callback if this
    /// thread is inside one), or on a runner thread if this thread hands
    /// callbacks off (F6). A panicking callback is held like a panicking
    /// waker (P1, F4), so the others still run.
    #[inline]
    pub(crate) fn run(&mut self) {
        // Most cancels queue nothing: keep that path a length check.
        if !self.is_empty() {
            self.run_queued();
        }
    }

    #[inline(never)]
    fn run_queued(&mut self) {
        let queue = self.take();
        if callback_pool::hands_off() {
            callback_pool::hand_off(queue);
        } else {
            trampoline::run(queue);
        }
    }
}

impl Drop for Callbacks {
    fn drop(&mut self) {
        self.run();
    }
}

/// Runs the callback of an entry that was never published (`after_func` on
/// a context already canceled): this thread owns it (F1), and it runs like
/// a cancel's queue (F5, F6).
pub(crate) fn run_unpublished(waiter: Arc<Waiter>) {
    record_runner(waiter.callback());
    Callbacks::one(waiter).run();
}

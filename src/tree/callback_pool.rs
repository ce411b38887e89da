//! Hand-off: the timer thread never runs `after_func` code; a small pool of
//! runner threads, `ctxtree-callbacks`, runs the callbacks of fired
//! deadlines.
//!
//! A deadline fires on the single timer thread (`time/driver.rs`). Running
//! user callbacks there would let one callback that blocks (on another
//! context, a lock, I/O) delay every deadline in the process. So the timer
//! thread sets a thread-local *hand-off mode* as it starts; a cancel that
//! has queued callbacks and finds the mode set (`Callbacks::run`, checked
//! only when the queue is non-empty) passes the queue, as one job, to this
//! pool instead of running it. Wakers and thread unparks are not callbacks:
//! they stay on the timer thread (cheap by the `Waker` contract).
//!
//! The pool grows when all its runners are busy, as Go runs each `AfterFunc`
//! on a goroutine of its own: after queueing a job, the timer thread spawns a
//! runner if the queued jobs outnumber the idle runners, up to
//! `MAX_RUNNERS` (beyond that, jobs wait in the queue). A runner exits
//! after `IDLE_EXIT` without work, so a quiet process keeps no runner. The
//! queue is a `Mutex` + `Condvar`: a cold path, taken once per fired context
//! that has callbacks.
//!
//! Invariants (they extend F1–F5):
//! - **F6** Callbacks of a cancel made on a thread in hand-off mode run on a
//!   runner thread, never on that thread. Each job is one cancel's queue, in
//!   its order; the F1 win (the right to take and run `f`) moves with the
//!   job through the pool's lock. Before running a job, the runner
//!   re-records F3's runner token of each of its callbacks as its own, so a
//!   `stop_wait` from inside one of them on itself or on another callback of
//!   the same job returns at once (F5c); a `stop_wait` from any other thread
//!   blocks on `finished` as for any callback (F3). The runner runs the job
//!   through the trampoline (F5), so nested cancels run there too; a held
//!   panic (P1, F4) is then dropped, not propagated: the runner has no
//!   caller to resume it to.
//! - **F7** No job waits for a runner while fewer than `MAX_RUNNERS` exist:
//!   a job is queued and the runner count checked under one lock, a runner
//!   counts itself idle only while it waits under that lock, and it exits
//!   only if it finds the queue empty under it.
//!
//! At the cap, a job waits for a runner to finish: runners that all block
//! on queued jobs (a deadline's function `stop_wait`ing a function of
//! another fired context, 256 times over) would wait forever. Below it, the
//! spawn of F7 makes that impossible.
//!
//! Linearization: a job is handed off at its push under the lock; its
//! callbacks' runner becomes the runner thread at the re-record.
//!
//! Under loom there is no timer thread: `time::model::fire_armed` sets
//! hand-off mode for its duration, jobs wait in a loom `Mutex`, and a model
//! runs them on a thread of its choice with `loom_hooks::run_handed_off`.

use std::cell::Cell;

use crate::plant::planted;
use crate::sync::Arc;
use crate::tree::panics;
use crate::tree::trampoline;
use crate::tree::waiters::{self, Waiter};

/// One fired context's callbacks, in the order its cancel queued them.
pub(crate) type Job = Vec<Arc<Waiter>>;

#[cfg(not(loom))]
std::thread_local! {
    /// Set once by the timer thread as it starts (F6).
    static HAND_OFF: Cell<bool> = const { Cell::new(false) };
}

#[cfg(loom)]
loom::thread_local! {
    static HAND_OFF: Cell<bool> = Cell::new(false);
}

/// Puts the calling thread in hand-off mode for the rest of its life: the
/// callbacks of its cancels run on the pool (F6).
#[cfg(not(loom))]
pub(crate) fn hand_off_on_this_thread() {
    HAND_OFF.with(|mode| mode.set(true));
}

/// Runs `f` in hand-off mode (loom: `fire_armed` stands in for the timer).
#[cfg(loom)]
pub(crate) fn with_hand_off<R>(f: impl FnOnce() -> R) -> R {
    HAND_OFF.with(|mode| mode.set(true));
    let result = f();
    HAND_OFF.with(|mode| mode.set(false));
    result
}

/// Whether this thread hands its callbacks off (F6).
pub(crate) fn hands_off() -> bool {
    // No destructor: readable during thread-local destruction too.
    HAND_OFF.with(Cell::get)
}

/// Runs a job on the calling runner thread (F6).
fn run_job(job: Job) {
    if !planted!("handoff_keeps_token") {
        for waiter in &job {
            waiters::record_runner(waiter.callback());
        }
    }
    trampoline::run(job);
    panics::discard();
}

#[cfg(not(loom))]
pub(crate) use pool::hand_off;

#[cfg(not(loom))]
mod pool {
    use std::collections::VecDeque;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
    use std::thread;
    use std::time::Duration;

    use super::{run_job, Job};

    /// Most runner threads alive at once; further jobs wait in the queue.
    const MAX_RUNNERS: usize = 256;
    /// How long a runner waits for a job before it exits.
    const IDLE_EXIT: Duration = Duration::from_secs(1);

    struct Pool {
        /// Jobs no runner has taken yet, oldest first.
        jobs: VecDeque<Job>,
        /// Runners waiting for a job (F7).
        idle: usize,
        /// Runners alive, or being spawned.
        runners: usize,
    }

    static POOL: Mutex<Pool> = Mutex::new(Pool {
        jobs: VecDeque::new(),
        idle: 0,
        runners: 0,
    });
    /// Signalled for each job queued.
    static WORK: Condvar = Condvar::new();

    fn lock() -> MutexGuard<'static, Pool> {
        // Nothing panics under the lock (no user code runs there).
        POOL.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job` for a runner, spawning one if every runner is busy (F7).
    pub(crate) fn hand_off(job: Job) {
        let spawn = {
            let mut pool = lock();
            pool.jobs.push_back(job);
            let spawn = pool.jobs.len() > pool.idle && pool.runners < MAX_RUNNERS;
            pool.runners += usize::from(spawn);
            spawn
        };
        WORK.notify_one();
        if spawn {
            let spawned = thread::Builder::new()
                .name("ctxtree-callbacks".into())
                .spawn(runner);
            if spawned.is_err() {
                spawn_failed();
            }
        }
    }

    /// The system refused a thread. If no runner is left to take the
    /// queue, run it here rather than never (a `stop_wait` would wait for
    /// it forever): the one case where F6 yields.
    #[cold]
    fn spawn_failed() {
        let orphans = {
            let mut pool = lock();
            pool.runners -= 1;
            if pool.runners > 0 {
                return;
            }
            std::mem::take(&mut pool.jobs)
        };
        for job in orphans {
            run_job(job);
        }
    }

    /// A runner thread: takes jobs until it has been idle for `IDLE_EXIT`.
    fn runner() {
        let mut pool = lock();
        loop {
            if let Some(job) = pool.jobs.pop_front() {
                drop(pool);
                // Callbacks' panics are held, not raised (F6); this only
                // keeps the count right if the machinery itself fails.
                let _ = catch_unwind(AssertUnwindSafe(|| run_job(job)));
                pool = lock();
                continue;
            }
            pool.idle += 1;
            let (guard, wait) = WORK
                .wait_timeout(pool, IDLE_EXIT)
                .unwrap_or_else(PoisonError::into_inner);
            pool = guard;
            pool.idle -= 1;
            if wait.timed_out() && pool.jobs.is_empty() {
                pool.runners -= 1; // F7: decided under the lock
                return;
            }
        }
    }
}

#[cfg(loom)]
pub(crate) use model::hand_off;
#[cfg(loom)]
pub use model::run_handed_off;

/// Under loom the pool is a queue that a model drains explicitly.
#[cfg(loom)]
mod model {
    use std::collections::VecDeque;

    use super::{run_job, Job};

    loom::lazy_static! {
        static ref JOBS: loom::sync::Mutex<VecDeque<Job>> = loom::sync::Mutex::new(VecDeque::new());
    }

    pub(crate) fn hand_off(job: Job) {
        JOBS.lock().unwrap().push_back(job);
    }

    /// Runs every job handed off so far on the calling thread, as a runner
    /// would (F6).
    pub fn run_handed_off() {
        loop {
            let job = JOBS.lock().unwrap().pop_front();
            match job {
                Some(job) => run_job(job),
                None => return,
            }
        }
    }
}

//! The collector: one lazily started background thread, `ctxtree-collector`,
//! that finishes collection work too long for the operation that found it
//! due.
//!
//! A sweep of a children list (L5) and a collection of a waiter stack (W4)
//! are O(1) amortized, but one of them can meet a list or a stack of 10⁶
//! entries, and the derive, drop or poll that triggered it would pay for
//! everyone. So the tree's operations do at most a bounded slice of such
//! work themselves (`children::INLINE_SWEEP` nodes, `waiters::INLINE_COLLECT`
//! entries) and queue the rest here, as one job holding a user of its node
//! (so the node outlives the job): "the rest" is a full sweep of the node's
//! lists (L5) or the unwalked part of a waiter chain the collector owns
//! (W2, W6). The thread exits after `IDLE_EXIT` without work, so a quiet
//! process keeps none; it runs in hand-off mode (F6): the callbacks a
//! collection wakes run on the callback pool, never here.
//!
//! - **K1** Every queued job runs exactly once: on the collector thread, or
//!   on the queueing thread if the system refuses a thread (bounded work is
//!   then given up for no loss). A job is queued and the thread's presence
//!   checked under one lock, and the thread exits only if it finds the
//!   queue empty under it, so no job waits for a thread that left.
//! - **K2** A job queued with a key (a node's address: "sweep this node's
//!   lists") is dropped if a job with the same key waits in the queue: that
//!   one starts later and does the same work. The key leaves the queue when
//!   its job starts, so work found due while a job runs queues another.
//!   Keys are never reused while queued: the job holds a user of its node.
//!
//! - **K3** No custom cause's own `Drop` runs on the timer thread: the last
//!   reference to one dropped there (a node the timer freed) hands the
//!   error to the collector as a job (`error::BoxedError`'s `Drop`, through
//!   the sink this module installs on the timer thread, `foreign_drops.rs`),
//!   so a drop that blocks delays no deadline.
//!
//! Jobs run one after another: a job whose drops run foreign code that
//! blocks (a value's or a cause's `Drop`) delays the collections queued
//! after it, never a cancel, a deadline or a waker (memory, and the wake of
//! waiters in a chain the collector owns, W6, wait for it).
//!
//! Linearization: a job is queued at its push under the lock.
//!
//! Under loom there is no thread: jobs wait in a loom `Mutex`, and a model
//! runs them on a thread of its choice with `loom_hooks::run_collections`.

use crate::tree::panics;

/// One piece of collection work, holding a user of the node it works on.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// Runs a job as the collector does: its held panics (a cause's `Drop`)
/// are dropped, not raised (it has no caller to resume them to). Under
/// loom a panic is the model's failure, so it propagates.
fn run_job(job: Job) {
    #[cfg(not(loom))]
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    #[cfg(loom)]
    job();
    panics::discard();
}

#[cfg(not(loom))]
pub(crate) use thread::{run_later, run_once};

#[cfg(not(loom))]
/// Makes this thread (the timer's) send foreign drops to the collector (K3).
#[cfg(not(loom))]
pub(crate) fn defer_drops_on_this_thread() {
    crate::tree::foreign_drops::send_to(run_later);
}

#[cfg(not(loom))]
mod thread {
    use std::collections::{BTreeSet, VecDeque};
    use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
    use std::time::Duration;

    use super::{run_job, Job};

    /// How long the collector waits for a job before it exits.
    const IDLE_EXIT: Duration = Duration::from_secs(1);

    struct Queue {
        /// Jobs and their keys (0: none), oldest first.
        jobs: VecDeque<(usize, Job)>,
        /// The keys of the queued jobs (K2).
        keys: BTreeSet<usize>,
        /// Whether the collector thread is alive or being spawned (K1).
        running: bool,
    }

    static QUEUE: Mutex<Queue> = Mutex::new(Queue {
        jobs: VecDeque::new(),
        keys: BTreeSet::new(),
        running: false,
    });
    static WORK: Condvar = Condvar::new();

    fn lock() -> MutexGuard<'static, Queue> {
        // No job runs under the lock, so nothing panics under it.
        QUEUE.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job` for the collector thread, starting it if needed (K1).
    pub(crate) fn run_later(job: Job) {
        queue(0, job);
    }

    /// [`run_later`], unless a job with the same `key` is queued (K2):
    /// then `job` is dropped (here, outside the lock: it drops a user).
    pub(crate) fn run_once(key: usize, job: Job) {
        queue(key, job);
    }

    fn queue(key: usize, job: Job) {
        let spawn = {
            let mut queue = lock();
            if key != 0 && !queue.keys.insert(key) {
                drop(queue);
                drop(job);
                return;
            }
            queue.jobs.push_back((key, job));
            !std::mem::replace(&mut queue.running, true)
        };
        if !spawn {
            WORK.notify_one();
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("ctxtree-collector".into())
            .spawn(collector);
        if spawned.is_err() {
            // No thread: run what is queued here rather than never (K1).
            let jobs = {
                let mut queue = lock();
                queue.running = false;
                queue.keys.clear();
                std::mem::take(&mut queue.jobs)
            };
            jobs.into_iter().for_each(|(_, job)| run_job(job));
        }
    }

    /// The collector thread: runs jobs until it has been idle for `IDLE_EXIT`.
    fn collector() {
        crate::tree::callback_pool::hand_off_on_this_thread(); // F6
        let mut queue = lock();
        loop {
            if let Some((key, job)) = queue.jobs.pop_front() {
                queue.keys.remove(&key); // K2: from now on, due work queues again
                drop(queue);
                run_job(job);
                queue = lock();
                continue;
            }
            if queue.jobs.capacity() > 64 {
                queue.jobs.shrink_to(64); // a burst's queue is not kept
            }
            let (guard, wait) = WORK
                .wait_timeout(queue, IDLE_EXIT)
                .unwrap_or_else(PoisonError::into_inner);
            queue = guard;
            if wait.timed_out() && queue.jobs.is_empty() {
                queue.running = false; // K1: decided under the lock
                queue.jobs = VecDeque::new(); // a quiet process keeps nothing
                return;
            }
        }
    }
}

#[cfg(loom)]
pub use model::run_collections;
#[cfg(loom)]
pub(crate) use model::{run_later, run_once};

/// Under loom the collector is a queue that a model drains explicitly.
#[cfg(loom)]
mod model {
    use std::collections::VecDeque;

    use super::{run_job, Job};

    loom::lazy_static! {
        static ref JOBS: loom::sync::Mutex<VecDeque<Job>> = loom::sync::Mutex::new(VecDeque::new());
    }

    pub(crate) fn run_later(job: Job) {
        JOBS.lock().unwrap().push_back(job);
    }

    /// No deduplication under loom (K2 only saves work).
    pub(crate) fn run_once(_key: usize, job: Job) {
        run_later(job);
    }

    /// Runs every collection job queued so far on the calling thread, as
    /// the collector thread would (K1).
    pub fn run_collections() {
        loop {
            let job = JOBS.lock().unwrap().pop_front();
            match job {
                Some(job) => run_job(job),
                None => return,
            }
        }
    }
}

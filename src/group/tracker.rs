//! The bookkeeping both groups share: the group's context and cancel handle,
//! the set of running tasks, the first error and the first panic, under one
//! mutex (G1–G4 in `group/mod.rs`).
//!
//! The lock guards a few words per spawn and per task end, never a wait on a
//! context and never a cancel (G3): the lock-free tree stays lock-free, and
//! the group's lock is only contended by tasks starting and ending.

use std::any::Any;
use std::collections::BTreeSet;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::{TaskId, TaskPanicked};
use crate::context::Context;
use crate::error::Cause;
use crate::handle::CancelHandle;
use crate::tree::state::How;

/// A caught panic's payload.
pub(crate) type Payload = Box<dyn Any + Send + 'static>;

/// How a task ended.
pub(crate) enum Outcome {
    /// It returned `Ok`.
    Ok,
    /// It returned `Err`.
    Failed(Cause),
    /// It panicked.
    Panicked(Payload),
    /// Its future was dropped before it finished (an abort).
    Aborted,
}

pub(crate) struct Tracker {
    /// The group's context: a child of the parent the group was opened on.
    ctx: Context,
    /// Cancels `ctx`: on the first error or panic, on `wait`, on `shutdown`.
    cancel: CancelHandle,
    state: Mutex<State>,
    /// Notified whenever a task ends or the limit changes (the thread group
    /// waits on it for a slot or for the end of every task).
    changed: Condvar,
}

/// Everything here is guarded by `Tracker::state`.
struct State {
    /// The next task's index.
    next: u64,
    /// Tasks registered and not yet ended (G1).
    running: BTreeSet<TaskId>,
    /// At most this many tasks registered at once (threads only; the tokio
    /// group leaves it at `usize::MAX` and counts with a semaphore).
    limit: usize,
    /// The first `Err` a task returned; set once (G2).
    first_error: Option<Cause>,
    /// The first panic caught and not resumed yet.
    panic: Option<Payload>,
}

impl State {
    fn register_next(&mut self) -> TaskId {
        let id = TaskId::new(self.next);
        self.next += 1;
        self.running.insert(id);
        id
    }
}

impl Tracker {
    pub(crate) fn new(parent: &Context) -> Tracker {
        let (ctx, cancel) = parent.with_cancel();
        Tracker {
            ctx,
            cancel,
            state: Mutex::new(State {
                next: 0,
                running: BTreeSet::new(),
                limit: usize::MAX,
                first_error: None,
                panic: None,
            }),
            changed: Condvar::new(),
        }
    }

    /// Nothing panics while holding the lock (no user code runs under it),
    /// but a poisoned lock would still hold consistent data.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn context(&self) -> &Context {
        &self.ctx
    }

    /// Registers a task (G1), first blocking while `limit` tasks are
    /// registered (G4).
    pub(crate) fn register(&self) -> TaskId {
        let mut state = self.lock();
        while state.running.len() >= state.limit {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.register_next()
    }

    /// Registers a task if fewer than `limit` are registered now.
    pub(crate) fn try_register(&self) -> Option<TaskId> {
        let mut state = self.lock();
        (state.running.len() < state.limit).then(|| state.register_next())
    }

    pub(crate) fn set_limit(&self, limit: usize) {
        self.lock().limit = limit;
        self.changed.notify_all();
    }

    /// Ends task `id`: its context first (a panic of an `after_func`
    /// function that this cancel runs is held, G3), then `finish`.
    pub(crate) fn end_task(&self, id: TaskId, handle: CancelHandle, outcome: Outcome) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(handle))) {
            self.hold_panic(payload);
        }
        self.finish(id, outcome);
    }

    /// Records how task `id` ended and removes it from the running set:
    /// an error or a panic cancels the group's context first (G2).
    pub(crate) fn finish(&self, id: TaskId, outcome: Outcome) {
        let cause = match outcome {
            Outcome::Ok | Outcome::Aborted => None,
            Outcome::Failed(cause) => {
                let mut state = self.lock();
                if state.first_error.is_none() {
                    state.first_error = Some(cause.clone());
                    Some(cause)
                } else {
                    None
                }
            }
            Outcome::Panicked(payload) => {
                let cause = Cause::from(TaskPanicked::new(Some(id), &*payload));
                self.hold_panic(payload);
                Some(cause)
            }
        };
        if let Some(cause) = cause {
            self.cancel(Some(cause));
        }
        self.lock().running.remove(&id);
        self.changed.notify_all();
    }

    /// Keeps `payload` if no panic is held yet; a later one is dropped (its
    /// message was printed by the panic hook when it happened).
    pub(crate) fn hold_panic(&self, payload: Payload) {
        let mut state = self.lock();
        let dropped = match state.panic {
            None => {
                state.panic = Some(payload);
                None
            }
            Some(_) => Some(payload),
        };
        drop(state);
        // A payload whose `Drop` panics is the owner's business, not ours:
        // swallow it rather than unwind out of a task's bookkeeping.
        drop(catch_unwind(AssertUnwindSafe(move || drop(dropped))));
    }

    /// Cancels the group's context (with `cause`, or `Canceled`); the first
    /// cancel wins. A panic from an `after_func` function that the cancel
    /// runs is held like a task's panic (G3).
    pub(crate) fn cancel(&self, cause: Option<Cause>) {
        let result = catch_unwind(AssertUnwindSafe(|| {
            self.cancel.cancel_as(How::TaskGroup, cause)
        }));
        if let Err(payload) = result {
            self.hold_panic(payload);
        }
    }

    /// Blocks until no task is registered, or until `until` passes; true if
    /// none is (threads only: the tokio group awaits its `JoinSet`).
    pub(crate) fn wait_idle(&self, until: Option<Instant>) -> bool {
        let mut state = self.lock();
        while !state.running.is_empty() {
            state = match until {
                None => self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(until) => {
                    let now = Instant::now();
                    if now >= until {
                        return false;
                    }
                    let waited = self.changed.wait_timeout(state, until - now);
                    waited.unwrap_or_else(PoisonError::into_inner).0
                }
            };
        }
        true
    }

    /// The tasks still registered, in spawn order.
    pub(crate) fn running(&self) -> Vec<TaskId> {
        self.lock().running.iter().copied().collect()
    }

    pub(crate) fn first_error(&self) -> Option<Cause> {
        self.lock().first_error.clone()
    }

    /// The end of a wait, once every task has ended: cancels the group's
    /// context as Go's `Wait` does, resumes the first panic not resumed yet,
    /// and returns the first error.
    pub(crate) fn end_wait(&self) -> Result<(), Cause> {
        let first_error = self.first_error();
        self.cancel(first_error.clone());
        self.resume_panic();
        first_error.map_or(Ok(()), Err)
    }

    /// Resumes the first panic held, if any, and forgets it.
    pub(crate) fn resume_panic(&self) {
        let payload = self.lock().panic.take();
        if let Some(payload) = payload {
            resume_unwind(payload);
        }
    }
}

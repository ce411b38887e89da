//! Worker threads. Spawning a thread costs up to a millisecond on the
//! sandboxed machines this runs on, more than the rest of an input, so
//! the racing threads come from a persistent pool; each input still
//! starts its threads together on a fresh `Barrier`. One input at a time
//! uses the pool (the lock), so two callers cannot deadlock on it.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{mpsc, Mutex, MutexGuard, PoisonError};
use std::thread;

type Job = Box<dyn FnOnce() + Send>;

static POOL: Mutex<Vec<mpsc::Sender<Job>>> = Mutex::new(Vec::new());

/// Exclusive use of the pool, grown to at least `n` workers.
pub(super) fn lock_pool(n: usize) -> MutexGuard<'static, Vec<mpsc::Sender<Job>>> {
    let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    while pool.len() < n {
        let (tx, rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name(format!("ctxtree-fuzz-{}", pool.len()))
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .expect("spawning a fuzz worker thread");
        pool.push(tx);
    }
    pool
}

/// Runs `f` on `worker`; the receiver gets its result or its panic.
pub(super) fn run_on<T: Send + 'static>(
    worker: &mpsc::Sender<Job>,
    f: impl FnOnce() -> T + Send + 'static,
) -> mpsc::Receiver<thread::Result<T>> {
    let (tx, rx) = mpsc::channel();
    worker
        .send(Box::new(move || {
            let _ = tx.send(panic::catch_unwind(AssertUnwindSafe(f)));
        }))
        .expect("a fuzz worker thread is gone");
    rx
}

/// The result of a job from [`run_on`], re-raising its panic here.
pub(super) fn join<T>(rx: mpsc::Receiver<thread::Result<T>>) -> T {
    match rx.recv().expect("a fuzz worker thread dropped its job") {
        Ok(v) => v,
        Err(payload) => panic::resume_unwind(payload),
    }
}

//! The operations every scenario times, written once over [`Tree`] so the
//! comparison runner (`scenarios/`) and the criterion suite
//! (`benches/peers.rs`) measure the same code for each implementation.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::tree::Tree;

/// A live parent (a real node for every implementation) and its handle.
pub fn live_parent<T: Tree>() -> (T::Ctx, T::Handle) {
    T::derive(&T::background())
}

/// Derive a child of `parent`, cancel it, drop both halves.
#[inline]
pub fn one_child<T: Tree>(parent: &T::Ctx) {
    let (ctx, handle) = T::derive(black_box(parent));
    T::cancel(&handle);
    drop(handle);
    drop(black_box(ctx));
}

/// `with_timeout(1 h)` under `parent`, cancel, drop both halves; `None`
/// where the implementation has no deadlines.
#[inline]
pub fn one_timeout<T: Tree>(parent: &T::Ctx) -> Option<()> {
    let (ctx, handle) = T::with_timeout(black_box(parent), Duration::from_secs(3600))?;
    T::cancel(&handle);
    drop(handle);
    drop(black_box(ctx));
    Some(())
}

/// Go's CancelTree (Root=OpenCanceler): derive a root, a chain of `depth`
/// under it, cancel the root, drop everything. `handles` is scratch space.
pub fn build_chain<T: Tree>(depth: usize, handles: &mut Vec<T::Handle>) {
    let (root, root_handle) = live_parent::<T>();
    let mut ctx = root;
    for _ in 0..depth {
        let (child, handle) = T::derive(&ctx);
        handles.push(handle);
        ctx = child;
    }
    T::cancel(&root_handle);
    debug_assert!(T::is_done(&ctx));
    drop(black_box(ctx));
    drop(root_handle);
    handles.clear();
}

/// A live parent with `n` live children: the input of a fan-out cancel.
/// Fields drop in declaration order: the children, then the parent's
/// handle, then the parent.
pub struct Fanout<T: Tree> {
    children: Vec<(T::Ctx, T::Handle)>,
    handle: T::Handle,
    parent: T::Ctx,
}

impl<T: Tree> Fanout<T> {
    /// Builds the parent and its `n` children (not part of what is timed).
    pub fn new(n: usize) -> Self {
        assert!(n > 0, "a fan-out needs children");
        let (parent, handle) = live_parent::<T>();
        let children = (0..n).map(|_| T::derive(&parent)).collect();
        Fanout {
            children,
            handle,
            parent,
        }
    }

    /// Cancels the parent and returns how long that took. Untimed: checks
    /// that the parent and its first and last children really are canceled,
    /// then drops everything.
    pub fn cancel(self) -> Duration {
        let start = Instant::now();
        T::cancel(&self.handle);
        let took = start.elapsed();
        let (first, last) = (
            &self.children[0].0,
            &self.children[self.children.len() - 1].0,
        );
        assert!(T::is_done(&self.parent) && T::is_done(first) && T::is_done(last));
        took
    }
}

/// `n` threads blocked in `wait()` on a live context; the time from
/// `cancel()` until the last of them is awake (each thread reads the clock
/// when its `wait` returns). Spawning and blocking are not timed.
pub fn wake_blocked_threads<T: Tree>(n: usize) -> Duration {
    let (ctx, handle) = live_parent::<T>();
    let ready = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(n + 1));
    let workers: Vec<_> = (0..n)
        .map(|_| {
            let (ctx, ready, barrier) = (ctx.clone(), Arc::clone(&ready), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                ready.fetch_add(1, Ordering::SeqCst);
                T::wait(&ctx);
                Instant::now()
            })
        })
        .collect();
    barrier.wait();
    while ready.load(Ordering::SeqCst) < n {
        thread::yield_now();
    }
    // Every thread is about to wait; give them time to block.
    thread::sleep(Duration::from_millis(2) + Duration::from_micros(100) * n as u32);
    assert!(!T::is_done(&ctx));
    let start = Instant::now();
    T::cancel(&handle);
    let end = workers
        .into_iter()
        .map(|w| w.join().expect("waiter panicked"))
        .max()
        .expect("at least one waiter");
    end - start
}

/// `n` tasks awaiting `done()` on the current_thread runtime `rt`; the time
/// from `cancel()` until all of them have finished. Spawning and the first
/// poll of every task are not timed.
pub fn wake_tasks<T: Tree>(rt: &tokio::runtime::Runtime, n: usize) -> Duration {
    rt.block_on(async {
        let (ctx, handle) = live_parent::<T>();
        let started = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let fut = T::done(&ctx);
                let started = Arc::clone(&started);
                tokio::spawn(async move {
                    started.fetch_add(1, Ordering::Relaxed);
                    let _ = fut.await;
                })
            })
            .collect();
        // Every task has polled its future once (and registered).
        while started.load(Ordering::Relaxed) < n {
            tokio::task::yield_now().await;
        }
        tokio::task::yield_now().await;
        assert!(!T::is_done(&ctx));
        let start = Instant::now();
        T::cancel(&handle);
        for t in tasks {
            t.await.expect("task panicked");
        }
        start.elapsed()
    })
}

/// Runs `op(&shared)` `per_thread` times on each of `threads` threads that
/// start together; returns the wall time from the first thread's start to
/// the last thread's end (thread creation not included). Each thread reads
/// the clock itself after the start barrier, so a descheduled caller does
/// not shorten the measurement.
pub fn on_threads<C, F>(threads: usize, per_thread: u64, shared: &C, op: F) -> Duration
where
    C: Sync,
    F: Fn(&C) + Sync,
{
    let barrier = Barrier::new(threads);
    thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..per_thread {
                        op(shared);
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        let spans: Vec<_> = workers
            .into_iter()
            .map(|w| w.join().expect("worker panicked"))
            .collect();
        let start = spans
            .iter()
            .map(|s| s.0)
            .min()
            .expect("at least one thread");
        let end = spans
            .iter()
            .map(|s| s.1)
            .max()
            .expect("at least one thread");
        end - start
    })
}

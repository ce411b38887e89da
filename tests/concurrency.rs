//! Concurrent cancellation: storms of cancels over a tree, cancel racing
//! derive, overlapping cancels of one node, many blocked waiters and pending
//! futures, waiter collection racing cancel, and Go's cancel-from-a-waiter
//! deadlock regression. Every blocking step has a timeout, so a lost wake-up
//! or a deadlock fails the test instead of hanging it.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::task::{Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use common::tree::Tree;
use common::waker::{poll_with, CountingWaker};
use ctxtree::{CancelHandle, Cause, Context, DoneOwned, Error};
use futures::task::noop_waker_ref;

/// How long any single blocking step may take before we call it a hang
/// (miri is orders of magnitude slower).
const HANG: Duration = Duration::from_secs(if cfg!(miri) { 3600 } else { 20 });

/// Scales an iteration count down under miri.
fn scaled(normal: usize, miri: usize) -> usize {
    if cfg!(miri) {
        miri
    } else {
        normal
    }
}

/// A tiny xorshift64* generator (no `rand` dependency).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// Busy-waits a little, to spread out threads released by one barrier.
fn spin(iterations: usize) {
    let iterations = if cfg!(miri) {
        iterations / 1000
    } else {
        iterations
    };
    for _ in 0..iterations {
        std::hint::spin_loop();
    }
    if iterations % 3 == 0 {
        thread::yield_now();
    }
}

/// Runs `f` on a new thread and fails (instead of hanging) if it does not
/// finish within [`HANG`].
fn with_deadline<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        let out = f();
        let _ = tx.send(());
        out
    });
    match rx.recv_timeout(HANG) {
        Ok(()) => worker.join().unwrap(),
        // The worker panicked: join to propagate its panic message.
        Err(mpsc::RecvTimeoutError::Disconnected) => worker.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: hung for {HANG:?} (deadlock or lost wake-up)")
        }
    }
}

// ---------------------------------------------------------------- (a) cancel storm

/// One thread per node of a 4-ary tree cancels its own node with its own
/// cause, all released together in a random order. Afterwards every node is
/// done, and every node's cause is its own or its parent's (a node canceled by
/// its parent's walk inherits the parent's winning cause, N3; nothing else can
/// reach it).
#[test]
fn cancel_storm_over_a_tree() {
    let depth = if cfg!(miri) { 2 } else { 4 }; // 21 or 341 nodes
    let rounds = scaled(20, 2);
    for seed in 0..rounds as u64 {
        let mut rng = Rng::new(seed + 1);
        let tree = Tree::under(&Context::background(), 4, depth);
        let n = tree.ctxs.len();
        let causes: Vec<Cause> = (0..n).map(|i| Cause::msg(format!("n{i}"))).collect();
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        let delays: Vec<usize> = (0..n).map(|_| rng.below(2000)).collect();
        let barrier = Barrier::new(n);
        thread::scope(|s| {
            for &i in &order {
                let (handle, cause, barrier, delay) =
                    (&tree.handles[i], &causes[i], &barrier, delays[i]);
                let ctx = &tree.ctxs[i];
                s.spawn(move || {
                    barrier.wait();
                    spin(delay);
                    handle.cancel_with_cause(cause.clone());
                    // Synchronous: our node is done when cancel returns, and
                    // so is everything below (checked on the tree after join).
                    assert!(ctx.is_done());
                    assert!(ctx.cause().is_some());
                });
            }
        });
        for i in 0..n {
            let ctx = &tree.ctxs[i];
            assert_eq!(ctx.err(), Some(Error::Canceled), "seed {seed} node {i}");
            let cause = ctx.cause().expect("done without a cause");
            let own = cause == causes[i];
            let inherited = tree
                .parent(i)
                .is_some_and(|p| tree.ctxs[p].cause().as_ref() == Some(&cause));
            assert!(
                own || inherited,
                "seed {seed}: node {i} has cause {cause}, neither its own nor its parent's"
            );
            // And therefore a cause given to itself or an ancestor.
            let mut j = Some(i);
            let mut found = false;
            while let Some(k) = j {
                found |= causes[k] == cause;
                j = tree.parent(k);
            }
            assert!(found, "seed {seed}: node {i} has a foreign cause {cause}");
        }
        // The root has no cancelable parent: it must hold its own cause.
        assert_eq!(tree.ctxs[0].cause().unwrap(), causes[0]);
    }
}

/// Threads that read while a storm cancels must never see an err without a
/// cause, or a canceled parent with an active child observed afterwards.
#[test]
fn readers_see_err_and_cause_together() {
    let rounds = scaled(20, 2);
    for seed in 0..rounds as u64 {
        let mut rng = Rng::new(seed + 100);
        let tree = Tree::under(&Context::background(), 4, if cfg!(miri) { 2 } else { 3 });
        let n = tree.ctxs.len();
        let stop = AtomicBool::new(false);
        let barrier = Barrier::new(3);
        let victims: Vec<usize> = (0..4).map(|_| rng.below(n)).collect();
        thread::scope(|s| {
            for r in 0..2 {
                let (tree, stop, barrier) = (&tree, &stop, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let mut k = r;
                    while !stop.load(Ordering::Acquire) {
                        let i = k % n;
                        k += 7;
                        let ctx = &tree.ctxs[i];
                        if let Some(err) = ctx.err() {
                            assert_eq!(err, Error::Canceled);
                            assert!(ctx.cause().is_some(), "err without cause");
                            assert!(ctx.is_done());
                            // A cause, once seen, never changes (S1).
                            assert_eq!(ctx.cause(), ctx.cause());
                        }
                    }
                });
            }
            barrier.wait();
            for &v in &victims {
                spin(rng.below(5000));
                tree.handles[v].cancel_with_cause(Cause::msg(format!("v{v}")));
            }
            tree.handles[0].cancel();
            stop.store(true, Ordering::Release);
        });
        assert!(tree.ctxs.iter().all(Context::is_done));
    }
}

// ---------------------------------------------------------------- (b) Go deadlock regression

/// Go's classic: a goroutine waiting on the parent's Done cancels a child
/// while the parent is being canceled. Must not deadlock.
#[test]
fn waiter_cancels_child_while_parent_cancels() {
    let rounds = scaled(200, 5);
    with_deadline("wait-then-cancel-child", move || {
        for round in 0..rounds {
            let (parent, parent_h) = Context::background().with_cancel();
            let (child, child_h) = parent.with_cancel();
            let (grandchild, _gh) = child.with_cancel();
            let p = parent.clone();
            let waiter = thread::spawn(move || {
                assert_eq!(p.wait(), Error::Canceled);
                child_h.cancel_with_cause(Cause::msg("from waiter"));
                drop(child_h);
            });
            if round % 2 == 0 {
                thread::yield_now();
            }
            parent_h.cancel_with_cause(Cause::msg("parent"));
            waiter.join().unwrap();
            assert!(child.is_done() && grandchild.is_done());
            // The child was either reached by the parent's walk first (the
            // parent's cause) or canceled itself first (its own).
            let cause = child.cause().unwrap().to_string();
            assert!(cause == "parent" || cause == "from waiter", "{cause}");
            assert_eq!(grandchild.cause(), child.cause());
        }
    });
}

/// The same with async waiters: block_on(parent.done()) then drop the child's
/// handle.
#[test]
fn async_waiter_drops_child_handle_while_parent_cancels() {
    let rounds = scaled(200, 5);
    with_deadline("block_on-then-drop-child", move || {
        for _ in 0..rounds {
            let (parent, parent_h) = Context::background().with_cancel();
            let (child, child_h) = parent.with_cancel();
            let done = parent.done_owned();
            let waiter = thread::spawn(move || {
                assert_eq!(futures::executor::block_on(done), Error::Canceled);
                drop(child_h);
            });
            parent_h.cancel();
            waiter.join().unwrap();
            assert!(child.is_done());
        }
    });
}

/// A waker that, when woken (synchronously, inside `cancel`), re-enters the
/// library: cancels another context's handle and derives from the context
/// being canceled.
struct ReentrantWaker {
    handle: Mutex<Option<CancelHandle>>,
    parent: Context,
    derived: Mutex<Vec<Context>>,
    woken: AtomicUsize,
}

impl Wake for ReentrantWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.fetch_add(1, Ordering::SeqCst);
        if let Some(h) = self.handle.lock().unwrap().take() {
            h.cancel_with_cause(Cause::msg("from waker"));
        }
        let (ctx, _h) = self.parent.with_cancel();
        self.derived.lock().unwrap().push(ctx);
    }
}

#[test]
fn waker_reenters_the_tree_during_cancel() {
    with_deadline("reentrant waker", || {
        for _ in 0..scaled(100, 3) {
            let (parent, parent_h) = Context::background().with_cancel();
            let (child, child_h) = parent.with_cancel();
            let (grandchild, _gh) = child.with_cancel();
            let waker = Arc::new(ReentrantWaker {
                handle: Mutex::new(Some(child_h)),
                parent: parent.clone(),
                derived: Mutex::new(Vec::new()),
                woken: AtomicUsize::new(0),
            });
            let mut done = parent.done();
            assert!(poll_with(&mut done, &Waker::from(waker.clone())).is_pending());
            parent_h.cancel_with_cause(Cause::msg("parent"));
            assert_eq!(waker.woken.load(Ordering::SeqCst), 1);
            assert!(child.is_done() && grandchild.is_done());
            assert_eq!(grandchild.cause(), child.cause());
            for d in waker.derived.lock().unwrap().iter() {
                assert_eq!(d.err(), Some(Error::Canceled));
                assert_eq!(d.cause().unwrap().to_string(), "parent");
            }
            drop(done);
        }
    });
}

// ---------------------------------------------------------------- (c) blocked waiters

#[test]
fn many_threads_blocked_in_wait_all_wake() {
    let threads = scaled(16, 4);
    for round in 0..scaled(5, 1) {
        let (root, root_h) = Context::background().with_cancel();
        let (ctx, _ctx_h) = root.with_cancel();
        let (deeper, _deeper_h) = ctx.with_cancel();
        let started = Arc::new(Barrier::new(threads + 1));
        let (tx, rx) = mpsc::channel();
        let waiters: Vec<_> = (0..threads)
            .map(|t| {
                // Half wait on the context itself, a quarter on a child of it,
                // a quarter with a long timeout.
                let target = if t % 4 == 1 {
                    deeper.clone()
                } else {
                    ctx.clone()
                };
                let (started, tx) = (started.clone(), tx.clone());
                thread::spawn(move || {
                    started.wait();
                    let err = if t % 4 == 3 {
                        target.wait_timeout(Duration::from_secs(60))
                    } else {
                        Some(target.wait())
                    };
                    tx.send((t, err)).unwrap();
                })
            })
            .collect();
        started.wait();
        thread::sleep(Duration::from_millis(10)); // let them park
        assert!(rx.try_recv().is_err(), "a waiter returned before cancel");
        root_h.cancel();
        let mut seen = vec![false; threads];
        for _ in 0..threads {
            let (t, err) = rx
                .recv_timeout(HANG)
                .unwrap_or_else(|_| panic!("round {round}: a waiter was never woken"));
            assert_eq!(err, Some(Error::Canceled), "waiter {t}");
            seen[t] = true;
        }
        assert!(seen.iter().all(|&s| s));
        for w in waiters {
            w.join().unwrap();
        }
    }
}

// ---------------------------------------------------------------- (d) pending futures

#[test]
fn every_pending_future_is_woken_and_ready() {
    let n = scaled(1000, 40);
    let (ctx, handle) = Context::background().with_cancel();
    let (child, _child_h) = ctx.with_cancel();
    let mut pending: Vec<(DoneOwned, Arc<CountingWaker>)> = (0..n)
        .map(|i| {
            let target = if i % 2 == 0 { &ctx } else { &child };
            let mut fut = target.done_owned();
            let w = CountingWaker::new();
            assert!(poll_with(&mut fut, &Waker::from(w.clone())).is_pending());
            (fut, w)
        })
        .collect();
    // Drop every third one: their waiters are abandoned and collected, which
    // rebuilds the waiter stacks under the survivors.
    let mut i = 0;
    pending.retain(|_| {
        i += 1;
        i % 3 != 0
    });
    assert!(pending.iter().all(|(_, w)| w.count() == 0));
    handle.cancel();
    for (k, (fut, w)) in pending.iter_mut().enumerate() {
        assert!(w.count() >= 1, "future {k} was never woken");
        let waker = Waker::from(w.clone());
        assert_eq!(poll_with(fut, &waker), Poll::Ready(Error::Canceled));
    }
}

/// Waiter collection (triggered by abandoned futures) racing the cancel: the
/// collector may hold the live waiters at the moment of the claim, and must
/// then wake them itself (W2). Detected by wakers that were never woken.
#[test]
fn waiter_collection_racing_cancel_loses_no_wakeup() {
    let rounds = scaled(60, 2);
    let live = scaled(64, 8);
    for seed in 0..rounds as u64 {
        let mut rng = Rng::new(seed + 7);
        let (ctx, handle) = Context::background().with_cancel();
        let mut pending: Vec<(DoneOwned, Arc<CountingWaker>)> = (0..live)
            .map(|_| {
                let mut fut = ctx.done_owned();
                let w = CountingWaker::new();
                assert!(poll_with(&mut fut, &Waker::from(w.clone())).is_pending());
                (fut, w)
            })
            .collect();
        let barrier = Barrier::new(3);
        let delay = rng.below(200_000);
        thread::scope(|s| {
            for churner in 0..2 {
                let (ctx, barrier) = (&ctx, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    // Create, register and abandon futures (and timed-out
                    // waits) until the cancel lands.
                    let mut k = 0u64;
                    while !ctx.is_done() {
                        if churner == 1 && k % 64 == 0 {
                            let _ = ctx.wait_timeout(Duration::ZERO);
                        } else {
                            let mut fut = ctx.done();
                            let _ = poll_with(&mut fut, noop_waker_ref());
                        }
                        k += 1;
                    }
                });
            }
            barrier.wait();
            spin(delay);
            handle.cancel();
        });
        for (k, (fut, w)) in pending.iter_mut().enumerate() {
            assert!(
                w.count() >= 1,
                "seed {seed}: live future {k} lost its wake-up"
            );
            assert_eq!(
                poll_with(fut, &Waker::from(w.clone())),
                Poll::Ready(Error::Canceled)
            );
        }
    }
}

/// The same race with blocked threads: a lost wake-up hangs a thread, which
/// the deadline turns into a failure.
#[test]
fn blocked_threads_survive_waiter_collection_racing_cancel() {
    let rounds = scaled(30, 1);
    with_deadline("wait() during collection", move || {
        for seed in 0..rounds as u64 {
            let mut rng = Rng::new(seed + 1000);
            let (ctx, handle) = Context::background().with_cancel();
            let ready = Arc::new(Barrier::new(4 + 1));
            let sleepers: Vec<_> = (0..4)
                .map(|_| {
                    let (ctx, ready) = (ctx.clone(), ready.clone());
                    thread::spawn(move || {
                        ready.wait();
                        ctx.wait()
                    })
                })
                .collect();
            ready.wait();
            let churn_ctx = ctx.clone();
            let churn = thread::spawn(move || {
                while !churn_ctx.is_done() {
                    let mut fut = churn_ctx.done();
                    let _ = poll_with(&mut fut, noop_waker_ref());
                }
            });
            spin(rng.below(100_000));
            thread::sleep(Duration::from_micros(rng.below(500) as u64));
            handle.cancel();
            churn.join().unwrap();
            for s in sleepers {
                assert_eq!(s.join().unwrap(), Error::Canceled);
            }
        }
    });
}

// ---------------------------------------------------------------- (e) cancel vs derive

/// Threads keep deriving children (and grandchildren) of a parent while
/// another cancels it. Every child whose derivation returned before the
/// cancel returned must be done when it returns; every child, also those
/// derived later, ends up with the parent's err and cause.
#[test]
fn cancel_races_derive() {
    let rounds = scaled(100, 3);
    for seed in 0..rounds as u64 {
        let mut rng = Rng::new(seed + 31);
        let (parent, parent_h) = Context::background().with_cancel();
        // Some pre-existing children, so the walk has work and the list has
        // history (a few already canceled on their own).
        let mut keep = Vec::new();
        for k in 0..rng.below(100) {
            let (c, h) = parent.with_cancel();
            if k % 5 == 0 {
                h.cancel();
            }
            keep.push((c, h));
        }
        let published: Mutex<Vec<Context>> = Mutex::new(Vec::new());
        let barrier = Barrier::new(3);
        let cause = Cause::msg(format!("round {seed}"));
        let delay = rng.below(50_000);
        let after_cancel: Vec<Context> = thread::scope(|s| {
            let derivers: Vec<_> = (0..2)
                .map(|t| {
                    let (parent, published, barrier) = (&parent, &published, &barrier);
                    s.spawn(move || {
                        let mut handles = Vec::new();
                        barrier.wait();
                        let mut extra = 0;
                        let mut last: Option<Context> = None;
                        // Keep going a little after seeing the cancel, to
                        // exercise born-canceled derivations.
                        while extra < 8 {
                            if parent.is_done() {
                                extra += 1;
                            }
                            let from = match (&last, t) {
                                (Some(l), 1) => l.clone(), // a chain below
                                _ => parent.clone(),
                            };
                            let (c, h) = from.with_cancel();
                            published.lock().unwrap().push(c.clone());
                            handles.push(h);
                            last = Some(c);
                        }
                        handles
                    })
                })
                .collect();
            barrier.wait();
            spin(delay);
            parent_h.cancel_with_cause(cause.clone());
            // Everything published so far was derived before this point.
            let snapshot = published.lock().unwrap().clone();
            for (k, c) in snapshot.iter().enumerate() {
                assert!(
                    c.is_done(),
                    "seed {seed}: child {k} derived before cancel returned is active"
                );
            }
            for d in derivers {
                drop(d.join().unwrap());
            }
            snapshot
        });
        let all = published.into_inner().unwrap();
        assert!(all.len() >= after_cancel.len());
        for (k, c) in all.iter().enumerate() {
            assert_eq!(c.err(), Some(Error::Canceled), "seed {seed} child {k}");
            assert_eq!(c.cause().as_ref(), Some(&cause), "seed {seed} child {k}");
        }
        for (k, (c, _)) in keep.iter().enumerate() {
            assert!(c.is_done());
            let expected = if k % 5 == 0 {
                Cause::from(Error::Canceled)
            } else {
                cause.clone()
            };
            assert_eq!(c.cause().unwrap(), expected, "pre-existing child {k}");
        }
    }
}

/// Children are created and canceled under a parent from several threads
/// (exercising the list sweeper) while the parent is canceled.
#[test]
fn cancel_races_derive_and_child_cancel() {
    let rounds = scaled(50, 2);
    for seed in 0..rounds as u64 {
        let mut rng = Rng::new(seed + 500);
        let (parent, parent_h) = Context::background().with_cancel();
        let barrier = Barrier::new(3);
        let delay = rng.below(300_000);
        let survivors: Vec<Vec<Context>> = thread::scope(|s| {
            let workers: Vec<_> = (0..2)
                .map(|t| {
                    let (parent, barrier) = (&parent, &barrier);
                    s.spawn(move || {
                        let mut kept = Vec::new();
                        barrier.wait();
                        let mut k = 0usize;
                        while !parent.is_done() || k % 16 != 0 {
                            let (c, h) = parent.with_cancel();
                            if (k + t) % 7 == 0 {
                                kept.push((c, h)); // stays linked
                            } else {
                                drop(h); // marked deleted, swept later
                                drop(c);
                            }
                            k += 1;
                        }
                        kept.into_iter().map(|(c, _h)| c).collect::<Vec<_>>()
                    })
                })
                .collect();
            barrier.wait();
            spin(delay);
            parent_h.cancel();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        for c in survivors.iter().flatten() {
            assert!(c.is_done(), "seed {seed}: a kept child was never canceled");
        }
    }
}

// ---------------------------------------------------------------- (f) overlapping cancels

/// Several threads cancel the same node with different causes. When each
/// cancel returns (loser included) the whole subtree is done, and in the end
/// every descendant carries the winner's cause.
#[test]
fn concurrent_cancels_of_one_node() {
    let rounds = scaled(200, 3);
    let depth = if cfg!(miri) { 2 } else { 4 }; // 341 nodes below the target
    let cancelers = 3;
    for seed in 0..rounds as u64 {
        let mut rng = Rng::new(seed + 77);
        let (top, _top_h) = Context::background().with_cancel();
        let tree = Tree::under(&top, 4, depth);
        let causes: Vec<Cause> = (0..cancelers)
            .map(|k| Cause::msg(format!("canceler {k}")))
            .collect();
        let delays: Vec<usize> = (0..cancelers).map(|_| rng.below(300)).collect();
        let barrier = Barrier::new(cancelers);
        thread::scope(|s| {
            for k in 0..cancelers {
                let (tree, cause, barrier, delay) = (&tree, &causes[k], &barrier, delays[k]);
                s.spawn(move || {
                    barrier.wait();
                    spin(delay);
                    if k == 2 {
                        tree.handles[0].cancel(); // plain cancel competes too
                    } else {
                        tree.handles[0].cancel_with_cause(cause.clone());
                    }
                    for (i, ctx) in tree.ctxs.iter().enumerate() {
                        assert!(
                            ctx.is_done(),
                            "seed {seed}: canceler {k} returned before node {i} was done"
                        );
                    }
                });
            }
        });
        let winner = tree.ctxs[0].cause().unwrap();
        let plain = Cause::from(Error::Canceled);
        assert!(
            winner == causes[0] || winner == causes[1] || winner == plain,
            "seed {seed}: winner {winner} was not given"
        );
        for (i, ctx) in tree.ctxs.iter().enumerate() {
            assert_eq!(ctx.err(), Some(Error::Canceled));
            assert_eq!(ctx.cause().as_ref(), Some(&winner), "seed {seed} node {i}");
        }
        assert!(!top.is_done());
    }
}

/// A node and its ancestor canceled at the same time: the subtree below the
/// node agrees on one cause, the node's or the ancestor's, and both cancels
/// return with everything below them done.
#[test]
fn concurrent_cancels_of_node_and_ancestor() {
    let rounds = scaled(200, 3);
    let depth = if cfg!(miri) { 2 } else { 3 };
    for seed in 0..rounds as u64 {
        let mut rng = Rng::new(seed + 4242);
        let (top, top_h) = Context::background().with_cancel();
        let tree = Tree::under(&top, 4, depth);
        let (upper, lower) = (Cause::msg("upper"), Cause::msg("lower"));
        let barrier = Barrier::new(2);
        let delays = [rng.below(500), rng.below(500)];
        thread::scope(|s| {
            s.spawn(|| {
                barrier.wait();
                spin(delays[0]);
                top_h.cancel_with_cause(upper.clone());
                assert!(top.is_done());
                assert!(tree.ctxs.iter().all(Context::is_done));
            });
            s.spawn(|| {
                barrier.wait();
                spin(delays[1]);
                tree.handles[0].cancel_with_cause(lower.clone());
                assert!(tree.ctxs.iter().all(Context::is_done));
            });
        });
        let node_cause = tree.ctxs[0].cause().unwrap();
        assert!(node_cause == upper || node_cause == lower);
        for (i, ctx) in tree.ctxs.iter().enumerate() {
            assert_eq!(
                ctx.cause().as_ref(),
                Some(&node_cause),
                "seed {seed} node {i}"
            );
        }
        assert_eq!(top.cause().unwrap(), upper);
    }
}

/// Handles are dropped from many threads at once (each drop cancels its
/// subtree) while the root is canceled and contexts are dropped: nothing
/// crashes, and every context left is done.
#[test]
fn concurrent_drops_across_a_tree() {
    let rounds = scaled(20, 1);
    for seed in 0..rounds as u64 {
        let mut rng = Rng::new(seed + 9);
        let tree = Tree::under(&Context::background(), 4, if cfg!(miri) { 2 } else { 4 });
        let n = tree.ctxs.len();
        let Tree { ctxs, handles, .. } = tree;
        let observers: Vec<Context> = ctxs.iter().step_by(5).cloned().collect();
        let mut jobs: Vec<(Option<Context>, Option<CancelHandle>)> = ctxs
            .into_iter()
            .map(Some)
            .zip(handles.into_iter().map(Some))
            .collect();
        rng.shuffle(&mut jobs);
        let per = n.div_ceil(4);
        let mut chunks: Vec<Vec<_>> = Vec::new();
        while !jobs.is_empty() {
            let rest = jobs.split_off(jobs.len().saturating_sub(per));
            chunks.push(rest);
        }
        let barrier = Barrier::new(chunks.len());
        thread::scope(|s| {
            for chunk in chunks {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    for (k, (c, h)) in chunk.into_iter().enumerate() {
                        if k % 2 == 0 {
                            drop(h);
                            drop(c);
                        } else {
                            drop(c);
                            drop(h);
                        }
                    }
                });
            }
        });
        assert!(observers.iter().all(Context::is_done));
    }
}

//! Stress: every operation from many threads on shared trees for a set time,
//! with Go's invariants checked after every operation and the live heap
//! checked at the end.
//!
//! Knobs (environment):
//! - `CTXTREE_STRESS_SECS` — how long to run (default 2 s; a long run is
//!   `CTXTREE_STRESS_SECS=600 cargo test --release --test stress`).
//! - `CTXTREE_STRESS_THREADS` — worker threads (default: 2 per core, at
//!   least 4, so threads are preempted mid-operation).
//!
//! Workers share a root and a few *slots*: mid-level contexts that any
//! worker may cancel (with a unique cause) and replace at any time. Each
//! worker builds private chains of 1–6 mixed layers (cancel, timeout — some
//! short enough to fire —, value, without_cancel) under a random slot,
//! registers `after_func`s, waits, polls and drops `done()` futures, cancels a
//! random layer and checks:
//! - every layer at or below a canceled layer is done when `cancel` returns
//!   (unless a `without_cancel` cuts the chain), and `err` ⇒ `is_done` ⇒ a
//!   ready `done()`;
//! - each canceled layer's cause is its parent's cause (propagated) or one it
//!   could have set itself (its own cancel or its deadline cause);
//! - values resolve to the nearest binding, also after cancellation;
//! - every `after_func` ran at most once, exactly once unless stopped or
//!   prevented by `stop_wait`, and only after the subtree below it was
//!   canceled; `stop_wait` returning false means the function had finished;
//! - blocked waiters on slots are all woken (the final root cancel must wake
//!   every one of them);
//! - after everything is dropped the live heap is back near its baseline.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::thread;
use std::time::{Duration, Instant};

use common::alloc::live;
use common::rng::Rng;
use ctxtree::{AfterFunc, CancelHandle, Cause, Context};
use futures::task::noop_waker_ref;

#[global_allocator]
static GLOBAL: common::alloc::Counting = common::alloc::Counting;

fn secs() -> f64 {
    std::env::var("CTXTREE_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if cfg!(miri) { 0.2 } else { 2.0 })
}

fn threads() -> usize {
    std::env::var("CTXTREE_STRESS_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let cores = thread::available_parallelism().map_or(2, |n| n.get());
            (2 * cores).max(4)
        })
}

/// Value keys: 4 types, so layers rebind and shadow each other.
struct Key<const N: usize>(u64);

fn bind(ctx: &Context, key: usize, v: u64) -> Context {
    match key {
        0 => ctx.with_value(Key::<0>(v)),
        1 => ctx.with_value(Key::<1>(v)),
        2 => ctx.with_value(Key::<2>(v)),
        _ => ctx.with_value(Key::<3>(v)),
    }
}

fn lookup(ctx: &Context, key: usize) -> Option<u64> {
    match key {
        0 => ctx.value::<Key<0>>().map(|k| k.0),
        1 => ctx.value::<Key<1>>().map(|k| k.0),
        2 => ctx.value::<Key<2>>().map(|k| k.0),
        _ => ctx.value::<Key<3>>().map(|k| k.0),
    }
}

struct Slot {
    ctx: Context,
    handle: Arc<CancelHandle>,
}

struct Shared {
    root: Context,
    slots: Vec<Mutex<Slot>>,
    stop: AtomicBool,
    ops: AtomicU64,
    causes: AtomicU64,
    callbacks_run: AtomicU64,
}

impl Shared {
    fn slot(&self, i: usize) -> Context {
        self.slots[i].lock().unwrap().ctx.clone()
    }

    fn fresh_cause(&self, what: &str) -> Cause {
        let n = self.causes.fetch_add(1, Ordering::Relaxed);
        Cause::msg(format!("{what} #{n}"))
    }

    /// Cancels slot `i` with a unique cause and replaces it.
    fn recycle(&self, i: usize) {
        let (ctx, handle) = self.root.with_cancel();
        let old = std::mem::replace(
            &mut *self.slots[i].lock().unwrap(),
            Slot {
                ctx,
                handle: Arc::new(handle),
            },
        );
        old.handle.cancel_with_cause(self.fresh_cause("slot"));
        assert!(old.ctx.is_done());
    }
}

enum Kind {
    Cancel,
    Timeout,
    Value,
    Detach,
}

/// One layer of a worker's private chain.
struct Layer {
    ctx: Context,
    kind: Kind,
    handle: Option<CancelHandle>,
    /// The nearest cancelable layer above (index), `None` if the chain's
    /// cancel part comes from the slot, or a detach cut it.
    cancel_parent: Option<usize>,
    /// True if a `without_cancel` lies between this layer and the slot.
    detached: bool,
    /// Causes this layer may record itself (its own cancel, its deadline).
    own_causes: Vec<Cause>,
    /// Expected nearest value for each key.
    values: [Option<u64>; 4],
}

struct Registration {
    handle: AfterFunc,
    runs: Arc<AtomicUsize>,
    finished: Arc<AtomicBool>,
    stopped: bool,
}

fn assert_done_consistent(ctx: &Context) {
    // Cancellation is monotonic and err and cause are published together
    // (S2), so a cause seen first implies an err read after it.
    if ctx.cause().is_some() {
        assert!(ctx.err().is_some(), "a cause without an err");
    }
    if let Some(err) = ctx.err() {
        assert!(ctx.is_done());
        let mut done = pin!(ctx.done());
        let poll = done
            .as_mut()
            .poll(&mut TaskContext::from_waker(noop_waker_ref()));
        assert_eq!(poll, Poll::Ready(err), "err is set but done() is not ready");
        assert!(ctx.cause().is_some(), "canceled without a cause");
    }
}

fn check_chain(layers: &[Layer]) {
    for (j, layer) in layers.iter().enumerate() {
        assert_done_consistent(&layer.ctx);
        for key in 0..4 {
            assert_eq!(
                lookup(&layer.ctx, key),
                layer.values[key],
                "layer {j} key {key}"
            );
        }
        let Some(cause) = layer.ctx.cause() else {
            continue;
        };
        if matches!(layer.kind, Kind::Value) {
            continue; // reports its cancel ancestor's state
        }
        let inherited = match layer.cancel_parent {
            Some(p) => layers[p].ctx.cause(),
            // From the slot (any slot cause) unless detached.
            None if !layer.detached => Some(cause.clone()),
            None => None,
        };
        let ok = inherited.as_ref() == Some(&cause) || layer.own_causes.contains(&cause);
        assert!(
            ok,
            "layer {j}: cause {cause} is neither inherited nor its own"
        );
    }
}

fn worker(shared: Arc<Shared>, seed: u64) -> u64 {
    let mut rng = Rng::new(seed);
    let mut ops = 0u64;
    let mut value_seq = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        ops += 1;
        match rng.below(20) {
            // Recycle a shared slot: cancels every worker's chains under it.
            0 => shared.recycle(rng.below(shared.slots.len())),
            // Short timed wait on a slot.
            1 => {
                let slot = shared.slot(rng.below(shared.slots.len()));
                if let Some(err) = slot.wait_timeout(Duration::from_micros(rng.below(300) as u64)) {
                    assert_eq!(slot.err(), Some(err));
                }
            }
            // A done() future polled once and dropped (abandoned waiter).
            2 => {
                let slot = shared.slot(rng.below(shared.slots.len()));
                let mut done = pin!(slot.done());
                let _ = done
                    .as_mut()
                    .poll(&mut TaskContext::from_waker(noop_waker_ref()));
            }
            // A private chain with every kind of layer.
            _ => {
                let slot = shared.slot(rng.below(shared.slots.len()));
                chain_round(&shared, &mut rng, slot, &mut value_seq);
            }
        }
    }
    ops
}

fn chain_round(shared: &Shared, rng: &mut Rng, slot: Context, value_seq: &mut u64) {
    let depth = 1 + rng.below(6);
    let mut layers: Vec<Layer> = Vec::with_capacity(depth);
    for j in 0..depth {
        let (parent_ctx, cancel_parent, detached, values) = match layers.last() {
            Some(last) => {
                let cp = match last.kind {
                    Kind::Cancel | Kind::Timeout => Some(j - 1),
                    Kind::Value => last.cancel_parent,
                    Kind::Detach => None,
                };
                (
                    last.ctx.clone(),
                    cp,
                    last.detached || matches!(last.kind, Kind::Detach),
                    last.values,
                )
            }
            None => (slot.clone(), None, false, [None; 4]),
        };
        let layer = match rng.below(8) {
            0..=2 => {
                let (ctx, h) = parent_ctx.with_cancel();
                Layer {
                    ctx,
                    kind: Kind::Cancel,
                    handle: Some(h),
                    cancel_parent,
                    detached,
                    own_causes: Vec::new(),
                    values,
                }
            }
            3 | 4 => {
                // Some fire during the round, most do not.
                let timeout = if rng.chance(30) {
                    Duration::from_micros(rng.below(500) as u64)
                } else {
                    Duration::from_secs(60)
                };
                let cause = shared.fresh_cause("deadline");
                let (ctx, h) = parent_ctx.with_timeout_cause(timeout, cause.clone());
                Layer {
                    ctx,
                    kind: Kind::Timeout,
                    handle: Some(h),
                    cancel_parent,
                    detached,
                    own_causes: vec![cause],
                    values,
                }
            }
            5 | 6 => {
                let key = rng.below(4);
                *value_seq += 1;
                let mut values = values;
                values[key] = Some(*value_seq);
                Layer {
                    ctx: bind(&parent_ctx, key, *value_seq),
                    kind: Kind::Value,
                    handle: None,
                    cancel_parent,
                    detached,
                    own_causes: Vec::new(),
                    values,
                }
            }
            _ => Layer {
                ctx: parent_ctx.without_cancel(),
                kind: Kind::Detach,
                handle: None,
                cancel_parent: None,
                detached,
                own_causes: Vec::new(),
                values,
            },
        };
        layers.push(layer);
    }
    // The cancel part below a detach with no cancel layer yet never ends.
    check_chain(&layers);

    // after_funcs on random layers; each checks that the leaf below its
    // layer is canceled when it runs (F2), unless a detach cuts them apart.
    let mut registrations = Vec::new();
    for _ in 0..rng.below(3) {
        let at = rng.below(layers.len());
        let runs = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicBool::new(false));
        let below_cut = layers[at + 1..]
            .iter()
            .any(|l| matches!(l.kind, Kind::Detach));
        let probe = if below_cut {
            None
        } else {
            Some(layers.last().unwrap().ctx.clone())
        };
        let (r, f) = (runs.clone(), finished.clone());
        let kinds: String = layers
            .iter()
            .map(|l| match l.kind {
                Kind::Cancel => 'C',
                Kind::Timeout => 'T',
                Kind::Value => 'V',
                Kind::Detach => 'D',
            })
            .collect();
        let own = layers[at].ctx.clone();
        let handle = layers[at].ctx.after_func(move || {
            if let Some(probe) = probe {
                if !probe.is_done() && !EARLY_CALLBACK.swap(true, Ordering::SeqCst) {
                    *EARLY_DETAIL.lock().unwrap() = format!(
                        "chain {kinds}, registered at layer {at}, run on {:?}: own err {:?} \
                         cause {:?}; leaf err {:?} (again after 10 ms: {:?})",
                        thread::current().name(),
                        own.err(),
                        own.cause(),
                        probe.err(),
                        {
                            thread::sleep(Duration::from_millis(10));
                            probe.err()
                        }
                    );
                }
            }
            r.fetch_add(1, Ordering::SeqCst);
            f.store(true, Ordering::SeqCst);
        });
        let stopped = rng.chance(30) && handle.stop();
        registrations.push(Registration {
            handle,
            runs,
            finished,
            stopped,
        });
    }

    // Cancel a random cancelable layer and check the chain below it.
    let cancelable: Vec<usize> = (0..layers.len())
        .filter(|&j| layers[j].handle.is_some())
        .collect();
    if !cancelable.is_empty() {
        let victim = cancelable[rng.below(cancelable.len())];
        let cause = shared.fresh_cause("layer");
        layers[victim].own_causes.push(cause.clone());
        layers[victim]
            .handle
            .as_ref()
            .unwrap()
            .cancel_with_cause(cause);
        for (j, layer) in layers.iter().enumerate().skip(victim) {
            let cut = layers[victim + 1..=j]
                .iter()
                .any(|l| matches!(l.kind, Kind::Detach));
            if !cut {
                assert!(
                    layer.ctx.is_done(),
                    "layer {j} active after layer {victim}'s cancel returned"
                );
            }
        }
    }
    check_chain(&layers);

    // Settle every registration: stop_wait, then the counts must agree.
    for r in &registrations {
        let prevented = r.handle.stop_wait();
        let runs = r.runs.load(Ordering::SeqCst);
        assert!(runs <= 1, "after_func ran {runs} times");
        if r.stopped || prevented {
            assert_eq!(runs, 0, "a stopped after_func ran");
        } else {
            assert!(
                r.finished.load(Ordering::SeqCst),
                "stop_wait returned before f finished"
            );
            assert_eq!(runs, 1);
        }
        // A function whose context this thread canceled may still be
        // prevented: when another thread's cancel (a slot recycle helping the
        // walk) claimed its node, the entry is still WAITING between that
        // claim and its W1 transition, and a stop may win (F1) — as in Go,
        // where `stop` can win after `Err()` is set. Only "ran exactly once
        // unless prevented" holds, checked above.
        shared
            .callbacks_run
            .fetch_add(runs as u64, Ordering::Relaxed);
    }

    // Drop in a random order (handles cancel on drop).
    while !layers.is_empty() {
        let at = rng.below(layers.len());
        drop(layers.swap_remove(at));
    }
}

/// Set by a callback that found the subtree below it still active (F2).
static EARLY_CALLBACK: AtomicBool = AtomicBool::new(false);
static EARLY_DETAIL: Mutex<String> = Mutex::new(String::new());

/// Blocks on slots until told to stop; returns how many waits completed.
fn blocked_waiter(shared: Arc<Shared>, seed: u64) -> u64 {
    let mut rng = Rng::new(seed);
    let mut woken = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        let slot = shared.slot(rng.below(shared.slots.len()));
        let err = slot.wait();
        assert_eq!(slot.err(), Some(err));
        woken += 1;
    }
    woken
}

#[test]
fn all_operations_from_many_threads_on_shared_trees() {
    // Warm up the timer thread and thread-locals before the baseline.
    {
        let (c, _h) = Context::background().with_timeout(Duration::from_micros(1));
        c.wait();
    }
    let baseline = live();
    let (root, root_handle) = Context::background().with_cancel();
    let slots = (0..4)
        .map(|_| {
            let (ctx, handle) = root.with_cancel();
            Mutex::new(Slot {
                ctx,
                handle: Arc::new(handle),
            })
        })
        .collect();
    let shared = Arc::new(Shared {
        root,
        slots,
        stop: AtomicBool::new(false),
        ops: AtomicU64::new(0),
        causes: AtomicU64::new(0),
        callbacks_run: AtomicU64::new(0),
    });
    let (n, run_for) = (threads(), Duration::from_secs_f64(secs()));
    let workers: Vec<_> = (0..n)
        .map(|i| {
            let s = shared.clone();
            thread::spawn(move || worker(s, 0x9E37_79B9 * (i as u64 + 1)))
        })
        .collect();
    let waiters: Vec<_> = (0..2)
        .map(|i| {
            let s = shared.clone();
            thread::spawn(move || blocked_waiter(s, 0x51_7C_C1 * (i as u64 + 7)))
        })
        .collect();
    let started = Instant::now();
    while started.elapsed() < run_for {
        thread::sleep(Duration::from_millis(10));
        // Keep the blocked waiters moving even if no worker recycles.
        shared.recycle((started.elapsed().as_millis() % 4) as usize);
    }
    shared.stop.store(true, Ordering::SeqCst);
    let ops: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    // The root cancel must wake every blocked waiter.
    root_handle.cancel_with_cause(Cause::msg("end of stress"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut woken = 0;
    for w in waiters {
        while !w.is_finished() {
            assert!(
                Instant::now() < deadline,
                "a blocked waiter was never woken"
            );
            thread::sleep(Duration::from_millis(5));
        }
        woken += w.join().unwrap();
    }
    assert!(
        !EARLY_CALLBACK.load(Ordering::SeqCst),
        "an after_func ran before the subtree below it was canceled: {}",
        EARLY_DETAIL.lock().unwrap()
    );
    shared.ops.store(ops, Ordering::Relaxed);
    eprintln!(
        "stress: {n} threads, {:.1} s, {ops} ops, {woken} blocked waits woken, {} callbacks run",
        run_for.as_secs_f64(),
        shared.callbacks_run.load(Ordering::Relaxed)
    );
    assert!(ops > 0);
    drop(shared);
    drop(root_handle);
    // Let deferred frees and the timer's canceled entries go.
    for _ in 0..1_000 {
        let (p, h) = Context::background().with_cancel();
        let (_c, _ch) = p.with_cancel();
        h.cancel();
    }
    thread::sleep(Duration::from_millis(50));
    let after = live() - baseline;
    eprintln!("stress: live heap {after} bytes above the baseline after teardown");
    assert!(
        after < 4 << 20,
        "{after} bytes still live after everything was dropped"
    );
}

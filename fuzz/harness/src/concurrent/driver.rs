//! Runs an input: builds the shared tree, runs the blocking waiters and the
//! racing threads on the pool from a common start, checks after join, then
//! cancels the rest and checks that everything was woken.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Barrier, Mutex, PoisonError};
use std::time::Duration;

use ctxtree::{Cause, Context, Error};

use super::checks::{check_after_join, check_locals_at_end, check_registrations};
use super::decode::{decode, Parent, Plan};
use super::pool::{join, lock_pool, run_on};
use super::racer::thread_main;
use super::state::{Local, Shared};

/// How long a blocking waiter waits before it is declared not woken.
const WAIT: Duration = Duration::from_secs(10);

/// Runs one input: panics if an invariant fails.
pub fn run(data: &[u8]) {
    run_plan(&decode(data));
}

/// Drops every shared handle still in its slot (canceling its node).
struct CancelRest<'a>(&'a Shared);

impl Drop for CancelRest<'_> {
    fn drop(&mut self) {
        for slot in &self.0.handles {
            let h = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            drop(h);
        }
    }
}

/// Runs a decoded plan.
pub fn run_plan(plan: &Plan) {
    // The prebuilt tree.
    let shared = build_tree(plan);

    let pool = lock_pool(plan.threads.len() + plan.waiters.len());
    let (racer_pool, waiter_pool) = pool.split_at(plan.threads.len());
    // Whatever happens below, a panic included, cancel what is left on
    // the way out so that blocked waiters return at once.
    let cancel_rest = CancelRest(&shared);
    let waiters: Vec<_> = plan
        .waiters
        .iter()
        .zip(waiter_pool)
        .map(|(&k, worker)| {
            let sh = shared.clone();
            let ctx = sh.ctxs[k].clone();
            let rx = run_on(worker, move || {
                sh.start();
                let got = ctx.wait_timeout(WAIT);
                if let Some(e) = got {
                    assert_eq!(ctx.err(), Some(e), "woken waiter: err() disagrees");
                    assert!(ctx.cause().is_some(), "woken waiter: no cause");
                }
                got
            });
            (k, rx)
        })
        .collect();
    let racers: Vec<_> = plan
        .threads
        .iter()
        .zip(racer_pool)
        .enumerate()
        .map(|(t, (ops, worker))| {
            let sh = shared.clone();
            let ops = ops.clone();
            run_on(worker, move || thread_main(&sh, t, &ops))
        })
        .collect();
    let mut locals: Vec<Local> = racers.into_iter().map(join).collect();
    check_after_join(&shared, &locals, plan);
    check_registrations(&locals, plan, false);

    // Cancel everything that is left; every waiter must then wake.
    drop(cancel_rest);
    for l in &mut locals {
        for d in &mut l.derived {
            d.handle = None;
        }
    }
    for (k, ctx) in shared.ctxs.iter().enumerate() {
        assert!(
            ctx.is_done(),
            "node {k} live after every handle was dropped"
        );
    }
    for (k, rx) in waiters {
        let got = join(rx);
        assert_eq!(
            got,
            Some(Error::Canceled),
            "a thread blocked in wait_timeout on node {k} was not woken within {WAIT:?} \
             (plan: {plan:?})"
        );
    }
    check_registrations(&locals, plan, true);
    check_locals_at_end(&mut locals, plan);
}

/// The shared nodes of `plan`, each with its handle, subtree and path.
fn build_tree(plan: &Plan) -> Arc<Shared> {
    let mut ctxs: Vec<Context> = Vec::new();
    let mut handles = Vec::new();
    let mut parents = Vec::new();
    let mut paths: Vec<String> = Vec::new();
    for p in &plan.parents {
        let (parent, idx, path) = match *p {
            Parent::Background => (Context::background(), None, "context.Background".into()),
            Parent::Todo => (Context::todo(), None, "context.TODO".into()),
            Parent::Node(m) => (ctxs[m].clone(), Some(m), paths[m].clone()),
        };
        let (ctx, handle) = parent.with_cancel();
        ctxs.push(ctx);
        handles.push(Mutex::new(Some(Arc::new(handle))));
        parents.push(idx);
        paths.push(path + ".WithCancel");
    }
    let n = ctxs.len();
    let mut subtree: Vec<Vec<usize>> = (0..n).map(|k| vec![k]).collect();
    for d in 0..n {
        let mut a = parents[d];
        while let Some(p) = a {
            subtree[p].push(d);
            a = parents[p];
        }
    }
    Arc::new(Shared {
        ctxs,
        parents,
        handles,
        subtree,
        paths,
        msg_a: Cause::msg("cause A"),
        msg_b: Cause::msg("cause B"),
        barrier: Barrier::new(plan.threads.len() + plan.waiters.len()),
        started: AtomicUsize::new(0),
        threads: plan.threads.len() + plan.waiters.len(),
    })
}

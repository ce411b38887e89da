//! Dropped children give their memory back with no derive to come (L5,
//! src/tree/children/mod.rs): a long-lived parent whose children are
//! dropped in any order, after which nothing else happens on it, keeps at
//! most `MIN_SWEEP` (64) dead children linked, never the crowd.
//!
//! Sweeps run by a derive or a drop visit at most 1,024 nodes; a longer
//! one is finished by the collector thread (L10), so the memory comes back
//! shortly after the last drop, and no single drop paid for the crowd.
//!
//! A counting global allocator tracks live heap bytes; the tests of this
//! file run one at a time while they measure.

mod common;

use std::sync::{Mutex, MutexGuard};

use std::time::Duration;

use common::alloc::{live, settled};
use ctxtree::{CancelHandle, Context};

#[global_allocator]
static GLOBAL: common::alloc::Counting = common::alloc::Counting;

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What may stay after every child left: the node caches of the dropping
/// threads and the collector (1,024 freed 64-byte blocks each, C2) and up
/// to `MIN_SWEEP` children still linked, with allocator slack.
const SLACK: isize = 3 * 1024 * 64 + 64 * 128 + 16 * 1024;

/// How long the collector may take to finish a handed-off sweep of 2·10⁵
/// nodes on a loaded machine (it takes milliseconds).
const SETTLE: Duration = Duration::from_secs(5);

/// Nodes one sweep run by a derive or a drop may visit (L10).
const INLINE_SWEEP: usize = 1024;

/// No derive or drop in this process swept more than `INLINE_SWEEP` nodes.
fn assert_no_call_swept_the_crowd() {
    let most = ctxtree::__diagnostics::max_inline_sweep();
    assert!(
        most <= INLINE_SWEEP,
        "one derive or drop swept {most} nodes (bound {INLINE_SWEEP})"
    );
}

/// A permutation of `0..n` from a fixed seed (a linear congruential
/// generator): random order, reproducible.
fn shuffled(n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..n).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        order.swap(i, (state >> 33) as usize % (i + 1));
    }
    order
}

fn children_in(parent: &Context, n: usize) -> Vec<Option<(Context, CancelHandle)>> {
    (0..n).map(|_| Some(parent.with_cancel())).collect()
}

fn n() -> usize {
    if cfg!(debug_assertions) {
        20_000
    } else {
        200_000
    }
}

#[test]
fn children_dropped_in_random_order_are_returned_without_more_derives() {
    let _serial = serial();
    let (parent, _handle) = Context::background().with_cancel();
    let n = n();
    let base = live();
    let mut children = children_in(&parent, n);
    let peak = live() - base;
    for i in shuffled(n) {
        children[i] = None;
    }
    drop(children);
    let left = settled(base, SLACK, SETTLE);
    eprintln!("{n} children: {peak} bytes while live, {left} after all were dropped");
    assert!(
        peak > n as isize * 56,
        "the children were live: {peak} bytes"
    );
    assert!(
        left <= SLACK,
        "dropped children stayed linked: {left} bytes left of {peak} for {n} children"
    );
    // The parent still works: a new child is listed, and canceled with it.
    let (child, _child_handle) = parent.with_cancel();
    drop(_handle);
    assert!(child.is_done());
    assert_no_call_swept_the_crowd();
}

/// The order a `Vec` drops in: oldest first, so the drops mark nodes
/// from the tail of the list toward its head while the collector's sweep
/// of the list walks from the head toward the tail. Where they cross, the
/// sweep's unlink can fail on a node deleted under it (it stalls, L5),
/// leaving the dead run behind linked unless another sweep follows (L10;
/// the loom model `collector:sweep_stalled_by_a_concurrent_delete` is
/// what proves that one does). Here: the bound holds for the most common
/// drop order, round after round on the same parent.
#[test]
fn children_dropped_oldest_first_are_returned() {
    let _serial = serial();
    let (parent, _handle) = Context::background().with_cancel();
    let n = n();
    for round in 0..5 {
        let base = live();
        let children = children_in(&parent, n);
        drop(children);
        let left = settled(base, SLACK, SETTLE);
        assert!(
            left <= SLACK,
            "round {round}: children dropped oldest first stayed linked: {left} bytes for {n}"
        );
    }
    assert_no_call_swept_the_crowd();
}

#[test]
fn children_dropped_by_another_thread_are_returned() {
    let _serial = serial();
    let (parent, _handle) = Context::background().with_cancel();
    let n = n();
    let base = live();
    let children = children_in(&parent, n);
    std::thread::spawn(move || {
        let mut children = children;
        for i in shuffled(n) {
            children[i] = None;
        }
    })
    .join()
    .unwrap();
    let left = settled(base, SLACK, SETTLE);
    assert!(
        left <= SLACK,
        "children dropped on another thread stayed linked: {left} bytes for {n}"
    );
    assert_no_call_swept_the_crowd();
}

#[test]
fn children_of_a_sharded_parent_dropped_elsewhere_are_returned() {
    let _serial = serial();
    let (parent, _handle) = Context::background().with_cancel();
    let n = n();
    let threads = 4;
    let base = live();
    // Several threads derive at once, so the list shards (L8); one other
    // thread drops everything, so L7 (which tries only the dropping
    // thread's own shard) misses most of them.
    let batches: Vec<_> = (0..threads)
        .map(|_| {
            let parent = parent.clone();
            std::thread::spawn(move || children_in(&parent, n / threads))
        })
        .collect();
    let mut children: Vec<_> = batches
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    std::thread::spawn(move || {
        for i in shuffled(children.len()) {
            children[i] = None;
        }
    })
    .join()
    .unwrap();
    // Each shard may keep `MIN_SWEEP` children, and the deriving threads'
    // caches are gone with them.
    let bound = SLACK + 64 * 128 * 64;
    let left = settled(base, bound, SETTLE);
    assert_no_call_swept_the_crowd();
    assert!(
        left <= bound,
        "children of a sharded parent stayed linked: {left} bytes for {n} (bound {bound})"
    );
}

#[test]
fn a_canceled_child_held_by_its_own_child_is_returned() {
    // A child whose last user is the grant of its own child: the freeing
    // loop of the grandchild releases it while it is linked and marked.
    let _serial = serial();
    let (parent, _handle) = Context::background().with_cancel();
    let n = n() / 4;
    let base = live();
    let mut pairs: Vec<_> = (0..n)
        .map(|_| {
            let (child, child_handle) = parent.with_cancel();
            let grandchild = child.with_cancel();
            Some((child, child_handle, grandchild))
        })
        .collect();
    // Canceled after every insert, so no insert's sweep unlinks them.
    for (_, child_handle, _) in pairs.iter().flatten() {
        child_handle.cancel(); // cancels both; the grandchild grants its parent
    }
    for i in shuffled(n) {
        let (child, child_handle, grandchild) = pairs[i].take().unwrap();
        drop((child, child_handle));
        drop(grandchild); // the child's last user goes with it
    }
    drop(pairs);
    let left = settled(base, SLACK, SETTLE);
    assert!(
        left <= SLACK,
        "children released by their own children's grants stayed linked: {left} bytes for {n}"
    );
}

/// Through the tower layer: a server's requests that are all in flight and
/// then aborted (hyper drops their futures when clients go) leave nothing
/// on the server's root once the collector has finished (L5, L10).
#[cfg(feature = "tower")]
#[test]
fn aborted_requests_leave_nothing_on_the_servers_root() {
    use std::future::Future;
    use std::task::{Context as TaskContext, Waker};

    use ctxtree::tower::ContextLayer;
    use tower::{service_fn, Layer, Service};

    let _serial = serial();
    let (root, _shutdown) = Context::background().with_cancel();
    let n = n() / 2;
    let mut svc =
        ContextLayer::new(root.clone()).layer(service_fn(|_req: http::Request<String>| {
            std::future::pending::<Result<http::Response<String>, std::convert::Infallible>>()
        }));
    let base = live();
    let mut cx = TaskContext::from_waker(Waker::noop());
    let mut in_flight: Vec<Option<_>> = (0..n)
        .map(|_| {
            let mut call = Box::pin(svc.call(http::Request::new(String::new())));
            assert!(call.as_mut().poll(&mut cx).is_pending());
            Some(call)
        })
        .collect();
    let peak = live() - base;
    assert!(
        peak > n as isize * 56,
        "the requests were in flight: {peak} bytes"
    );
    for i in shuffled(n) {
        in_flight[i] = None; // the client went away: its request context ends
    }
    drop(in_flight);
    let left = settled(base, SLACK, SETTLE);
    eprintln!("{n} aborted requests: {peak} bytes in flight, {left} after");
    assert!(
        left <= SLACK,
        "aborted requests stayed on the root: {left} bytes of {peak} for {n}"
    );
    assert_no_call_swept_the_crowd();
}

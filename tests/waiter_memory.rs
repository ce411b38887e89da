//! Abandoned waiters keep no waker (W5, src/tree/waiters.rs) and few entries (W4):
//! futures that wait on a long-lived context and are dropped give their
//! wakers back at once — a waker often owns a whole task — and the stack
//! stays within twice its live waiters plus 32, even when no other waiter
//! comes and nothing else happens on the context.
//!
//! A counting global allocator tracks live heap bytes; the one test of this
//! file is the only thing running in its process while it measures.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Wake, Waker};

use common::alloc::live;
use ctxtree::Context;

#[global_allocator]
static GLOBAL: common::alloc::Counting = common::alloc::Counting;

/// A waker standing in for a task: it owns 2 KiB.
struct Task {
    _state: [u8; TASK_BYTES],
}

const TASK_BYTES: usize = 2048;

impl Wake for Task {
    fn wake(self: Arc<Self>) {}
}

/// Bytes an abandoned waiter's entry may hold until a collection frees it
/// (under 64 bytes, plus allocator slack): never its waker's task.
const MAX_PER_ENTRY: isize = 128;
/// W4: abandoned entries left on a stack with `live` waiters, when nothing
/// else happens: at most `live + MIN_COLLECT` (32).
fn max_abandoned(live: usize) -> isize {
    live as isize + 32
}

fn waiters_dropped_leave_no_wakers(n: usize) {
    let (ctx, _handle) = Context::background().with_cancel();
    let base = live();
    let mut futures: Vec<Pin<Box<_>>> = Vec::with_capacity(n);
    for _ in 0..n {
        let waker = Waker::from(Arc::new(Task {
            _state: [0; TASK_BYTES],
        }));
        let mut done = Box::pin(ctx.done());
        assert!(done
            .as_mut()
            .poll(&mut TaskContext::from_waker(&waker))
            .is_pending());
        futures.push(done);
    }
    let peak = live() - base;
    assert!(
        peak >= (n * TASK_BYTES) as isize,
        "the wakers were registered: {peak} bytes for {n}"
    );
    // All but one leave; nothing else happens on the context.
    let survivor = futures.pop();
    drop(futures);
    let left = live() - base;
    eprintln!("{n} waiters: {peak} bytes registered, {left} bytes left after all but one left");
    let bound = TASK_BYTES as isize + MAX_PER_ENTRY * (1 + max_abandoned(1));
    assert!(
        left <= bound,
        "abandoned waiters kept their wakers or entries: {left} bytes for {n} \
         (peak {peak}, bound {bound})"
    );
    drop(survivor);
}

#[test]
fn abandoned_waiters_give_their_wakers_back_at_once() {
    waiters_dropped_leave_no_wakers(10_000);
    // 10^5 waiters hold 200 MiB while registered: release builds only.
    if !cfg!(debug_assertions) {
        waiters_dropped_leave_no_wakers(100_000);
    }
}

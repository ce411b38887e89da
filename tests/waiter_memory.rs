//! Abandoned waiters keep no waker (W5, src/waiters.rs): futures that wait on
//! a long-lived context and are dropped give their wakers back at once — a
//! waker often owns a whole task — even when no other waiter comes and
//! nothing else happens on the context.
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

/// Bytes an abandoned waiter may still hold after its future is dropped:
/// its entry (under 64 bytes) and allocator slack, never its waker's task.
const MAX_PER_ABANDONED: isize = 128;

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
    assert!(
        left <= TASK_BYTES as isize + MAX_PER_ABANDONED * n as isize,
        "abandoned waiters kept their wakers: {left} bytes for {n} (peak {peak})"
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

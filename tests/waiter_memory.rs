//! Abandoned waiters keep no waker (W5, src/tree/waiters/mod.rs) and few entries (W4, W6 in
//! src/tree/waiters/collect.rs):
//! futures that wait on a long-lived context and are dropped give their
//! wakers back at once — a waker often owns a whole task — and the stack
//! stays within twice its live waiters plus 32, even when no other waiter
//! comes and nothing else happens on the context.
//!
//! A collection run by an abandon walks at most 1,024 entries; the rest of
//! a longer chain is finished by the collector thread (W6), so re-polling
//! 10⁵ futures with new wakers never makes one poll pay for the crowd.
//!
//! A counting global allocator tracks live heap bytes; the tests of this
//! file run one at a time while they measure.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use common::alloc::{live, settled};
use common::waker::CountingWaker;
use ctxtree::Context;

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How long the collector may take to finish the rest of a long chain on
/// a loaded machine (it takes milliseconds).
const SETTLE: Duration = Duration::from_secs(5);

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
/// Bytes the process may keep beside the waiters (see the use).
const PROCESS_SLACK: isize = 16 * 1024;
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
    // Plus what the process keeps whatever the number of waiters: the
    // collector's queue (its capacity shrinks to 64 jobs when idle) and
    // the bookkeeping of a thread it may have started (W6). Less than ten
    // of the tasks the wakers stand for, whatever `n`.
    let bound = TASK_BYTES as isize + MAX_PER_ENTRY * (1 + max_abandoned(1)) + PROCESS_SLACK;
    let left = settled(base, bound, SETTLE);
    eprintln!("{n} waiters: {peak} bytes registered, {left} bytes left after all but one left");
    assert!(
        left <= bound,
        "abandoned waiters kept their wakers or entries: {left} bytes for {n} \
         (peak {peak}, bound {bound})"
    );
    drop(survivor);
}

#[test]
fn abandoned_waiters_give_their_wakers_back_at_once() {
    let _serial = serial();
    waiters_dropped_leave_no_wakers(10_000);
    // 10^5 waiters hold 200 MiB while registered: release builds only.
    if !cfg!(debug_assertions) {
        waiters_dropped_leave_no_wakers(100_000);
    }
}

/// Polls every future once with one new counting waker, expecting pending.
fn poll_all<F: Future>(futures: &mut [Pin<Box<F>>]) -> Arc<CountingWaker> {
    let wakes = CountingWaker::new();
    let waker = Waker::from(wakes.clone());
    let mut cx = TaskContext::from_waker(&waker);
    for done in futures.iter_mut() {
        assert!(done.as_mut().poll(&mut cx).is_pending());
    }
    wakes
}

/// Item 3 of the tails: re-polling many pending `done()` futures with new
/// wakers abandons and re-registers each entry; the collections that
/// follow walk at most 1,024 entries per poll (W6), the stack stays within
/// W4's bound, and a cancel still wakes every waiter, including those in a
/// chain the collector held.
#[test]
fn repolling_with_new_wakers_never_collects_the_crowd_in_one_poll() {
    let _serial = serial();
    let n = if cfg!(debug_assertions) {
        20_000
    } else {
        100_000
    };
    let (ctx, handle) = Context::background().with_cancel();
    let base = live();
    let mut futures: Vec<Pin<Box<_>>> = (0..n).map(|_| Box::pin(ctx.done())).collect();
    poll_all(&mut futures);
    let registered = live() - base;
    let mut wakes = poll_all(&mut futures);
    for _ in 0..3 {
        wakes = poll_all(&mut futures);
    }
    let most = ctxtree::__diagnostics::max_inline_collect();
    assert!(
        most <= 1024,
        "one poll walked {most} waiter entries (bound 1,024)"
    );
    // W4: abandoned entries at most half the survivors plus 32, so the
    // memory stays within about 1.5× what the registered waiters hold.
    let bound = registered * 2;
    let left = settled(base, bound, SETTLE);
    assert!(
        left <= bound,
        "{left} bytes after re-polls, {registered} when registered"
    );
    // Every waiter of the last round is woken by the cancel, those whose
    // entries the collector held included (W2, W6).
    handle.cancel();
    let start = Instant::now();
    while wakes.count() < n && start.elapsed() < SETTLE {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(wakes.count(), n, "waiters left asleep by the cancel");
    for done in futures.iter_mut() {
        let waker = Waker::noop();
        assert!(matches!(
            done.as_mut().poll(&mut TaskContext::from_waker(waker)),
            Poll::Ready(_)
        ));
    }
    // Everything goes back, the collector's part included, before the
    // next test of this file measures.
    drop((futures, wakes));
    drop((ctx, handle));
    let left = settled(base, 16 * 1024, SETTLE);
    assert!(
        left <= 16 * 1024,
        "{left} bytes left after the waiters ended"
    );
}

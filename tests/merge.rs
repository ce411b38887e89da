//! `Context::merge` / `merge_all` (src/merge.rs): a child of the primary
//! that also ends when the others do — err and cause from whichever
//! cancellation reached it first, the earliest deadline, the primary's
//! values, born done if an input is done — with nothing left registered on
//! the others once it is done, and chains of any depth canceled without
//! recursion.

mod common;

use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::alloc::live;
use ctxtree::{Cause, Context, Error};

#[global_allocator]
static GLOBAL: common::alloc::Counting = common::alloc::Counting;

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn the_primary_the_other_or_the_handle_ends_it() {
    let root = Context::background();
    // The primary.
    let (a, a_handle) = root.with_cancel();
    let (b, _b_handle) = root.with_cancel();
    let (m, _m) = a.merge(&b);
    a_handle.cancel_with_cause(Cause::msg("primary"));
    assert_eq!(m.err(), Some(Error::Canceled));
    assert_eq!(m.cause().unwrap().to_string(), "primary");
    assert!(!b.is_done());
    // The other.
    let (a, _a_handle) = root.with_cancel();
    let (b, b_handle) = root.with_cancel();
    let (m, _m) = a.merge(&b);
    b_handle.cancel_with_cause(Cause::msg("other"));
    assert!(m.is_done(), "done when the other's cancel returned");
    assert_eq!(m.cause().unwrap().to_string(), "other");
    assert!(!a.is_done());
    // Its handle, which ends neither input.
    let (a, _a_handle) = root.with_cancel();
    let (b, _b_handle) = root.with_cancel();
    let (m, m_handle) = a.merge(&b);
    m_handle.cancel();
    assert_eq!(m.err(), Some(Error::Canceled));
    assert!(!a.is_done() && !b.is_done());
}

#[test]
fn a_merge_with_a_done_context_is_born_done() {
    let root = Context::background();
    let (a, _a_handle) = root.with_cancel();
    let (b, b_handle) = root.with_cancel();
    b_handle.cancel_with_cause(Cause::msg("gone"));
    let (m, _m) = a.merge(&b);
    assert!(m.is_done());
    assert_eq!(m.cause().unwrap().to_string(), "gone");
    let (m, _m) = b.merge(&a); // the primary done
    assert!(m.is_done());
    let (expired, _e) = root.with_timeout(Duration::ZERO);
    let (m, _m) = a.merge(&expired);
    assert_eq!(m.err(), Some(Error::DeadlineExceeded));
}

#[test]
fn the_earliest_deadline_and_the_primarys_values() {
    let root = Context::background();
    let soon = Instant::now() + Duration::from_millis(30);
    let (a, _a) = root.with_value(7u32).with_timeout(Duration::from_secs(60));
    let (b, _b) = root.with_deadline(soon);
    let (c, _c) = root.with_value("other's").with_cancel();
    let (m, _m) = a.merge_all([&b, &c]);
    assert_eq!(
        m.deadline(),
        Some(soon).map(|d| d.max(m.deadline().unwrap()))
    );
    assert!(m.deadline().unwrap() <= soon + Duration::from_millis(1));
    assert_eq!(m.value::<u32>(), Some(&7));
    assert_eq!(m.value::<&str>(), None, "values come from the primary only");
    assert_eq!(m.wait(), Error::DeadlineExceeded);
    // Roots and detached contexts never end it.
    let (m, _m) = a.merge_all([&root, &Context::todo(), &c.without_cancel()]);
    assert!(!m.is_done());
}

#[test]
fn concurrent_cancels_of_both_inputs_leave_one_consistent_end() {
    let root = Context::background();
    for _ in 0..if cfg!(debug_assertions) { 500 } else { 5_000 } {
        let (a, a_handle) = root.with_cancel();
        let (b, b_handle) = root.with_cancel();
        let (m, _m) = a.merge(&b);
        let (deriver_m, start) = (m.clone(), Arc::new(Barrier::new(3)));
        let (s1, s2, s3) = (start.clone(), start.clone(), start);
        let t1 = thread::spawn(move || {
            s1.wait();
            a_handle.cancel_with_cause(Cause::msg("a"));
        });
        let t2 = thread::spawn(move || {
            s2.wait();
            b_handle.cancel_with_cause(Cause::msg("b"));
        });
        s3.wait();
        let (grandchild, _g) = deriver_m.with_cancel();
        t1.join().unwrap();
        t2.join().unwrap();
        assert!(m.is_done() && grandchild.is_done());
        let cause = m.cause().unwrap().to_string();
        assert!(cause == "a" || cause == "b", "{cause}");
        assert_eq!(grandchild.cause().unwrap().to_string(), cause);
    }
}

#[test]
fn diamonds_end_once() {
    let root = Context::background();
    let (top, top_handle) = root.with_cancel();
    let (left, _l) = top.with_cancel();
    let (right, _r) = top.with_cancel();
    let (m, _m) = left.merge(&right);
    let (below, _b) = m.merge(&top);
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = runs.clone();
    let _f = below.after_func(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    top_handle.cancel_with_cause(Cause::msg("top"));
    assert_eq!(below.cause().unwrap().to_string(), "top");
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Each link ends the next through the other side of a merge: canceling
/// the first ends all of them with constant stack (F5).
#[test]
fn a_deep_chain_of_merges_cancels_on_a_small_stack() {
    let _serial = serial();
    let depth = if cfg!(debug_assertions) {
        100_000
    } else {
        1_000_000
    };
    thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let root = Context::background();
            let (first, first_handle) = root.with_cancel();
            let mut links = Vec::with_capacity(depth);
            let mut last = first.clone();
            for _ in 0..depth {
                let link = root.merge(&last);
                last = link.0.clone();
                links.push(link);
            }
            first_handle.cancel_with_cause(Cause::msg("first"));
            assert!(last.is_done());
            assert_eq!(last.cause().unwrap().to_string(), "first");
            drop(links); // also iterative
        })
        .unwrap()
        .join()
        .expect("no stack overflow");
}

/// A long-lived context merged into 10^5 short-lived ones, each dropped
/// early: what stays registered on it is bounded (W4), not one entry per
/// merge.
#[test]
fn merges_dropped_early_leave_nothing_on_the_other() {
    let _serial = serial();
    let root = Context::background();
    let (server, _shutdown) = root.with_cancel();
    let cycles = if cfg!(debug_assertions) {
        100_000
    } else {
        1_000_000
    };
    let mut warm = Vec::new();
    for _ in 0..1_000 {
        warm.push(root.with_cancel().0.merge(&server));
    }
    drop(warm);
    let base = live();
    let mut worst = 0;
    for i in 0..cycles {
        let (request, _r) = root.with_cancel();
        drop(request.merge(&server));
        if i % 1024 == 0 {
            worst = worst.max(live() - base);
        }
    }
    let end = live() - base;
    eprintln!("{cycles} merge/drop cycles: worst growth {worst} B, end {end} B");
    // The other's waiter stack keeps at most 32 abandoned entries with no
    // live waiter (W4), each under 128 bytes; allow the node caches too.
    let bound = 64 * 1024 + 32 * 128 + 16 * 1024;
    assert!(
        worst <= bound as isize,
        "grew {worst} B over {cycles} cycles"
    );
    assert!(end <= bound as isize, "{end} B left after {cycles} cycles");
}

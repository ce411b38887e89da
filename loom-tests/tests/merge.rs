//! loom models of merged contexts (src/merge.rs): a merged context is a
//! child of its primary plus `after_func` registrations (F1–F7) on the
//! others and on itself; these models check that composition where it
//! races: another input's cancel against the merged context's drop, and
//! the cancels of both inputs against a derive from the merged context.
//!
//! Run: `CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=3 \
//!       RUSTFLAGS="--cfg loom --cfg crossbeam_loom" cargo test --release -p loom-tests --test merge`
#![cfg(loom)]

use ctxtree::{Cause, Context, Error};
use loom::thread;
use loom_tests::model;

/// The other input's cancel runs the registration that cancels the merged
/// context while the merged context's last handles are dropped (which
/// cancels it and stops that registration). The registration must hold
/// the merged node alive while it may still run. Fails with
/// `merge_unheld_child` (the registration names the node without a user).
#[test]
fn other_cancel_vs_merged_drop() {
    model(|| {
        let (a, _a_handle) = Context::background().with_cancel();
        let (b, b_handle) = Context::background().with_cancel();
        let (merged, merged_handle) = a.merge(&b);
        let canceler = thread::spawn(move || b_handle.cancel());
        drop((merged, merged_handle));
        canceler.join().unwrap();
        assert_eq!(b.err(), Some(Error::Canceled));
    });
}

/// Both inputs canceled, one from another thread, while the main thread
/// derives from the merged context: the merged context ends with one of
/// the two causes, and the derived child with the same one (N3).
#[test]
fn both_inputs_cancel_vs_derive() {
    model(|| {
        let (a, a_handle) = Context::background().with_cancel();
        let (b, b_handle) = Context::background().with_cancel();
        let (merged, _merged_handle) = a.merge(&b);
        let tb = thread::spawn(move || b_handle.cancel_with_cause(Cause::msg("b")));
        let (child, _child_handle) = merged.with_cancel();
        a_handle.cancel_with_cause(Cause::msg("a"));
        tb.join().unwrap();
        let cause = merged.cause().expect("done").to_string();
        assert!(cause == "a" || cause == "b");
        assert_eq!(child.cause().expect("done").to_string(), cause);
        drop(a);
    });
}

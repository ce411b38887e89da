//! loom model of the cancel origin (S4, `src/tree/state.rs`): how a cancel
//! reached a node is written by the same claim as its err and cause.
//!
//! Run: `CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=3 \
//!       RUSTFLAGS="--cfg loom --cfg crossbeam_loom" cargo test --release -p loom-tests --test origin`
#![cfg(loom)]

use ctxtree::{Cause, Context};
use loom::thread;
use loom_tests::model;

/// S4: a parent's cancel (its walk inheriting into the child) races the
/// child's own cancel. Whichever claim won the child's word, its origin
/// agrees with its cause: the parent's cause comes with depth 1 (the
/// parent), the child's with depth 0; the grandchild's origin is the
/// child's, one level further. Fails with `inherit_keeps_how` (the walk's
/// copy of the parent's word keeps the parent's `H`, so the child claims to
/// be the origin of the parent's cancel).
#[test]
fn origin_of_parent_cancel_vs_child_cancel() {
    model(|| {
        let (parent, cancel_parent) = Context::background().with_cancel();
        let (child, cancel_child) = parent.with_cancel();
        let (grandchild, _g) = child.with_cancel();
        let other = thread::spawn(move || {
            cancel_parent.cancel_with_cause(Cause::msg("parent"));
            cancel_parent
        });
        cancel_child.cancel_with_cause(Cause::msg("child"));
        let cancel_parent = other.join().unwrap();
        let origin = child.origin().expect("S4: a canceled child has an origin");
        let depth = match child.cause().unwrap().to_string().as_str() {
            "parent" => 1,
            _ => 0,
        };
        assert_eq!(origin.depth(), depth, "S4: origin and cause disagree");
        assert!(origin.is(if depth == 1 { &parent } else { &child }));
        let below = grandchild.origin().unwrap();
        assert_eq!(below.depth(), depth + 1, "S4: the grandchild's origin");
        drop((cancel_parent, cancel_child));
    });
}

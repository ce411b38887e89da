//! loom model of the tree dump's visit (L9, `src/tree/children/visit.rs`):
//! a visit reaches children as the sweeper does, so a child's last user
//! unlinking and freeing it (L7) cannot pull it from under the dump.
//!
//! Run: `CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=3 \
//!       RUSTFLAGS="--cfg loom --cfg crossbeam_loom" cargo test --release -p loom-tests --test dump`
#![cfg(loom)]

use ctxtree::Context;
use loom::thread;
use loom_tests::model;

/// L9, L7, N1: the dump of a parent visits its list (and grants itself a
/// user of each live child it shows) while the only child is canceled and
/// its last users dropped on another thread, which unlinks it from the
/// head and frees it (L7) when no visit holds the list. The dump shows the
/// child or not, never a freed one, and every node is freed at the end.
/// Fails with `visit_unswept` (the visit walks the list without taking
/// `SWEEPING`): "use after free of a ctxtree node".
#[test]
fn dump_vs_last_user_unlink() {
    model(|| {
        let (parent, _hp) = Context::background().with_cancel();
        let (child, cancel_child) = parent.with_cancel();
        let other = thread::spawn(move || {
            cancel_child.cancel();
            drop(child);
        });
        let tree = parent.tree();
        assert!(tree.nodes.len() <= 2);
        other.join().unwrap();
        drop(tree);
        assert_eq!(
            parent.tree().nodes.len(),
            1,
            "the canceled child left the list"
        );
    });
}

/// L9, L4, L6, N1: the dump visits the list while the parent's cancel
/// closes it and unlists the child, whose only user left is its handle.
/// A child the visit granted itself a user of is unlisted with that user
/// (the closer's pass grants the parent), and every node is freed once
/// the dump and the handle are gone (the model checks for leaks).
#[test]
fn dump_vs_parent_close() {
    model(|| {
        let (parent, cancel_parent) = Context::background().with_cancel();
        let (child, cancel_child) = parent.with_cancel();
        drop(child);
        let other = thread::spawn(move || {
            cancel_parent.cancel();
            cancel_parent
        });
        let tree = parent.tree();
        assert!(tree.nodes.len() <= 2);
        let cancel_parent = other.join().unwrap();
        drop((tree, cancel_child, cancel_parent));
    });
}

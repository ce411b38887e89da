//! loom models of the sweeps that drops run (L5, src/tree/children/mod.rs):
//! the last user of a child left linked and `DELETED` counts against its
//! parent's sweep budget and may sweep the parent's list, holding only
//! that child. Under loom every count sweeps; drop-driven sweeps are turned
//! on for this file's models only (`loom_hooks::sweep_on_drop`), so the
//! other models keep their state space.
//!
//! Run: `CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=3 \
//!       RUSTFLAGS="--cfg loom --cfg crossbeam_loom" cargo test --release -p loom-tests --test drop_sweep`
#![cfg(loom)]

use ctxtree::loom_hooks::sweep_on_drop;
use ctxtree::{Context, Error};
use loom::thread;
use loom_tests::model;

/// L5, N1: a drop-driven sweep of the parent's list races the parent's
/// cancel and the drop of its last users. The dropping thread holds a user
/// of a listed child, and takes one of the parent before it sweeps: the
/// child it unlinks holds the parent by nothing until its release grants
/// it. Fails with `drop_sweep_unheld` (the sweep without the parent's
/// user: the parent's cancel and drops free it under the sweep).
#[test]
fn drop_sweep_vs_parent_cancel_and_drop() {
    sweep_on_drop(true);
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (older, older_handle) = parent.with_cancel();
        // Newer, so first in the list: `older` cannot unlink itself (L7).
        let (newer, newer_handle) = parent.with_cancel();
        older_handle.cancel(); // marked DELETED, still linked
        let dropper = thread::spawn(move || drop((older, older_handle)));
        handle.cancel();
        drop(parent);
        drop(handle);
        assert_eq!(newer.err(), Some(Error::Canceled));
        drop((newer, newer_handle));
        dropper.join().unwrap();
    });
}

/// L5, L7, L4: two children dropped at once, the newer first in the list:
/// its last user's L7 unlink races the older one's drop-driven sweep,
/// which may unlink it too; exactly one of them ends the list's reference
/// (the model checks every node is freed, once).
#[test]
fn drop_sweep_vs_first_unlink() {
    sweep_on_drop(true);
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (older, older_handle) = parent.with_cancel();
        let (newer, newer_handle) = parent.with_cancel();
        older_handle.cancel();
        newer_handle.cancel();
        let dropper = thread::spawn(move || drop((older, older_handle)));
        drop((newer, newer_handle));
        dropper.join().unwrap();
        drop(handle);
        assert!(parent.is_done());
    });
}

//! loom models of the timer's hold on a deadline node (src/time/slot.rs,
//! T6–T8): arming vs the claim, the disarm vs the timer's fire and drop,
//! and the two sides' release of the node's block.
//!
//! Run: `CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=3 \
//!       RUSTFLAGS="--cfg loom --cfg crossbeam_loom" cargo test --release -p loom-tests --test timer`
//!
//! There is no timer thread under loom: `fire_armed` fires every armed
//! entry and `drop_disarmed` does what the driver's compaction does, each
//! on the model thread that calls it. Every model also checks (through
//! `model`) that each node's block was freed by the end.
#![cfg(loom)]

use std::time::{Duration, Instant};

use ctxtree::loom_hooks::{drop_disarmed, fire_armed, live_nodes};
use ctxtree::{Context, Error};
use loom::thread;
use loom_tests::model;

fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

/// T6, N1: a canceled deadline node that the timer still references pins
/// only its own block, never its parent: once every handle is dropped, the
/// parent is freed while the entry is still queued, and the entry's block
/// goes when the driver drops it. The cancel and the parent's drop race.
/// Fails with `timer_keeps_user` (the entry stays a user of the node, so
/// the node keeps its grant on the parent).
#[test]
fn canceled_deadline_does_not_pin_its_parent() {
    model(|| {
        let before = live_nodes();
        let (parent, parent_handle) = Context::background().with_cancel();
        let (timed, timed_handle) = parent.with_deadline(far());
        let canceler = thread::spawn(move || {
            drop(timed);
            drop(timed_handle); // cancels: the disarm
        });
        drop(parent);
        drop(parent_handle);
        canceler.join().unwrap();
        // Only the deadline node's block is left, held by its entry.
        assert_eq!(
            live_nodes(),
            before + 1,
            "the entry pinned more than its block"
        );
        drop_disarmed();
        assert_eq!(live_nodes(), before);
    });
}

/// T4, T6–T8: the timer fires (or drops) the entry while the node's only
/// users cancel and drop it, so the tree side retires the node during the
/// race. Exactly one of the fire and the cancel claims the node; the timer
/// touches the node's fields only with a user; the block is freed once, by
/// whichever side leaves last (the oracles: a use of a freed node or
/// block, a double free, a leak). Also fails with `retire_ignores_timer`.
#[test]
fn fire_vs_cancel_and_drop() {
    model(|| {
        let (timed, timed_handle) = Context::background().with_deadline(far());
        let dropper = thread::spawn(move || {
            drop(timed);
            drop(timed_handle);
        });
        fire_armed();
        dropper.join().unwrap();
    });
}

/// T6: the compaction drops a disarmed entry while the tree side retires
/// the node; the block is freed exactly once, after both let go.
/// Fails with `retire_ignores_timer` (the tree side frees the block while
/// the timer's hold still reads it).
#[test]
fn drop_disarmed_vs_retire() {
    model(|| {
        let (timed, timed_handle) = Context::background().with_deadline(far());
        timed_handle.cancel(); // disarmed: the entry holds the block only
        let dropper = thread::spawn(move || {
            drop(timed);
            drop(timed_handle);
        });
        drop_disarmed();
        dropper.join().unwrap();
    });
}

/// T6: a deadline node derived while its parent is canceled is armed, or
/// claimed first and never armed (`EARLY`); never armed after its claim,
/// which would leave the timer a user of a canceled node that nothing
/// disarms. The model ends by compacting: a disarmed or never-armed node
/// leaves nothing behind, an entry still armed on a canceled node does.
/// Fails with `arm_by_store` (the arm checks, then stores).
#[test]
fn arm_vs_parent_cancel() {
    model(|| {
        let before = live_nodes();
        let (parent, parent_handle) = Context::background().with_cancel();
        let deriver = thread::spawn(move || parent.with_deadline(far()));
        parent_handle.cancel();
        let (timed, timed_handle) = deriver.join().unwrap();
        assert_eq!(timed.err(), Some(Error::Canceled));
        drop((timed, timed_handle, parent_handle));
        drop_disarmed();
        assert_eq!(live_nodes(), before, "an entry kept a canceled node");
    });
}

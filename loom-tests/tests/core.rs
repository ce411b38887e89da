//! loom models of ctxtree's core protocols (docs/design.md, "loom models").
//!
//! Run: `CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=3 \
//!       RUSTFLAGS="--cfg loom --cfg crossbeam_loom" cargo test --release -p loom-tests`
//!
//! Each model names the invariant it checks and the planted bug
//! (`CTXTREE_PLANT=...`, src/plant.rs) that makes it fail.
//!
//! In three of the largest models a spawned thread hands back the clone or
//! handle it used, to be dropped after the join, where dropping it at the
//! thread's end would race nothing the model checks: it is not the last
//! user (a plain decrement; a handle's drop is also a second cancel, which
//! finds its own cancel's subtree done). A last user's drop racing a walk is
//! what `last_user_vs_unlist`, `unlink_first_vs_sweep`,
//! `insert_vs_unlink_first_vs_close` and the timer models check. Every atomic
//! step a thread adds multiplies the interleavings loom explores: the
//! hand-backs cut `three_inserts_vs_cancel` from 3.2 to 1.1 million
//! iterations, `deadline_fire_vs_manual_cancel_vs_parent_cancel` from 1.5 to
//! 0.5 million and `shard_vs_sweep_vs_close` from 206,000 to 78,000 at
//! preemption bound 3. `self_cancel_and_sweep_vs_parent_cancel` keeps its
//! drops on the threads: there the child's handle, dropped while the parent's
//! walk runs, also catches `unlink_with_users` (a user that is not the last
//! unlinking the node) at preemption bound 2, and the model is small enough.
#![cfg(loom)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context as TaskContext, Poll, Waker};

use ctxtree::{Cause, Context, Error};
use loom::thread;
use loom_tests::model;

fn msg(text: &'static str) -> Cause {
    Cause::msg(text)
}

/// L2, N2: a child derived while its parent is being canceled either lands in
/// the list (and the walk cancels it) or sees the list closed and is born
/// canceled; either way it ends up canceled with the parent's cause.
/// Fails with `skip_close` (the closer does not close the list).
#[test]
fn cancel_vs_derive() {
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let p2 = parent.clone();
        let deriver = thread::spawn(move || {
            let (child, child_handle) = p2.with_cancel();
            (child, child_handle)
        });
        let x = msg("x");
        handle.cancel_with_cause(x.clone());
        let (child, _child_handle) = deriver.join().unwrap();
        assert_eq!(child.err(), Some(Error::Canceled));
        assert_eq!(child.cause(), Some(x));
    });
}

/// L2, N2 on the cancel fast path (docs/design.md §6): as
/// `cancel_vs_derive`, but the cancel has no cause and the parent has no
/// children and nobody waiting, so the cancel claims with one CAS and closes
/// the empty list with `close_if_empty`. The derive either lands first (the
/// fast close fails and the general path walks the child) or finds the list
/// closed and is born canceled.
/// Fails with `skip_close_if_empty` (the fast path does not close the list).
#[test]
fn cancel_vs_derive_no_cause() {
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let p2 = parent.clone();
        let deriver = thread::spawn(move || p2.with_cancel());
        handle.cancel();
        let (child, _child_handle) = deriver.join().unwrap();
        assert_eq!(parent.err(), Some(Error::Canceled));
        assert_eq!(
            child.err(),
            Some(Error::Canceled),
            "N2: a child escaped the cancel"
        );
    });
}

/// S1, N3, N4: two cancels of one node with different causes. Exactly one
/// cause wins, every descendant inherits that one, and each cancel call
/// returns only once the whole subtree is canceled (the loser helps).
/// Fails with `skip_help` (the losing cancel returns before the walk ends).
#[test]
fn cancel_vs_cancel_with_causes() {
    model(|| {
        let (node, handle) = Context::background().with_cancel();
        let handle = std::sync::Arc::new(handle);
        let (child, _hc) = node.with_cancel();
        let (grandchild, _hg) = child.with_cancel();
        let (h2, g2) = (handle.clone(), grandchild.clone());
        let other = thread::spawn(move || {
            h2.cancel_with_cause(msg("y"));
            assert!(
                g2.is_done(),
                "N4: cancel returned before the subtree was done"
            );
        });
        handle.cancel_with_cause(msg("x"));
        assert!(
            grandchild.is_done(),
            "N4: cancel returned before the subtree was done"
        );
        other.join().unwrap();
        let winner = node.cause().unwrap();
        assert!(winner.to_string() == "x" || winner.to_string() == "y");
        assert_eq!(child.cause(), Some(winner.clone()));
        assert_eq!(grandchild.cause(), Some(winner));
    });
}

/// L1, L4, L5: a child cancels itself (logical delete) and a new child's
/// insert sweeps it out, while the parent is canceled. Every node ends
/// canceled, the list reference of each child is released exactly once (a
/// double release would be a double free; a missed one leaks), and the
/// sweeper never unlinks a live node (the live child must still be canceled).
/// Fails with `sweep_unmarked` (the sweeper unlinks nodes that are not deleted).
#[test]
fn cancel_vs_child_drop_and_sweep() {
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (doomed, doomed_handle) = parent.with_cancel();
        let (live, _live_handle) = parent.with_cancel();
        let p2 = parent.clone();
        let other = thread::spawn(move || {
            drop(doomed_handle);
            // An insert after the delete: with loom's sweep budget this sweeps.
            let (late, late_handle) = p2.with_cancel();
            (late, late_handle)
        });
        handle.cancel();
        let (late, _late_handle) = other.join().unwrap();
        assert!(doomed.is_done());
        assert!(live.is_done());
        assert_eq!(live.err(), Some(Error::Canceled));
        assert!(late.is_done());
    });
}

/// S3, W2: a thread blocking in `wait` pushes its waiter while another thread
/// cancels; the waiter is either taken by the claim and woken, or its push
/// fails. A missed wake-up shows as a loom deadlock.
/// Fails with `relaxed_push` (the waiter's link is not published).
#[test]
fn cancel_vs_waiter_push() {
    model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let c2 = ctx.clone();
        let waiter = thread::spawn(move || c2.wait());
        handle.cancel();
        assert_eq!(waiter.join().unwrap(), Error::Canceled);
    });
}

/// The same race for an async waiter: `done()` driven by loom's executor.
#[test]
fn cancel_vs_future_wait() {
    model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let done = ctx.done_owned();
        let waiter = thread::spawn(move || loom::future::block_on(done));
        handle.cancel_with_cause(msg("x"));
        assert_eq!(waiter.join().unwrap(), Error::Canceled);
    });
}

/// W1: a `done()` future abandons its waiter (dropped after one pending poll)
/// while the context is canceled. Exactly one of notify and abandon wins; with
/// loom's collection threshold of one, the abandon also runs a collection that
/// races the claim for the stack. Each waiter entry is a loom `Arc`, so a
/// leaked or doubly freed entry fails the model. W5: the abandon drops the
/// entry's waker only after winning W1, so it never races the notifier's
/// wake. Fails with `take_waker_unclaimed` (the abandon takes the waker
/// before its CAS: loom reports a causality violation on the waker's cell).
#[test]
fn waiter_abandon_vs_cancel() {
    model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let c2 = ctx.clone();
        let abandoner = thread::spawn(move || {
            let mut done = pin!(c2.done());
            let polled = done
                .as_mut()
                .poll(&mut TaskContext::from_waker(Waker::noop()));
            drop(done);
            polled
        });
        handle.cancel();
        match abandoner.join().unwrap() {
            Poll::Ready(err) => assert_eq!(err, Error::Canceled),
            Poll::Pending => {}
        }
        assert!(ctx.is_done());
    });
}

/// W2, W4: a collection (triggered by an abandoned future) takes the stack
/// holding a blocked thread's waiter while a cancel runs; the collector must
/// hand the waiter back or wake it itself. A lost waiter is a loom deadlock.
/// Fails with `no_rewake`.
#[test]
fn abandoned_cleanup_vs_push_vs_cancel() {
    model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let blocked = {
            let ctx = ctx.clone();
            thread::spawn(move || ctx.wait())
        };
        let abandoner = {
            let ctx = ctx.clone();
            thread::spawn(move || {
                let mut done = pin!(ctx.done());
                let _ = done
                    .as_mut()
                    .poll(&mut TaskContext::from_waker(Waker::noop()));
            })
        };
        handle.cancel();
        abandoner.join().unwrap();
        assert_eq!(blocked.join().unwrap(), Error::Canceled);
    });
}

/// N2–N5: a grandchild is reached through its parent's list by the walk, even
/// while a great-grandchild is being derived under it. When the root's cancel
/// returns, every level is canceled with the root's cause.
/// Fails with `shallow_walk` (the walk does not descend).
#[test]
fn grandchild_propagation() {
    model(|| {
        let (root, handle) = Context::background().with_cancel();
        let (child, _hc) = root.with_cancel();
        let (grandchild, _hg) = child.with_cancel();
        let g2 = grandchild.clone();
        let deriver = thread::spawn(move || g2.with_cancel());
        let x = msg("x");
        handle.cancel_with_cause(x.clone());
        assert_eq!(child.cause(), Some(x.clone()));
        assert_eq!(grandchild.cause(), Some(x.clone()));
        let (great, _hgg) = deriver.join().unwrap();
        assert_eq!(great.cause(), Some(x));
    });
}

/// L4 and the reclamation argument (docs/design.md §5): two cancels of a
/// parent walk its list at once. The owner finishes the list and releases its
/// reference to a child that nothing else holds while the helper may still be
/// walking. The helper must not reach the child through a pointer it read
/// before pinning. Under loom, the modelled collector (src/sync.rs) frees as
/// early as crossbeam-epoch is allowed to, and a freed node fails an assertion
/// when touched.
/// Fails with `pin_late` (the walk uses the head it read before pinning).
#[test]
fn helper_walk_vs_owner_release() {
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let handle = std::sync::Arc::new(handle);
        let (child, child_handle) = parent.with_cancel();
        // A newer sibling, so `child` is not first and stays linked when it
        // cancels (a first child unlinks itself, L7).
        let (_newer, _newer_handle) = parent.with_cancel();
        drop(child);
        drop(child_handle); // canceled: only the parent's list holds it
        let h2 = handle.clone();
        let other = thread::spawn(move || h2.cancel());
        handle.cancel_with_cause(msg("x"));
        other.join().unwrap();
        assert!(parent.is_done());
    });
}

/// T4, S1, N3: a deadline firing (the driver's `fire`, called directly: there
/// is no timer thread under loom), a manual cancel of the same node and a
/// cancel of its parent all race. Exactly one wins the node; its child agrees.
/// The outcome is one of Go's three: (DeadlineExceeded, T), (Canceled,
/// Canceled) or (Canceled, F).
#[test]
fn deadline_fire_vs_manual_cancel_vs_parent_cancel() {
    model(|| {
        let (parent, parent_handle) = Context::background().with_cancel();
        let far = std::time::Instant::now() + std::time::Duration::from_secs(3600);
        let (timed, handle) = parent.with_deadline_cause(far, msg("T"));
        let (child, _hc) = timed.with_cancel();
        let firer = thread::spawn(ctxtree::loom_hooks::fire_armed);
        // The handle comes back (see the module's note): its drop is a
        // second cancel and a decrement, not part of this race.
        let canceler = thread::spawn(move || {
            handle.cancel();
            handle
        });
        parent_handle.cancel_with_cause(msg("F"));
        firer.join().unwrap();
        let _handle = canceler.join().unwrap();
        let outcome = (timed.err().unwrap(), timed.cause().unwrap().to_string());
        let expected = [
            (Error::DeadlineExceeded, "T".to_string()),
            (Error::Canceled, "context canceled".to_string()),
            (Error::Canceled, "F".to_string()),
        ];
        assert!(expected.contains(&outcome), "{outcome:?}");
        assert_eq!(child.err(), timed.err());
        assert_eq!(child.cause(), timed.cause());
    });
}

/// T1, T3: dropping the handle (disarm) races the deadline firing. Exactly one
/// transition happens, and the armed entry's reference to the node is dropped
/// either way (a leaked entry would keep the waiter below alive: loom
/// reports leaked `Arc`s).
#[test]
fn deadline_disarm_vs_fire() {
    model(|| {
        let far = std::time::Instant::now() + std::time::Duration::from_secs(3600);
        let (timed, handle) = Context::background().with_deadline(far);
        let waiter = {
            let timed = timed.clone();
            thread::spawn(move || timed.wait())
        };
        let firer = thread::spawn(ctxtree::loom_hooks::fire_armed);
        drop(handle);
        firer.join().unwrap();
        let err = waiter.join().unwrap();
        assert_eq!(Some(err), timed.err());
    });
}

/// N2 with T4: a child derived while its parent's deadline fires is either
/// canceled by the fire's walk or born canceled — with DeadlineExceeded and
/// the deadline's cause.
#[test]
fn derive_under_firing_deadline() {
    model(|| {
        let far = std::time::Instant::now() + std::time::Duration::from_secs(3600);
        let (timed, _handle) = Context::background().with_deadline_cause(far, msg("T"));
        let t2 = timed.clone();
        let deriver = thread::spawn(move || t2.with_cancel());
        ctxtree::loom_hooks::fire_armed();
        let (child, _hc) = deriver.join().unwrap();
        assert_eq!(child.err(), Some(Error::DeadlineExceeded));
        assert_eq!(child.cause().unwrap().to_string(), "T");
    });
}

/// W2, W3: a collection (an abandoned future with loom's threshold of one)
/// holds a surviving waiter and is returning it while another waiter is
/// pushed and the node is canceled. If the collector's return CAS fails
/// because of the cancel, it must wake only its own chain: the link it wrote
/// towards the pushed entry is stale (that entry was taken by the claimer).
/// Found by the `concurrent` fuzz target as a use-after-free. Waiter entries
/// are loom `Arc`s, so a double release fails the model.
/// Fails with `stale_link` (the link is not cut before waking).
#[test]
fn collect_repush_vs_push_vs_cancel() {
    model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let waker = Waker::noop();
        // The survivor: pushed before anything races.
        let mut survivor = Box::pin(ctx.done());
        assert!(survivor
            .as_mut()
            .poll(&mut TaskContext::from_waker(waker))
            .is_pending());
        let abandoner = {
            let ctx = ctx.clone();
            thread::spawn(move || {
                let mut done = pin!(ctx.done());
                let _ = done
                    .as_mut()
                    .poll(&mut TaskContext::from_waker(Waker::noop()));
                // dropped here: abandon, then collect (takes the survivor)
            })
        };
        let pusher = {
            let ctx = ctx.clone();
            thread::spawn(move || {
                let mut done = Box::pin(ctx.done_owned());
                let polled = done
                    .as_mut()
                    .poll(&mut TaskContext::from_waker(Waker::noop()));
                (done, polled)
            })
        };
        handle.cancel();
        abandoner.join().unwrap();
        let (mut pushed, _) = pusher.join().unwrap();
        let cx = &mut TaskContext::from_waker(waker);
        assert_eq!(survivor.as_mut().poll(cx), Poll::Ready(Error::Canceled));
        assert_eq!(pushed.as_mut().poll(cx), Poll::Ready(Error::Canceled));
    });
}

/// N4 with L1 and L5: a child canceling itself while its parent is canceled
/// and a sibling insert sweeps the parent's list. The parent's cancel must
/// not return before the grandchild is canceled: the self-canceling child
/// stays linked (unmarked) until its own subtree is done, so the parent's
/// walk finds it and helps.
/// Fails with `mark_before_walk` (the child is marked deleted before its walk,
/// the sweep unlinks it, and the parent's walk returns early).
#[test]
fn self_cancel_and_sweep_vs_parent_cancel() {
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (child, child_handle) = parent.with_cancel();
        let (grandchild, _grandchild_handle) = child.with_cancel();
        // The handle and the clone are dropped on their threads (see the
        // module's note).
        let self_cancel = thread::spawn(move || child_handle.cancel());
        let p2 = parent.clone();
        let inserter = thread::spawn(move || p2.with_cancel());
        handle.cancel();
        assert!(
            grandchild.is_done(),
            "N4: the parent's cancel returned with a grandchild active"
        );
        self_cancel.join().unwrap();
        let (late, _late_handle) = inserter.join().unwrap();
        assert!(late.is_done());
    });
}

/// L4, L6: an insert's sweep unlinks two deleted children that only the list
/// holds while the parent is canceled. If the close comes first in the head
/// word's modification order, the walk may be reading an unlinked child, so
/// the sweeper must release it through the epoch; if the sweeper's RMW after
/// the unlink comes first, the walk cannot reach it and the release is
/// immediate. Under loom a sweep releases one node per batch, so both the RMW
/// between batches and the final one are explored. Every access to a node is
/// checked against its free for happens-before.
/// Fails with `sweep_release_closed` (the sweeper releases at once even when
/// the list was closed under it: loom reports a causality violation).
#[test]
fn sweep_release_vs_close() {
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (first, first_handle) = parent.with_cancel();
        let (second, second_handle) = parent.with_cancel();
        let (live, _live_handle) = parent.with_cancel();
        // The list is live -> second -> first (an insert sweeps, but only
        // deleted nodes); both are now deleted and held by the list alone.
        drop((first, first_handle, second, second_handle));
        let p2 = parent.clone();
        // Inserts at the head and sweeps: unlinks both (never the first node).
        let inserter = thread::spawn(move || p2.with_cancel());
        handle.cancel();
        let (late, _late_handle) = inserter.join().unwrap();
        assert!(live.is_done());
        assert!(late.is_done());
    });
}

/// L7: the last user of a canceled child that is first in its parent's list
/// unlinks it (CAS of the head to the successor in its link, frozen by its
/// `DELETED` mark) and frees it without touching the parent's count (N1).
/// Meanwhile another thread deletes the child's successor, inserts a newer
/// child (whose sweep unlinks and frees that successor) and drops the newer
/// child, which unlinks itself the same way: the head returns to our child
/// (an ABA) with the successor changed. Every access is checked against its
/// free for happens-before, and the parent's cancel walks what is left.
#[test]
fn unlink_first_vs_sweep() {
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (older, older_handle) = parent.with_cancel();
        let (first, first_handle) = parent.with_cancel();
        let p2 = parent.clone();
        let other = thread::spawn(move || {
            // Marked; not the first node, so it waits for a sweep.
            drop((older, older_handle));
            // Inserts at the head and sweeps (every insert sweeps under
            // loom): unlinks `older`, which has no users left.
            let (newer, newer_handle) = p2.with_cancel();
            // The first node again, and its last user: unlinks itself.
            drop((newer, newer_handle));
        });
        // The handle goes last: it cancels, marks, and is the last user.
        drop((first, first_handle));
        other.join().unwrap();
        handle.cancel();
        let (late, _late_handle) = parent.with_cancel();
        assert!(late.is_done());
    });
}

/// N1: a child's last user leaves while its parent's walk unlists it. The
/// walk grants the parent a count for the child *before* clearing the
/// child's `LISTED` bit, so the child's user, once it sees the bit clear,
/// frees the child and releases a grant that is already there. The parent's
/// only other user is the handle the walk runs from, and no other child
/// holds a grant on it.
/// Fails with `grant_after_unlist` (the bit is cleared first: the child's
/// user releases a grant not yet made, the parent is freed under its walk).
#[test]
fn last_user_vs_unlist() {
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (child, child_handle) = parent.with_cancel();
        // Canceled and marked; `child` is its last user, which unlinks it
        // itself (L7) if it drops before the parent's cancel closes the list.
        drop(child_handle);
        drop(parent); // the handle is the parent's last user
        let user = thread::spawn(move || {
            assert!(child.is_done());
            drop(child);
        });
        handle.cancel();
        user.join().unwrap();
    });
}

/// L8: two inserts race on an open list (the loser shards it: the first
/// shard takes over the linked nodes, each thread then inserts into its
/// own shard) while a third thread cancels the parent, and every insert
/// sweeps (loom's budget), so a sweep of the old head can be running when
/// the other insert loses. Every child ends canceled — the walk closes and
/// walks every shard, including the nodes moved into the first — each node
/// is freed exactly once and every access is checked against its free.
/// Fails with `skip_shard` (the walk skips the first shard: `live` stays
/// active) and `shard_while_sweeping` (the list is sharded under a running
/// sweep, whose unlinked node is then freed while the closer of the first
/// shard can still reach it).
#[test]
fn shard_vs_sweep_vs_close() {
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (deleted, deleted_handle) = parent.with_cancel();
        let (live, _live_handle) = parent.with_cancel();
        // The list is live -> deleted; `deleted` is held by the list alone
        // (not first, so its last user leaves it for a sweep).
        drop((deleted, deleted_handle));
        // The clone and the handle come back (see the module's note).
        let p2 = parent.clone();
        let inserter = thread::spawn(move || (p2.with_cancel(), p2));
        let canceler = thread::spawn(move || {
            handle.cancel();
            handle
        });
        let (mine, _mine_handle) = parent.with_cancel();
        let ((theirs, _theirs_handle), _p2) = inserter.join().unwrap();
        let _handle = canceler.join().unwrap();
        assert!(live.is_done(), "L8: a shard was not walked");
        assert!(mine.is_done());
        assert!(theirs.is_done());
    });
}

/// L8, L7: on a sharded parent, a child in one shard is canceled and
/// dropped by the thread that made it — its last user unlinks it from the
/// first place of that thread's shard — while the parent's cancel closes
/// and walks each shard. A node moved into the first shard by the sharding
/// is canceled too, and everything is freed once.
/// Fails with `skip_shard` (the moved node is never canceled).
#[test]
fn sharded_unlink_first_vs_close() {
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (moved, _moved_handle) = parent.with_cancel();
        assert!(ctxtree::loom_hooks::shard_children(&parent));
        // This thread asks for its shard first: the first shard.
        let (here, _here_handle) = parent.with_cancel();
        let p2 = parent.clone();
        let other = thread::spawn(move || {
            // The second shard: first there, so its last user unlinks it.
            let (child, child_handle) = p2.with_cancel();
            drop(child_handle);
            assert!(child.is_done());
            drop(child);
        });
        handle.cancel();
        other.join().unwrap();
        assert!(moved.is_done(), "L8: a shard was not walked");
        assert!(here.is_done());
        let (late, _late_handle) = parent.with_cancel();
        assert!(late.is_done());
    });
}

/// L8, L7: an insert loses its CAS to the last user of the first child
/// unlinking it (L7) and shards the list, while a third thread cancels the
/// parent. Every child ends canceled and every node is freed once.
#[test]
fn insert_vs_unlink_first_vs_close() {
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (live, _live_handle) = parent.with_cancel();
        let (first, first_handle) = parent.with_cancel();
        drop(first_handle);
        // `first` is canceled, marked, first in the list, with one user.
        let dropper = thread::spawn(move || drop(first));
        let canceler = thread::spawn(move || handle.cancel());
        let (mine, _mine_handle) = parent.with_cancel();
        dropper.join().unwrap();
        canceler.join().unwrap();
        assert!(live.is_done());
        assert!(mine.is_done());
    });
}

/// L8: three inserts race (one may lose, shard the list, and another then
/// find it sharded and insert into its own shard); the parent is canceled
/// after the main thread's insert. Every child ends canceled.
#[test]
fn three_inserts_vs_cancel() {
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (live, _live_handle) = parent.with_cancel();
        // The clones come back (see the module's note).
        let (p1, p2) = (parent.clone(), parent.clone());
        let t1 = thread::spawn(move || (p1.with_cancel(), p1));
        let t2 = thread::spawn(move || (p2.with_cancel(), p2));
        let (mine, _mine_handle) = parent.with_cancel();
        handle.cancel();
        let ((a, _a_handle), _p1) = t1.join().unwrap();
        let ((b, _b_handle), _p2) = t2.join().unwrap();
        assert!(live.is_done());
        assert!(mine.is_done());
        assert!(a.is_done());
        assert!(b.is_done());
    });
}

/// L5, L8, reclamation: an insert into one shard also sweeps the other
/// shard (each in turn), whose first node is deleted and held by the list
/// alone — the sweep unlinks it from the head — while the parent's cancel
/// closes that shard. Every child ends canceled and every node is freed
/// once; the sweeper pins before it takes `SWEEPING`, so the closer's
/// epoch release of that node waits for it.
/// Fails with `sweep_pin_late` (the sweeper pins after taking `SWEEPING`:
/// the closer's release runs in between and the sweep reads a freed node:
/// "use after free of a ctxtree node").
#[test]
fn cursor_sweep_vs_close() {
    model(|| {
        let (parent, handle) = Context::background().with_cancel();
        assert!(ctxtree::loom_hooks::shard_children(&parent));
        // Each insert into a shard also sweeps the block's next shard in
        // turn (every insert sweeps under loom): two inserts here, so the
        // other thread's extra sweep is this thread's shard (the first).
        let (older, _older_handle) = parent.with_cancel();
        // Then, first in that shard: a child whose last user is a grant
        // from its own child, so the freeing loop leaves it listed, marked
        // and first, held by the list alone (L7 does not run there).
        let (stranded, stranded_handle) = parent.with_cancel();
        let (grandchild, grandchild_handle) = stranded.with_cancel();
        drop(stranded_handle); // cancels both; the grandchild grants `stranded`
        drop(stranded);
        drop((grandchild, grandchild_handle));
        let p2 = parent.clone();
        // The second shard: its insert sweeps it, then the first shard.
        let inserter = thread::spawn(move || p2.with_cancel());
        handle.cancel();
        let (late, _late_handle) = inserter.join().unwrap();
        assert!(late.is_done());
        assert!(older.is_done());
    });
}

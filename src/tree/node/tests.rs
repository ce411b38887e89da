//! Unit tests of the node: sizes, panicking causes, shards, chains.

use super::layout::{Kind, Node, PackedShape, Root, Shape, TimedNode};

use crate::time::deadline::Deadline;

#[test]
fn a_cancel_context_is_one_64_byte_malloc_chunk() {
    // One allocation of this size per `with_cancel` (docs/design.md §1):
    // glibc adds an 8-byte header and rounds to 16, so 56 bytes is the
    // most that fits a 64-byte chunk.
    let size = std::mem::size_of::<Node>();
    assert!(size <= 56, "Node is {size} bytes");
    // A deadline node adds its 32-byte timer slot: 88 bytes, still one
    // 96-byte chunk.
    let timed = std::mem::size_of::<TimedNode>();
    assert!(timed <= 88, "TimedNode is {timed} bytes");
}

/// C1/C2 (`cache.rs`): a node whose cause panics when dropped
/// still returns its block to the cache, as a `Box` would free it while
/// unwinding (LeakSanitizer runs with the cache off and cannot see it).
#[test]
fn a_node_whose_cause_panics_on_drop_returns_its_block() {
    #[derive(Debug)]
    struct PanicsOnDrop;
    impl std::fmt::Display for PanicsOnDrop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("panics on drop")
        }
    }
    impl std::error::Error for PanicsOnDrop {}
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                panic!("cause dropped");
            }
        }
    }
    // On a fresh thread: its cache starts empty and no other test
    // touches it.
    std::thread::spawn(|| {
        let (ctx, handle) = crate::Context::background().with_cancel();
        handle.cancel_with_cause(PanicsOnDrop);
        drop(handle);
        let before = super::alloc::NODES.cached();
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(ctx)));
        assert!(dropped.is_err(), "the cause's panic reaches the dropper");
        if super::cache::ENABLED {
            assert_eq!(super::alloc::NODES.cached(), before + 1, "block leaked");
        }
    })
    .join()
    .unwrap();
}

/// L8: a sharded parent's cancel reaches the children of every shard —
/// the nodes the first shard took over and those each thread inserted
/// into its own — and children that leave on their own are unlinked or
/// swept from their shard.
#[test]
fn a_sharded_parent_cancels_every_shard() {
    let (parent, handle) = crate::Context::background().with_cancel();
    let (before, _before_handle) = parent.with_cancel();
    let node = parent.node().expect("cancelable");
    assert!(node.shard_children());
    assert!(!node.shard_children(), "sharded once");
    let threads = crate::tree::children::shards::shard_count() + 1;
    let per_thread = if cfg!(miri) { 20 } else { 500 };
    let kept: Vec<_> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut kept = Vec::new();
                    for i in 0..per_thread {
                        let pair = parent.with_cancel();
                        // Every other child leaves on its own: canceled
                        // and dropped at once (unlinked from the head of
                        // this thread's shard), or later (swept).
                        if i % 2 == 0 {
                            kept.push(pair);
                        } else if i % 3 == 0 {
                            drop(pair);
                        } else {
                            pair.1.cancel();
                            kept.push(pair);
                        }
                    }
                    kept
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert!(!before.is_done() && kept.iter().any(|(c, _)| !c.is_done()));
    handle.cancel();
    assert!(before.is_done(), "the node the first shard took over");
    assert!(kept.iter().all(|(c, _)| c.is_done()));
    assert!(node.children.is_empty() || !node.children.is_sharded());
}

/// L5 per shard (L8): deleted children in a shard that no thread inserts
/// into any more — made by a thread that has ended, canceled and
/// dropped by another, so their last users' L7 tries the wrong shard —
/// are swept: by the drops themselves (counted on the dropping thread's
/// shard, whose sweeps look at the other shards in turn) down to at most
/// `MIN_SWEEP` per shard, and by the other shards' inserts, each shard in
/// turn; the deleted first node of a shard does not stop its sweeps.
#[test]
fn a_shard_nobody_inserts_into_is_swept() {
    let (parent, handle) = crate::Context::background().with_cancel();
    let node = parent.node().expect("cancelable");
    assert!(node.shard_children());
    let made = if cfg!(miri) { 100 } else { 1_000 };
    let children: Vec<_> = std::thread::scope(|s| {
        s.spawn(|| (0..made).map(|_| parent.with_cancel()).collect::<Vec<_>>())
            .join()
            .unwrap()
    });
    drop(children);
    let shards = crate::tree::children::shards::shard_count();
    let stranded = node.children.linked_counts::<Node>();
    assert!(
        stranded.iter().sum::<usize>() <= 64 * shards,
        "drops left more than MIN_SWEEP per shard: {stranded:?}"
    );
    // Another thread's churn (each child dropped at once, so it leaves
    // its shard by L7): each sweep of its shard (every 64 inserts) looks
    // at the next other shard and sweeps it if it had no insert since.
    let churn = 65 * 2 * shards;
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..churn {
                drop(parent.with_cancel());
            }
        });
    });
    let after = node.children.linked_counts::<Node>();
    assert_eq!(after.iter().sum::<usize>(), 0, "{stranded:?} -> {after:?}");
    handle.cancel();
}

/// L8: inserts from several threads into one parent's list shard it
/// (a CAS lost to another insert or unlink does: one loss in unit-test
/// builds, two otherwise), and churn on the sharded list returns every
/// node.
#[test]
#[cfg_attr(miri, ignore = "needs real contention; the loom models cover L8")]
fn contended_inserts_shard_the_list() {
    let (parent, handle) = crate::Context::background().with_cancel();
    let node = parent.node().expect("cancelable");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while !node.children.is_sharded() && std::time::Instant::now() < deadline {
                    for _ in 0..1_000 {
                        drop(parent.with_cancel());
                    }
                }
            });
        }
    });
    assert!(node.children.is_sharded(), "no lost insert race in 60 s");
    handle.cancel();
}

#[test]
fn packed_shapes_round_trip() {
    let deadlines = [
        Deadline::from_raw(0),
        Deadline::from_raw(12_345),
        Deadline::NEVER,
    ];
    for deadline in deadlines {
        for root in [Root::Background, Root::Todo] {
            for (kind, virtual_time) in [Kind::Cancel, Kind::Deadline]
                .into_iter()
                .flat_map(|k| [(k, false), (k, true)])
            {
                let packed = PackedShape::new(Shape {
                    root,
                    kind,
                    deadline,
                    virtual_time,
                });
                assert_eq!(packed.deadline(), deadline);
                assert_eq!(packed.root(), root);
                assert_eq!(packed.kind(), kind);
                assert_eq!(packed.virtual_time(), virtual_time);
                assert_eq!(packed.cancel_child().virtual_time(), virtual_time);
            }
        }
    }
}

#[test]
fn release_frees_a_deep_chain_iteratively() {
    let depth = if cfg!(miri) { 1_000 } else { 200_000 };
    let run = move || {
        let (mut ctx, mut handles) = (crate::Context::background(), Vec::new());
        for _ in 0..depth {
            let (child, handle) = ctx.with_cancel();
            handles.push(handle);
            ctx = child;
        }
        // Cancel at the root (one iterative walk of the whole chain), then
        // drop the leaf and the handles: whichever reference goes last
        // frees the chain upwards in `release`'s loop, never recursing.
        handles[0].cancel();
        drop(ctx);
        while let Some(handle) = handles.pop() {
            drop(handle);
        }
    };
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(run)
        .unwrap()
        .join()
        .unwrap();
}

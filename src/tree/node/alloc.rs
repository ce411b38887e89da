//! Where a node's memory comes from and goes back to: the per-thread
//! block cache's two classes ([`cache`](super::cache), C1–C4) or the
//! global allocator.

#[cfg(not(loom))]
use std::alloc::Layout;

#[cfg(not(loom))]
use super::cache::{Cache, Class, Guard};
#[cfg(loom)]
use super::layout::LIVE_NODES;
use super::layout::{Kind, Node, TimedNode, TIMED_LAYOUT};
use crate::error::Cause;
use crate::time::slot::TimerSlot;

/// The classes' layouts, named once: each class and its thread-local
/// stacks (which free their blocks at thread exit) use the same one.
#[cfg(not(loom))]
const NODE_LAYOUT: Layout = Layout::new::<Node>();

#[cfg(not(loom))]
std::thread_local! {
    static NODE_CACHES: Cache = const { Cache::new(NODE_LAYOUT) };
    static TIMED_CACHES: Cache = const { Cache::new(TIMED_LAYOUT) };
    static NODE_GUARD: Guard = const { Guard::new(&NODE_CACHES) };
    static TIMED_GUARD: Guard = const { Guard::new(&TIMED_CACHES) };
}

/// Plain nodes (`with_cancel` children). 1024 blocks: a request that
/// derives a thousand contexts, cancels and drops them, hands the next
/// request its memory back (a 1000-deep chain frees 1000 nodes in one
/// burst; with 64 blocks, 94 % of them went through glibc's `_int_free`).
#[cfg(not(loom))]
pub(super) static NODES: Class = Class::new(NODE_LAYOUT, 1024, &NODE_CACHES, &NODE_GUARD);

/// Deadline nodes (`TimedNode`). Fewer: a request sets a few deadlines,
/// and the timer's own collection frees them in batches of 64 (T5).
#[cfg(not(loom))]
pub(super) static TIMED: Class = Class::new(TIMED_LAYOUT, 64, &TIMED_CACHES, &TIMED_GUARD);

/// Allocates the node `make` builds, of kind `kind`; a `Kind::Deadline`
/// node gets a timer slot holding the cause to record if its deadline
/// fires. The node is built after its block is taken, so it is written
/// straight into the block: built on the stack first, its copy read back
/// 16 bytes at a time what had just been written 8 at a time, and the
/// store-forwarding stalls were a tenth of a derive + cancel + drop.
#[inline(always)]
pub(super) fn alloc_node(
    kind: Kind,
    deadline_cause: Option<Cause>,
    make: impl FnOnce() -> Node,
) -> *const Node {
    #[cfg(loom)]
    LIVE_NODES.with(|n| n.set(n.get() + 1));
    stat!(Derived);
    if kind == Kind::Deadline {
        return alloc_timed(make, deadline_cause);
    }
    debug_assert!(deadline_cause.is_none());
    let block = block(
        #[cfg(not(loom))]
        &NODES,
        std::alloc::Layout::new::<Node>(),
    ) as *mut Node;
    // SAFETY: a block of `Node`'s layout, holding no value (C1, or fresh).
    unsafe { block.write(make()) };
    block
}

/// [`alloc`](alloc_node) for a deadline node: a block of
/// [`TIMED_LAYOUT`], the node and its timer slot written in place.
#[inline(never)]
pub(super) fn alloc_timed(
    make: impl FnOnce() -> Node,
    deadline_cause: Option<Cause>,
) -> *const Node {
    let block = block(
        #[cfg(not(loom))]
        &TIMED,
        TIMED_LAYOUT,
    ) as *mut TimedNode;
    // SAFETY: a block of `TimedNode`'s layout holding no value (C1, or
    // fresh): each field written once, in place.
    unsafe {
        std::ptr::addr_of_mut!((*block).node).write(make());
        std::ptr::addr_of_mut!((*block).timer).write(TimerSlot::new(deadline_cause));
    }
    block as *const Node
}

/// A block for a node of `layout`: from the node cache's `class` when
/// the cache is on, else from the global allocator, whose blocks `free`
/// hands back as the `Box` of the node's type (`Box` allocates with the
/// type's layout, which `layout` is).
#[inline(always)]
pub(super) fn block(
    #[cfg(not(loom))] class: &'static Class,
    layout: std::alloc::Layout,
) -> *mut u8 {
    #[cfg(not(loom))]
    if super::cache::ENABLED {
        return class.alloc_block();
    }
    // SAFETY: node layouts have a non-zero size.
    let block = unsafe { std::alloc::alloc(layout) };
    if block.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    block
}

/// Returns a block to its node-cache class when dropped (also on unwind).
#[cfg(not(loom))]
pub(super) struct ReturnBlock(pub(super) &'static Class, pub(super) *mut u8);

#[cfg(not(loom))]
impl Drop for ReturnBlock {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: the value in the block was dropped (or its drop unwound);
        // nobody can reach the block (the creator's contract).
        unsafe { self.0.free_block(self.1) };
    }
}

/// Returns a deadline node's block, from the cache's `TIMED` class or the
/// global allocator as `block` took it, when dropped.
#[cfg(not(loom))]
pub(super) struct ReturnTimedBlock(pub(super) *mut u8);

#[cfg(not(loom))]
impl Drop for ReturnTimedBlock {
    fn drop(&mut self) {
        if super::cache::ENABLED {
            drop(ReturnBlock(&TIMED, self.0));
        } else {
            // SAFETY: allocated with `TIMED_LAYOUT` by `block`;
            // nobody can reach it (the creator's contract).
            unsafe { std::alloc::dealloc(self.0, TIMED_LAYOUT) };
        }
    }
}

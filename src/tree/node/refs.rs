//! Counted references to a node (N1): `NodeRef`, the users and the
//! `LISTED` bit in `refs`, the last user's unlink (L7), and the iterative
//! free up the chain (N5), including the retiring of deadline nodes (T7).

use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::process::abort;
use std::ptr::NonNull;

#[cfg(not(loom))]
use super::alloc::{ReturnBlock, ReturnTimedBlock, NODES};
#[cfg(loom)]
use super::layout::LIVE_NODES;
use super::layout::{timer_slot_of, Kind, Node, TimedNode};
use crate::plant::planted;
use crate::sync::Ordering;
use crate::tree::children::{ChildLink, Full, Sweep};
use crate::tree::collector;

/// A counted pointer to a [`Node`] (N1).
pub(crate) struct NodeRef(pub(super) NonNull<Node>);

// SAFETY: every field of `Node` is either atomic, immutable after
// construction, or accessed under the protocols of its module; the node is
// designed to be shared and freed from any thread.
unsafe impl Send for NodeRef {}
// SAFETY: as above.
unsafe impl Sync for NodeRef {}

impl NodeRef {
    /// Gives up this count as a raw pointer (for the timer's queues).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn into_raw(self) -> *const Node {
        ManuallyDrop::new(self).as_ptr()
    }

    /// Takes back a count given up by [`NodeRef::into_raw`].
    ///
    /// # Safety
    /// `ptr` came from `into_raw` and that count is not used again.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) unsafe fn from_raw(ptr: *const Node) -> NodeRef {
        // SAFETY: forwarded from the caller.
        unsafe { NodeRef::adopt(ptr) }
    }

    /// Adopts one of the counts of `ptr`.
    ///
    /// # Safety
    /// `ptr` is a live node and the caller owns one count that it hands over.
    pub(super) unsafe fn adopt(ptr: *const Node) -> NodeRef {
        // SAFETY: `Box::into_raw` never returns null.
        NodeRef(unsafe { NonNull::new_unchecked(ptr as *mut Node) })
    }

    pub(crate) fn as_ptr(&self) -> *const Node {
        self.0.as_ptr()
    }

    pub(crate) fn ptr_eq(a: &NodeRef, b: &NodeRef) -> bool {
        a.0 == b.0
    }
}

impl Deref for NodeRef {
    type Target = Node;

    #[inline]
    fn deref(&self) -> &Node {
        // SAFETY: we own a count, so the node is alive (N1).
        unsafe { self.0.as_ref() }
    }
}

impl Clone for NodeRef {
    fn clone(&self) -> NodeRef {
        self.grant(1);
        NodeRef(self.0)
    }
}

impl Drop for NodeRef {
    fn drop(&mut self) {
        // SAFETY: we own one user.
        unsafe { release_user(self.0.as_ptr()) }
    }
}

/// One user (N1): a `Context`, a `CancelHandle` or a child's grant.
pub(super) const USER: u32 = 2;
/// The hold of the parent's list while the node is linked (N1, L4).
pub(super) const LISTED: u32 = 1;

impl Node {
    /// Adds `n` users. Relaxed, as `Arc::clone`: the caller holds a user or
    /// otherwise keeps the node alive (N1). Past `i32::MAX` it aborts, as
    /// `Arc` does past `isize::MAX`.
    pub(super) fn grant(&self, n: u32) {
        if self.refs.fetch_add(USER * n, Ordering::Relaxed) > i32::MAX as u32 {
            abort();
        }
    }
}

/// Drops one user of `ptr` (N1). The last user of a node that its parent's
/// list still holds unlinks it if it is first in that open list and frees
/// it at once (L7); otherwise see [`release_users`].
///
/// The plain-list case of L7 is inlined here with no call but the tail
/// call that frees, so the commonest drop saves no register; everything
/// else (a sharded list, other users, a node not first) starts over in
/// [`release_user_rest`], which sees the same words: the fast path changed
/// nothing unless its CAS succeeded.
///
/// # Safety
/// The caller owns one user of `ptr`.
#[inline]
pub(super) unsafe fn release_user(ptr: *const Node) {
    // SAFETY: we own a user, so the node is alive.
    let node = unsafe { &*ptr };
    node.assert_live();
    let refs = node.refs.load(Ordering::Acquire);
    if refs == USER | LISTED {
        if let Some(parent) = node.parent.get() {
            let link = node.link.word();
            if ChildLink::is_deleted(link)
                // SAFETY: as in `release_user_rest`: listed, so the parent
                // is alive (N1), and `link` was read after the mark.
                && unsafe { (*parent.as_ptr()).children.unlink_first_plain(ptr, link) }
            {
                // SAFETY: as in `release_user_rest`.
                return unsafe { unlinked_by_last_user(ptr, parent.as_ptr()) };
            }
        }
    } else if !planted!("unlink_with_users") {
        // Other users, or not listed, when loaded: L5 counts nothing (as
        // `note_left_linked` would find), so `release_loop`'s decrement.
        let before = node.refs.fetch_sub(USER, Ordering::Release);
        if before != USER {
            return; // other users, or still listed: its list frees it
        }
        // SAFETY: that decrement took the last user of an unlisted node.
        return unsafe { released_last(ptr) };
    }
    // SAFETY: forwarded: the caller's user of `ptr` is handed on to the
    // full path.
    unsafe { release_user_rest(ptr) }
}

/// The end of [`release_user`]'s decrement when it took the last user of a
/// node no list holds: `release_loop`'s free, then its parent's grant.
///
/// # Safety
/// The caller's decrement left `ptr` with no user, and it is not listed.
#[inline(never)]
unsafe fn released_last(ptr: *const Node) {
    // SAFETY: alive until freed below; Acquire as in `release_loop`.
    unsafe { (*ptr).refs.load(Ordering::Acquire) };
    // SAFETY: as above: not listed and it had users, so it holds a grant.
    let parent = unsafe { (*ptr).parent }.get();
    // SAFETY: no user left and not listed: nobody else can reach it.
    unsafe { free(ptr) };
    if let Some(parent) = parent {
        // SAFETY: the freed node's grant is ours now.
        unsafe { release_loop(parent.as_ptr(), 1, true) }
    }
}

/// [`release_user`] in full.
///
/// # Safety
/// The caller owns one user of `ptr`.
#[inline(never)]
unsafe fn release_user_rest(ptr: *const Node) {
    // SAFETY: we own a user, so the node is alive.
    let node = unsafe { &*ptr };
    node.assert_live();
    // Acquire: if we free the node, the other users' Release decrements
    // happen before. While the count shows us alone, nothing can add to it:
    // users are cloned from users, and grants come from passes over this
    // node's own children — by a sweeper, which holds a user of the node,
    // or by a walker that closed its list, which it reached through its
    // parent's closed list, where the CAS below fails. Only `LISTED` can
    // change (a sweeper or closer unlisting it; then the CAS fails too).
    let refs = node.refs.load(Ordering::Acquire);
    let last_and_listed = if planted!("unlink_with_users") {
        refs & LISTED != 0
    } else {
        refs == USER | LISTED
    };
    if last_and_listed {
        if let Some(parent) = node.parent.get() {
            let link = node.link.word();
            // SAFETY: the node is listed, so its parent is alive (N1); it is
            // alive itself (our user), and its link was read after its
            // `DELETED` mark (its cancel happened before its last user left).
            if ChildLink::is_deleted(link)
                // SAFETY: as just said.
                && unsafe { (*parent.as_ptr()).children.unlink_first(ptr, link) }
            {
                // SAFETY: as just said.
                return unsafe { unlinked_by_last_user(ptr, parent.as_ptr()) };
            }
        }
    }
    // SAFETY: forwarded.
    unsafe { release_loop(ptr, 1, true) }
}

/// The end of L7 once the last user's CAS unlinked `ptr` from `parent`'s
/// list: no thread can reach it through the list, and unless a dump's
/// visit granted itself a user before the unlink (L9: the CAS read the head
/// after that visit's `SWEEPING` release, so this load sees its grant), we
/// are the last user; it holds no grant (it was listed).
///
/// # Safety
/// The caller owns one user of `ptr` and unlinked it by L7's CAS from the
/// list of `parent`, which is alive (N1).
#[inline(always)]
unsafe fn unlinked_by_last_user(ptr: *const Node, parent: *const Node) {
    // SAFETY: our user keeps it alive.
    let refs = unsafe { (*ptr).refs.load(Ordering::Acquire) };
    if planted!("unlink_ignores_visit") || planted!("unlink_with_users") || refs == USER | LISTED {
        // SAFETY: unlinked by the caller's CAS, and no other user: nobody
        // can reach it any more.
        unsafe { free(ptr) };
    } else {
        // SAFETY: our user, unlinked by L7's CAS from the parent's list;
        // the parent is alive (N1).
        unsafe { unlinked_while_visited(ptr, &*parent) };
    }
}

/// The end of L7 for a node its last user unlinked while a dump's visit
/// held a user of its own (L9): the list's reference ends as a pass ends it
/// (N1) — a grant on the parent first, then `LISTED` — then our user goes,
/// freeing the node if it is the last by then.
///
/// # Safety
/// The caller owns one user of `ptr`, which it unlinked from `parent`'s
/// list by L7's CAS, and keeps `parent` alive.
#[cold]
unsafe fn unlinked_while_visited(ptr: *const Node, parent: &Node) {
    parent.grant(1);
    // SAFETY: our user keeps it alive.
    unsafe { (*ptr).refs.fetch_sub(LISTED, Ordering::AcqRel) };
    // SAFETY: our user; the node is no longer listed and holds the grant.
    unsafe { release_loop(ptr, 1, false) }
}

/// Drops `n` users of `ptr` in one decrement. A node left with no user and
/// not listed is freed, and its grant on its parent released, in a loop up
/// the chain (N1, N5); one still listed is left to its list.
///
/// # Safety
/// The caller owns `n` users of `ptr`.
pub(super) unsafe fn release_users(ptr: *const Node, n: u32) {
    // SAFETY: forwarded.
    unsafe { release_loop(ptr, n, false) }
}

/// [`release_users`]; with `count_drops`, a node whose last users leave
/// while it stays linked and `DELETED` is counted on its parent's list
/// first (L5). Only the drop of a `NodeRef` counts: the sweep a count may
/// run releases users itself, without counting, so nothing recurses.
///
/// # Safety
/// As for [`release_users`].
#[inline(always)]
unsafe fn release_loop(mut ptr: *const Node, mut n: u32, count_drops: bool) {
    loop {
        // SAFETY: we own a user, so the node is alive.
        unsafe { (*ptr).assert_live() };
        if count_drops {
            // SAFETY: as above.
            note_left_linked(unsafe { &*ptr }, n);
        }
        // SAFETY: as above.
        let before = unsafe { (*ptr).refs.fetch_sub(USER * n, Ordering::Release) };
        if before != USER * n {
            return; // other users, or still listed: its list frees it
        }
        // Acquire the whole release sequence of decrements before freeing,
        // as `Arc` does. An Acquire load rather than `fence(Acquire)`: the
        // same guarantee, and ThreadSanitizer understands it (it ignores
        // standalone fences and reported every free as a race).
        // SAFETY: the node is alive until we free it below.
        unsafe { (*ptr).refs.load(Ordering::Acquire) };
        // Not listed and it had users: it holds a grant on its parent.
        // SAFETY: as above.
        let parent = unsafe { (*ptr).parent }.get();
        // SAFETY: no user left and not listed: nobody else can reach it.
        unsafe { free(ptr) };
        match parent {
            // Continue with the parent's grant instead of recursing into it.
            Some(parent) => {
                ptr = parent.as_ptr();
                n = 1;
            }
            None => return,
        }
    }
}

/// Counts `node` on its parent's list (L5) if the `n` users its caller
/// holds are its last and it stays linked and `DELETED`: a sweep is what
/// will free it. Counted before the users go: a listed child with users
/// keeps its parent alive (N1), through the sweep the count may run.
#[inline]
fn note_left_linked(node: &Node, n: u32) {
    if node.refs.load(Ordering::Relaxed) != (USER * n) | LISTED {
        return;
    }
    let Some(parent) = node.parent.get() else {
        return;
    };
    if !ChildLink::is_deleted(node.link.word()) {
        return;
    }
    // SAFETY: the node is listed or, unlisted since the load, holds a
    // grant on its parent; either keeps the parent alive while we hold
    // the node's users (N1).
    let parent = unsafe { parent.as_ref() };
    let swept = parent
        .children
        .note_dropped::<Node, _>(&parent.sweep_budget, || NodeUser::take(parent));
    if swept == Sweep::HandOff {
        sweep_later(parent);
    }
}

/// Queues a full sweep of `node`'s lists on the collector thread (L10),
/// holding a user of `node` until it ends. The caller keeps `node` alive:
/// it holds a user of it, or of a child listed in it.
#[cold]
#[inline(never)]
pub(super) fn sweep_later(node: &Node) {
    // Planted bug: the job names the node without holding it.
    let held = (!planted!("sweep_job_unheld")).then(|| NodeUser::take(node));
    let key = node as *const Node as usize;
    let node = NodePtr(node);
    collector::run_once(
        key,
        Box::new(move || {
            // SAFETY: `held` keeps the node alive (L10).
            let node = unsafe { node.get() };
            node.assert_live();
            match node.children.sweep_in_full::<Node>(&node.sweep_budget) {
                Full::Done => {}
                // Queued anew (K2: this job's key left the queue as it
                // started), behind the other jobs; a busy list's sweeper
                // gets a moment to end first.
                Full::Again => sweep_later(node),
                Full::Busy => {
                    crate::sync::yield_now();
                    sweep_later(node);
                }
            }
            drop(held);
        }),
    );
}

/// A node's address in a collector job, beside the user that keeps it.
pub(super) struct NodePtr(pub(super) *const Node);

// SAFETY: only an address; the job that carries it holds a user of the
// node (or is a planted bug), and nodes are shared across threads.
unsafe impl Send for NodePtr {}

impl NodePtr {
    /// # Safety
    /// The caller holds the node alive.
    pub(super) unsafe fn get<'a>(&self) -> &'a Node {
        // SAFETY: the caller's contract.
        unsafe { &*self.0 }
    }
}

/// A user of a node taken for work on its lists: the sweep of its list
/// that a drop runs (L5), or a job queued on the collector (L10). Granted
/// while a user of the node or a listed child with users keeps the node
/// alive. In the second case the node cannot be its last user's L7 case
/// (its list is open, or closed and not yet released, so the count never
/// shows its last user alone), so the grant does not break L7's argument.
pub(super) struct NodeUser(*const Node);

// SAFETY: a user of a node, which is shared and freed from any thread
// (see `NodeRef`).
unsafe impl Send for NodeUser {}

impl NodeUser {
    pub(super) fn take(node: &Node) -> NodeUser {
        node.grant(1);
        NodeUser(node)
    }
}

impl Drop for NodeUser {
    fn drop(&mut self) {
        // SAFETY: the user granted in `take`.
        unsafe { release_users(self.0, 1) }
    }
}

/// Removes a named node's entry from the names table (out of line: few
/// nodes have one).
#[cold]
fn unname(node: &Node) {
    super::names::remove(node);
}

/// Frees a node (its memory, its cause count). Does not touch its parent.
/// A deadline node whose block the timer still holds (T7) is retired
/// instead: its fields are dropped now, its block when the timer lets go.
///
/// # Safety
/// Nobody else can reach the node: no user left, and not listed.
#[inline]
pub(super) unsafe fn free(ptr: *const Node) {
    // SAFETY: nobody else can reach it (the caller's contract).
    if unsafe { (*ptr).parent.named() } {
        // Before the block can hold another node.
        // SAFETY: as above.
        unname(unsafe { &*ptr });
    }
    // SAFETY: nobody else can reach it (the caller's contract).
    if unsafe { (*ptr).kind() } == Kind::Deadline {
        // SAFETY: as above.
        return unsafe { retire_timed(ptr) };
    }
    #[cfg(not(loom))]
    {
        // SAFETY (both arms): a plain node's block, from the node cache's
        // `NODES` class when it is on, else an allocation of `Node`'s
        // layout as `Box` makes (`alloc::alloc_node`); nobody else can reach
        // it, so it is dropped once.
        if super::cache::ENABLED {
            // Hand the memory back to the cache (C1) also if the drop
            // unwinds (a cause whose `drop` panics), as a `Box` would.
            let _block = ReturnBlock(&NODES, ptr as *mut u8);
            // SAFETY: a `NODES` block holding a `Node` nobody else can reach.
            unsafe { std::ptr::drop_in_place(ptr as *mut Node) };
        } else {
            // SAFETY: an allocation of `Node`'s layout nobody else can reach.
            drop(unsafe { Box::from_raw(ptr as *mut Node) });
        }
    }
    // SAFETY: as above; under loom the memory is kept (see `freed`), its
    // resources are released by `dispose` and later accesses assert.
    #[cfg(loom)]
    unsafe {
        (*(ptr as *mut Node)).dispose()
    };
}

/// [`free`] for a deadline node: drops the node's own fields, then clears
/// the tree side's hold on the block (T7) and frees the block unless the
/// timer still holds it — also if the drop unwinds.
///
/// # Safety
/// As for [`free`], and `ptr` is a deadline node.
pub(super) unsafe fn retire_timed(ptr: *const Node) {
    struct Retire(*const Node);
    impl Drop for Retire {
        fn drop(&mut self) {
            // SAFETY: a deadline node's slot lives as long as its block.
            if unsafe { timer_slot_of(self.0) }.retire() {
                // SAFETY: neither side holds the block any more (T7).
                unsafe { free_timed_block(self.0) };
            }
        }
    }
    let _retire = Retire(ptr);
    // SAFETY: nobody else can reach the node's fields (the caller's
    // contract; the timer reads only the slot, T8).
    #[cfg(not(loom))]
    unsafe {
        std::ptr::drop_in_place(ptr as *mut Node)
    };
    // SAFETY: as above; under loom the memory is kept (see `freed`).
    #[cfg(loom)]
    unsafe {
        (*(ptr as *mut Node)).dispose()
    };
}

/// Frees a deadline node's block after its node was retired: drops the
/// timer slot and returns the memory (T7).
///
/// # Safety
/// The node was retired (its fields dropped) and neither the tree side
/// nor the timer holds the block any more.
pub(crate) unsafe fn free_timed_block(ptr: *const Node) {
    let block = ptr as *mut TimedNode;
    // SAFETY: the block is not freed yet (the caller's contract).
    unsafe { timer_slot_of(ptr) }.mark_block_freed();
    #[cfg(not(loom))]
    {
        let _block = ReturnTimedBlock(block as *mut u8);
        // SAFETY: the slot is dropped once, here (the caller's contract).
        unsafe { std::ptr::drop_in_place(std::ptr::addr_of_mut!((*block).timer)) };
    }
    #[cfg(loom)]
    {
        LIVE_NODES.with(|n| n.set(n.get() - 1));
        // SAFETY: as above; loom keeps the memory.
        unsafe { std::ptr::drop_in_place(std::ptr::addr_of_mut!((*block).timer)) };
    }
}

impl Node {
    /// Under loom, what freeing does, minus the deallocation (see `freed`).
    #[cfg(loom)]
    fn dispose(&mut self) {
        // A deadline node's block is counted until it is freed (T7).
        if self.kind() != Kind::Deadline {
            LIVE_NODES.with(|n| n.set(n.get() - 1));
        }
        self.alive.with_mut(|_| ());
        self.freed.store(true, std::sync::atomic::Ordering::Relaxed);
        self.children.dispose();
        self.free_resources();
    }
}

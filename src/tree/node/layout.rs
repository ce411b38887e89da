//! The node's memory: its fields, the immutable shape word (deadline,
//! root, kind), the deadline node's block (`TimedNode`: node + timer
//! slot), and the accessors every other file reads it through.

use std::ptr::NonNull;

use crate::error::{Cause, Error};
use crate::sync::{AtomicU32, AtomicUsize, Ordering};
use crate::time::deadline::{Deadline, DEADLINE_BITS};
use crate::time::slot::TimerSlot;
use crate::tree::children::{ChildLink, ChildList, SweepBudget};
use crate::tree::state;
use crate::tree::waiters::{self, WaiterGc};

/// The context a node was derived from, when it has no cancelable parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Root {
    Background,
    Todo,
}

impl Root {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Root::Background => "context.Background",
            Root::Todo => "context.TODO",
        }
    }
}

/// What kind of derivation made a node (for `Display`; deadline and callback
/// kinds join here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `with_cancel`, or a `with_deadline` later than the parent's.
    Cancel,
    /// `with_deadline` / `with_timeout` that armed its own timer.
    Deadline,
}

#[repr(align(8))] // list heads and links tag node pointers with three bits (children/)
pub(crate) struct Node {
    /// `USER` per user plus `LISTED` (N1). Relaxed increments, Release/Acquire on the last
    /// decrement, as `Arc`. 32 bits (beside the 32-bit sweep budget, so the
    /// node is 56 bytes): `USER` is 2 and the top bit is the overflow guard,
    /// so 2³⁰ users of one node, which would take over 20 GiB of contexts or
    /// children; an increment past that aborts, as `Arc`'s does past
    /// `isize::MAX`.
    pub(super) refs: AtomicU32,
    /// Inserts until the next sweep of `children` (L5).
    pub(super) sweep_budget: SweepBudget,
    /// The state word (S1–S4): waiter stack while active, err+cause+how after.
    pub(crate) state: AtomicUsize,
    /// Children of this node (L1–L7). Closed by the first walk after the claim.
    pub(super) children: ChildList,
    /// This node's link in its parent's list; written by the parent's list
    /// operations and by this node's own cancel (`mark_deleted`).
    pub(super) link: ChildLink,
    /// Abandoned-waiter accounting for the stack in `state` (W4).
    pub(crate) waiter_gc: WaiterGc,
    /// The nearest cancelable ancestor, or `None` below a root; a grant on
    /// it while the node has users and is not listed (N1). Immutable, and
    /// tagged when the node has a name (`names.rs`).
    pub(super) parent: ParentLink,
    /// The effective deadline — this node's own, or the nearest ancestor's,
    /// copied at derivation so `deadline()` is one read — with the root at
    /// the top of the chain and the kind of derivation (for `Display`), in
    /// one word. Immutable.
    pub(super) shape: PackedShape,
    /// Model-checking oracle: set when the count reaches zero. Under loom a
    /// freed node's memory is kept so that any later access fails an
    /// assertion instead of reading reused memory (a use-after-free).
    #[cfg(loom)]
    pub(super) freed: std::sync::atomic::AtomicBool,
    /// Model-checking oracle: every access reads this cell and freeing writes
    /// it, so loom reports any access not ordered before the free by
    /// happens-before (a causality violation), in every interleaving it
    /// explores, not only in those where the access runs after the free.
    #[cfg(loom)]
    pub(super) alive: crate::sync::UnsafeCell<()>,
}

/// A node's parent pointer and, in its low bits (nodes are 8-aligned), its
/// tags: whether the node has an entry in the names table (`names.rs`), and
/// whether `merge` derived it.
#[derive(Clone, Copy)]
pub(crate) struct ParentLink(usize);

/// Tag: the node has an entry in the names table.
pub(super) const NAMED: usize = 1;
/// Tag: the node is a merged context (`merge.rs`).
pub(super) const MERGED: usize = 2;
const TAGS: usize = NAMED | MERGED;

impl ParentLink {
    pub(super) fn new(parent: Option<NonNull<Node>>, tags: usize) -> ParentLink {
        let ptr = parent.map_or(0, |p| p.as_ptr() as usize);
        ParentLink(ptr | (tags & TAGS))
    }

    #[inline]
    pub(super) fn get(self) -> Option<NonNull<Node>> {
        NonNull::new((self.0 & !TAGS) as *mut Node)
    }

    #[inline]
    pub(crate) fn named(self) -> bool {
        self.0 & NAMED != 0
    }

    #[inline]
    pub(crate) fn merged(self) -> bool {
        self.0 & MERGED != 0
    }
}

// Three tag bits in list heads and links (children/), on every target.
const _: () = assert!(std::mem::align_of::<Node>() >= 8);

impl Node {
    #[inline]
    pub(crate) fn state_word(&self) -> usize {
        self.assert_live();
        self.state.load(Ordering::Acquire)
    }

    /// Under loom, fails the model if this node was already freed.
    #[inline(always)]
    pub(super) fn assert_live(&self) {
        #[cfg(loom)]
        {
            assert!(
                !self.freed.load(std::sync::atomic::Ordering::Relaxed),
                "use after free of a ctxtree node"
            );
            self.alive.with(|_| ());
        }
    }

    #[inline]
    pub(crate) fn err(&self) -> Option<Error> {
        state::err_of(self.state_word())
    }

    pub(crate) fn cause(&self) -> Option<Cause> {
        // SAFETY: `self` is alive, so its state word keeps the cause (S1).
        unsafe { state::cause_of(self.state_word()) }
    }

    pub(crate) fn parent(&self) -> Option<&Node> {
        // SAFETY: while a node has a user, its parent is alive — through
        // the node's grant, or because a node with a listed child is alive
        // (N1) — and so, link by link, is every ancestor: the caller
        // reached `self` through a user or through this same argument.
        self.parent.get().map(|p| unsafe { &*p.as_ptr() })
    }

    pub(crate) fn root(&self) -> Root {
        self.shape.root()
    }

    pub(crate) fn kind(&self) -> Kind {
        self.shape.kind()
    }

    pub(crate) fn deadline(&self) -> Deadline {
        self.shape.deadline()
    }

    /// In a virtual clock's tree (`virtual_clock.rs`).
    #[inline]
    pub(crate) fn virtual_time(&self) -> bool {
        self.shape.virtual_time()
    }

    /// The timer slot of a `Kind::Deadline` node.
    pub(crate) fn timer_slot(&self) -> &TimerSlot {
        assert!(
            self.kind() == Kind::Deadline,
            "only deadline nodes have a timer slot"
        );
        // SAFETY: a deadline node's block, held by the caller's `self`.
        unsafe { timer_slot_of(self) }
    }
}

#[cfg(loom)]
std::thread_local! {
    /// Under loom, nodes allocated and not yet freed: a model checks that
    /// every iteration frees what it allocated (a leak — a lost grant, a
    /// pass that never ends — is otherwise invisible, since freed nodes are
    /// kept). Per OS thread, which is per test: loom runs a model's threads
    /// on the thread that runs the model.
    pub(super) static LIVE_NODES: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
}

#[cfg(any(loom, test))]
impl Node {
    /// For `loom_hooks::shard_children` and unit tests.
    pub(crate) fn shard_children(&self) -> bool {
        self.children.shard_now()
    }

    /// For `loom_hooks::linked_children`: nodes linked in the list, dead
    /// ones included, over all shards.
    #[cfg(loom)]
    pub(crate) fn linked_children(&self) -> usize {
        self.children.linked_counts::<Node>().iter().sum()
    }
}

/// Nodes allocated and not yet freed on this test's thread (loom builds).
#[cfg(loom)]
pub fn live_nodes() -> isize {
    LIVE_NODES.with(std::cell::Cell::get)
}

impl Drop for Node {
    fn drop(&mut self) {
        self.free_resources();
    }
}

impl Node {
    pub(super) fn free_resources(&mut self) {
        stat!(Freed);
        // Relaxed suffices: `release` acquired the last count (an Acquire load).
        let word = self.state.load(Ordering::Relaxed);
        if state::is_canceled(word) {
            // SAFETY: the word owns one count of its cause; nobody reads it now.
            unsafe { state::release(word) };
        } else {
            // Unreachable in practice: an active node still has its
            // `CancelHandle` (which cancels on drop). Free the entries anyway.
            // SAFETY: no other thread can reach this node (refs == 0).
            unsafe { waiters::drop_chain(state::waiter_head(word)) };
        }
        debug_assert!(self.children.is_empty(), "node freed with linked children");
    }
}

/// A deadline node: the node followed by its timer slot, one allocation.
/// `repr(C)` puts `node` at offset 0, so a `*const Node` names both.
#[repr(C)]
pub(crate) struct TimedNode {
    pub(super) node: Node,
    pub(super) timer: TimerSlot,
}

/// The layout of a deadline node's allocation.
pub(crate) const TIMED_LAYOUT: std::alloc::Layout = std::alloc::Layout::new::<TimedNode>();

/// The timer slot of the deadline node at `ptr`, whose block is held.
///
/// # Safety
/// `ptr` is a deadline node's block, not yet freed.
pub(crate) unsafe fn timer_slot_of<'a>(ptr: *const Node) -> &'a TimerSlot {
    // SAFETY: deadline nodes are allocated as `TimedNode` (`repr(C)`, node
    // first); the slot is dropped only with the block.
    unsafe { &(*(ptr as *const TimedNode)).timer }
}

/// The effective deadline of the node at `ptr`, whose block is held: the
/// shape word is immutable and has no drop glue, so it outlives retiring.
///
/// # Safety
/// As for [`timer_slot_of`].
pub(crate) unsafe fn deadline_of(ptr: *const Node) -> Deadline {
    // SAFETY: the caller's contract.
    unsafe { std::ptr::addr_of!((*ptr).shape).read() }.deadline()
}

/// The immutable description of a new node.
#[derive(Clone, Copy)]
pub(super) struct Shape {
    pub(super) root: Root,
    pub(super) kind: Kind,
    /// Already the earlier of the node's own and its parent's deadline.
    pub(super) deadline: Deadline,
    /// The node is in a virtual clock's tree (`virtual_clock.rs`): its
    /// deadlines count on that clock, not on the timer thread.
    pub(super) virtual_time: bool,
}

/// A [`Shape`] in one word: the deadline in the low [`DEADLINE_BITS`] bits,
/// `TODO_ROOT`, `DEADLINE_KIND` and `VIRTUAL_TIME` above it.
#[derive(Clone, Copy)]
pub(super) struct PackedShape(u64);

pub(super) const TODO_ROOT: u64 = 1 << DEADLINE_BITS;
pub(super) const DEADLINE_KIND: u64 = 1 << (DEADLINE_BITS + 1);
pub(super) const VIRTUAL_TIME: u64 = 1 << (DEADLINE_BITS + 2);
const _: () = assert!(DEADLINE_BITS + 3 == u64::BITS);

impl PackedShape {
    pub(super) fn new(shape: Shape) -> PackedShape {
        let root = match shape.root {
            Root::Background => 0,
            Root::Todo => TODO_ROOT,
        };
        let kind = match shape.kind {
            Kind::Cancel => 0,
            Kind::Deadline => DEADLINE_KIND,
        };
        let clock = if shape.virtual_time { VIRTUAL_TIME } else { 0 };
        PackedShape(shape.deadline.raw() | root | kind | clock)
    }

    pub(super) fn virtual_time(self) -> bool {
        self.0 & VIRTUAL_TIME != 0
    }

    pub(super) fn deadline(self) -> Deadline {
        Deadline::from_raw(self.0 & (TODO_ROOT - 1))
    }

    pub(super) fn root(self) -> Root {
        if self.0 & TODO_ROOT != 0 {
            Root::Todo
        } else {
            Root::Background
        }
    }

    /// The shape of a `with_cancel` child of a node of this shape.
    pub(super) fn cancel_child(self) -> PackedShape {
        PackedShape(self.0 & !DEADLINE_KIND)
    }

    pub(super) fn kind(self) -> Kind {
        if self.0 & DEADLINE_KIND != 0 {
            Kind::Deadline
        } else {
            Kind::Cancel
        }
    }
}

//! The cancel node: one heap allocation per cancelable context, and the cancel
//! walk over its subtree.
//!
//! A node joins the three mechanisms: its state word (`state.rs`, which also
//! heads the waiter stack of `waiters.rs`), the list of its children
//! (`children.rs`), and its own link in its parent's list. Handles
//! (`Context`, `CancelHandle`) are just counted pointers to it.
//!
//! Invariants (numbered as in docs/design.md):
//! - **N1** `refs` counts: every `Context` and `CancelHandle` naming the node,
//!   the parent list's reference while linked (L4), and each child's `parent`
//!   pointer. The node is freed when it reaches 0, by an iterative loop that
//!   then releases the parent (no recursion, however deep the chain).
//! - **N2** A node's claim (S1) happens before its children list is closed.
//!   So whoever finds a list closed, from an insert or a walk, can load the
//!   owner's state word and find it canceled, with the err and cause to inherit.
//! - **N3** A child takes its err and cause from its parent's state word
//!   (the parent's winning claim), never from the caller of `cancel`, so the
//!   first writer wins at every level even when several cancels overlap.
//! - **N4** A `cancel` returns only after every descendant is canceled: the
//!   walk visits every list it finds with a pointer, whether it closed it or
//!   is helping a concurrent walk (L3), and lists are finished (reset to
//!   `CLOSED | 0`) only after the whole walk. A node canceled on its own is
//!   marked deleted in its parent's list (L1) only after its own walk, so an
//!   ancestor's walk cannot lose a subtree that is still being canceled.
//! - **N5** No recursion: the walk keeps an explicit worklist of
//!   `(node, first child)` pairs, and release (N1) is a loop.

use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::process::abort;
use std::ptr::NonNull;

use crate::children::{self, ChildLink, ChildList, Close, Listed, Release, SweepBudget};
use crate::error::{Cause, Error};
use crate::inline_stack::InlineStack;
use crate::state;
use crate::sync::{epoch, AtomicU32, AtomicUsize, Ordering};
use crate::timer::{Deadline, TimerSlot, DEADLINE_BITS};
use crate::waiters::{self, Callbacks, WaiterGc};

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

pub(crate) struct Node {
    /// Strong references (N1). Relaxed increments, Release/Acquire on the last
    /// decrement, as `Arc`. 32 bits (beside the 32-bit sweep budget, so the
    /// node is 56 bytes): 2³¹ counts of one node would take over 100 GiB of
    /// contexts or children, and an increment past that aborts, as `Arc`'s
    /// does past `isize::MAX`.
    refs: AtomicU32,
    /// Inserts until the next sweep of `children` (L5).
    sweep_budget: SweepBudget,
    /// The state word (S1–S3): waiter stack while active, err+cause after.
    pub(crate) state: AtomicUsize,
    /// Children of this node (L1–L7). Closed by the first walk after the claim.
    children: ChildList,
    /// This node's link in its parent's list; written by the parent's list
    /// operations and by this node's own cancel (`mark_deleted`).
    link: ChildLink,
    /// Abandoned-waiter accounting for the stack in `state` (W4).
    pub(crate) waiter_gc: WaiterGc,
    /// The nearest cancelable ancestor, or `None` below a root. Immutable
    /// until the node is freed, when `release` takes it (N1, N5).
    parent: Option<NodeRef>,
    /// The effective deadline — this node's own, or the nearest ancestor's,
    /// copied at derivation so `deadline()` is one read — with the root at
    /// the top of the chain and the kind of derivation (for `Display`), in
    /// one word. Immutable.
    shape: PackedShape,
    /// Model-checking oracle: set when the count reaches zero. Under loom a
    /// freed node's memory is kept so that any later access fails an
    /// assertion instead of reading reused memory (a use-after-free).
    #[cfg(loom)]
    freed: std::sync::atomic::AtomicBool,
    /// Model-checking oracle: every access reads this cell and freeing writes
    /// it, so loom reports any access not ordered before the free by
    /// happens-before (a causality violation), in every interleaving it
    /// explores, not only in those where the access runs after the free.
    #[cfg(loom)]
    alive: crate::sync::UnsafeCell<()>,
}

impl Node {
    #[inline]
    pub(crate) fn state_word(&self) -> usize {
        self.assert_live();
        self.state.load(Ordering::Acquire)
    }

    /// Under loom, fails the model if this node was already freed.
    #[inline(always)]
    fn assert_live(&self) {
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

    pub(crate) fn parent(&self) -> Option<&NodeRef> {
        self.parent.as_ref()
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

    /// Tells the timer that an armed deadline of this node will never fire
    /// (T3), so the driver can reclaim its entry early.
    fn note_disarmed(&self) {
        if self.kind() == Kind::Deadline {
            crate::timer::note_disarmed();
        }
    }

    /// The timer slot of a `Kind::Deadline` node.
    pub(crate) fn timer_slot(&self) -> &TimerSlot {
        assert!(
            self.kind() == Kind::Deadline,
            "only deadline nodes have a timer slot"
        );
        // SAFETY: deadline nodes are always allocated as `TimedNode`
        // (`NodeRef::alloc`), whose first field is this node (`repr(C)`).
        unsafe { &(*(self as *const Node as *const TimedNode)).timer }
    }

    /// Installs the canceled `word` (which owns its cause count) if the node
    /// is still active, and wakes the waiters it took (S1, S3), queueing their
    /// callbacks on `callbacks` (F2). Returns whether this call made the
    /// transition. `cur` is a value of the state word the caller loaded with Acquire
    /// (the walk and `cancel` have just loaded it to skip canceled nodes).
    fn claim_from(&self, mut cur: usize, word: usize, callbacks: &mut Callbacks) -> bool {
        loop {
            if state::is_canceled(cur) {
                // SAFETY: `word` was never stored; give back its cause count.
                unsafe { state::release(word) };
                return false;
            }
            // Release publishes err+cause (S2); Acquire takes the waiter
            // entries pushed with Release (W3).
            match self
                .state
                .compare_exchange_weak(cur, word, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    let waiters = state::waiter_head(cur);
                    // Most nodes end with nobody waiting: skip the call.
                    if waiters != 0 {
                        // SAFETY: the CAS moved the whole stack to us (S3).
                        unsafe { waiters::wake_chain(waiters, callbacks) };
                    }
                    return true;
                }
                Err(actual) => cur = actual,
            }
        }
    }
}

impl Node {
    /// Under loom, what freeing does, minus the deallocation (see `freed`).
    #[cfg(loom)]
    fn dispose(&mut self) -> Option<NodeRef> {
        self.alive.with_mut(|_| ());
        self.freed.store(true, std::sync::atomic::Ordering::Relaxed);
        self.free_resources();
        self.parent.take()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.free_resources();
    }
}

impl Node {
    fn free_resources(&mut self) {
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

// SAFETY: `link` is the node's only `ChildLink`; nodes are 8-aligned; the list
// reference released here is the one `derive` transferred with `attach`.
unsafe impl Listed for Node {
    fn link(&self) -> &ChildLink {
        &self.link
    }

    unsafe fn release_listed(this: *const Node) {
        // SAFETY: the list owned one count (N1), now given back.
        unsafe { release(this) }
    }
}

/// A counted pointer to a [`Node`] (N1).
pub(crate) struct NodeRef(NonNull<Node>);

// SAFETY: every field of `Node` is either atomic, immutable after
// construction, or accessed under the protocols of its module; the node is
// designed to be shared and freed from any thread.
unsafe impl Send for NodeRef {}
// SAFETY: as above.
unsafe impl Sync for NodeRef {}

/// A deadline node: the node followed by its timer slot, one allocation.
/// `repr(C)` puts `node` at offset 0, so a `*const Node` names both.
#[repr(C)]
struct TimedNode {
    node: Node,
    timer: TimerSlot,
}

impl NodeRef {
    /// Allocates `node`; a `Kind::Deadline` node gets a timer slot holding
    /// the cause to record if its deadline fires.
    fn alloc(node: Node, deadline_cause: Option<Cause>) -> *const Node {
        if node.kind() == Kind::Deadline {
            let timed = Box::new(TimedNode {
                node,
                timer: TimerSlot::new(deadline_cause),
            });
            Box::into_raw(timed) as *const Node
        } else {
            debug_assert!(deadline_cause.is_none());
            Box::into_raw(Box::new(node))
        }
    }

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
    unsafe fn adopt(ptr: *const Node) -> NodeRef {
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
        // Relaxed: a new count is derived from an existing one, as in `Arc`.
        if self.refs.fetch_add(1, Ordering::Relaxed) > i32::MAX as u32 {
            abort();
        }
        NodeRef(self.0)
    }
}

impl Drop for NodeRef {
    fn drop(&mut self) {
        // SAFETY: we own one count.
        unsafe { release(self.0.as_ptr()) }
    }
}

/// Drops one count of `ptr`, freeing nodes up the chain while counts reach
/// zero, in a loop (N1, N5).
///
/// # Safety
/// The caller owns one count of `ptr`.
unsafe fn release(mut ptr: *const Node) {
    loop {
        // SAFETY: we own a count, so the node is alive.
        unsafe { (*ptr).assert_live() };
        // SAFETY: as above.
        if unsafe { (*ptr).refs.fetch_sub(1, Ordering::Release) } != 1 {
            return;
        }
        // Acquire the whole release sequence of decrements before freeing,
        // as `Arc` does. An Acquire load rather than `fence(Acquire)`: the
        // same guarantee, and ThreadSanitizer understands it (it ignores
        // standalone fences and reported every free as a race).
        // SAFETY: the node is alive until we free it below.
        unsafe { (*ptr).refs.load(Ordering::Acquire) };
        #[cfg(not(loom))]
        let parent = {
            // SAFETY: that was the last count: nobody else can reach the
            // node, and it came from `Box::into_raw`.
            // SAFETY (both arms): the allocation's type follows the kind
            // (`NodeRef::alloc`).
            if unsafe { (*ptr).kind() } == Kind::Deadline {
                let mut timed = unsafe { Box::from_raw(ptr as *mut TimedNode) };
                let parent = timed.node.parent.take();
                drop(timed);
                parent
            } else {
                let mut node = unsafe { Box::from_raw(ptr as *mut Node) };
                let parent = node.parent.take();
                drop(node);
                parent
            }
        };
        #[cfg(loom)]
        // SAFETY: as above; under loom the memory is kept (see `freed`), its
        // resources are released by `dispose` and later accesses assert.
        let parent = unsafe { (*(ptr as *mut Node)).dispose() };
        match parent {
            // Continue with the parent's count instead of recursing into it.
            Some(parent) => ptr = ManuallyDrop::new(parent).as_ptr(),
            None => return,
        }
    }
}

/// Derives a child of `parent` (or of `root` when there is no cancelable
/// ancestor) and returns two counts of it, for a `Context` and a
/// `CancelHandle`. `deadline` is the child's effective deadline: the parent's
/// for a plain cancel child, or an earlier one of its own.
pub(crate) fn derive(
    parent: Option<&NodeRef>,
    root: Root,
    kind: Kind,
    deadline: Deadline,
    deadline_cause: Option<Cause>,
) -> (NodeRef, NodeRef) {
    let shape = Shape {
        root,
        kind,
        deadline,
    };
    let Some(parent) = parent else {
        let node = Node::new(2, state::ACTIVE, ChildList::new(), None, shape);
        let ptr = NodeRef::alloc(node, deadline_cause);
        // SAFETY: two counts, handed to the two refs.
        return unsafe { (NodeRef::adopt(ptr), NodeRef::adopt(ptr)) };
    };

    let parent_word = parent.state_word();
    if state::is_canceled(parent_word) {
        return born_canceled(parent, parent_word, shape, deadline_cause);
    }
    // Three counts: the two handles and the parent's list (N1).
    let ptr = NodeRef::alloc(
        Node::new(
            3,
            state::ACTIVE,
            ChildList::new(),
            Some(parent.clone()),
            shape,
        ),
        deadline_cause,
    );
    if parent.children.attach(ptr, &parent.sweep_budget).is_ok() {
        // SAFETY: two of the three counts; the list holds the third.
        return unsafe { (NodeRef::adopt(ptr), NodeRef::adopt(ptr)) };
    }
    // The parent closed its list: it is canceled (N2). The node was never
    // published, so nobody races with us; cancel it like the walk would.
    // SAFETY: the list did not take its count, so we still own three.
    let (a, b, list_count) = unsafe {
        (
            NodeRef::adopt(ptr),
            NodeRef::adopt(ptr),
            NodeRef::adopt(ptr),
        )
    };
    drop(list_count);
    // Unpublished, so no waiters and no callbacks to run.
    inherit(&a, parent.state_word(), &mut Callbacks::default());
    let _ = a.children.close();
    (a, b)
}

fn born_canceled(
    parent: &NodeRef,
    parent_word: usize,
    shape: Shape,
    deadline_cause: Option<Cause>,
) -> (NodeRef, NodeRef) {
    // SAFETY: `parent` is alive, so its word's cause is too; the new word
    // needs its own count.
    unsafe { state::retain(parent_word) };
    let ptr = NodeRef::alloc(
        Node::new(
            2,
            parent_word,
            ChildList::new_closed(),
            Some(parent.clone()),
            shape,
        ),
        deadline_cause,
    );
    // SAFETY: two counts, handed to the two refs.
    unsafe { (NodeRef::adopt(ptr), NodeRef::adopt(ptr)) }
}

/// Claims `child` with a copy of its parent's canceled `parent_word` (N3).
fn inherit(child: &Node, parent_word: usize, callbacks: &mut Callbacks) -> bool {
    debug_assert!(
        state::is_canceled(parent_word),
        "N2: a closed list's owner is canceled"
    );
    let cur = child.state_word();
    if state::is_canceled(cur) {
        return false;
    }
    // SAFETY: the parent is alive for the duration of the walk (the caller is
    // pinned or holds it), so its cause count can be shared.
    unsafe { state::retain(parent_word) };
    let won = child.claim_from(cur, parent_word, callbacks);
    if won {
        child.note_disarmed();
    }
    won
}

/// The immutable description of a new node.
#[derive(Clone, Copy)]
struct Shape {
    root: Root,
    kind: Kind,
    /// Already the earlier of the node's own and its parent's deadline.
    deadline: Deadline,
}

/// A [`Shape`] in one word: the deadline in the low [`DEADLINE_BITS`] bits,
/// `TODO_ROOT` and `DEADLINE_KIND` above it.
#[derive(Clone, Copy)]
struct PackedShape(u64);

const TODO_ROOT: u64 = 1 << DEADLINE_BITS;
const DEADLINE_KIND: u64 = 1 << (DEADLINE_BITS + 1);

impl PackedShape {
    fn new(shape: Shape) -> PackedShape {
        let root = match shape.root {
            Root::Background => 0,
            Root::Todo => TODO_ROOT,
        };
        let kind = match shape.kind {
            Kind::Cancel => 0,
            Kind::Deadline => DEADLINE_KIND,
        };
        PackedShape(shape.deadline.raw() | root | kind)
    }

    fn deadline(self) -> Deadline {
        Deadline::from_raw(self.0 & (TODO_ROOT - 1))
    }

    fn root(self) -> Root {
        if self.0 & TODO_ROOT != 0 {
            Root::Todo
        } else {
            Root::Background
        }
    }

    fn kind(self) -> Kind {
        if self.0 & DEADLINE_KIND != 0 {
            Kind::Deadline
        } else {
            Kind::Cancel
        }
    }
}

impl Node {
    fn new(
        refs: u32,
        word: usize,
        children: ChildList,
        parent: Option<NodeRef>,
        shape: Shape,
    ) -> Node {
        Node {
            refs: AtomicU32::new(refs),
            sweep_budget: SweepBudget::new(),
            state: AtomicUsize::new(word),
            children,
            link: ChildLink::new(),
            waiter_gc: WaiterGc::new(),
            parent,
            shape: PackedShape::new(shape),
            #[cfg(loom)]
            freed: std::sync::atomic::AtomicBool::new(false),
            #[cfg(loom)]
            alive: crate::sync::UnsafeCell::new(()),
        }
    }
}

/// Cancels `node` with `err` and `cause` (first writer wins, S1) and returns
/// once its whole subtree is canceled (N4) and the `after_func` callbacks this
/// cancel found have run (F2).
pub(crate) fn cancel(node: &Node, err: Error, cause: Option<Cause>) {
    let mut callbacks = Callbacks::default();
    let cur = node.state_word();
    let won = !state::is_canceled(cur)
        && node.claim_from(cur, state::canceled(err, cause), &mut callbacks);
    #[cfg(ctxtree_plant = "mark_before_walk")]
    if won {
        node.link.mark_deleted();
    }
    propagate(node, &mut callbacks);
    if won {
        // A node canceled on its own leaves its parent's list (L1), but only
        // now that its subtree is canceled: while it is still linked, a walk
        // from an ancestor finds it and helps (N4). Marked earlier, a sweep
        // could unlink it and that walk return with this subtree still
        // active (found by tests/stress.rs). Nodes canceled by their
        // parent's walk skip this: that list is closed.
        #[cfg(not(any(ctxtree_plant = "mark_before_walk", ctxtree_plant = "unlink_unfrozen")))]
        let marked = node.link.mark_deleted();
        #[cfg(ctxtree_plant = "mark_before_walk")]
        let marked = node.link.next_sibling();
        // Planted: the successor read before the mark froze it.
        #[cfg(ctxtree_plant = "unlink_unfrozen")]
        let marked = {
            let seen = node.link.next_sibling();
            node.link.mark_deleted();
            seen
        };
        // The newest child (the common case: derive, use, cancel) leaves the
        // list at once, without waiting for a sweep (L7).
        if let Some(parent) = &node.parent {
            // SAFETY: `node` won its claim, so it was attached to its
            // parent's list (a node born canceled or refused by a closed list
            // never wins), and its mark returned `marked`.
            if unsafe { parent.children.unlink_first(node as *const Node, marked) } {
                // SAFETY: the list's reference is ours and no other thread
                // can reach `node` through the list (L7); the caller's count
                // keeps it alive.
                unsafe { release(node) };
            }
        }
        node.note_disarmed();
    }
    // Callbacks run now: the subtree is canceled and nothing is pinned.
    callbacks.run();
    // A waker or callback that panicked was held until now, so the whole
    // subtree is canceled and every other waiter woken before the panic
    // reaches us.
    waiters::panics::resume();
}

/// Records that an entry of `node`'s waiter stack was abandoned (W4). If the
/// collection this triggers finds the node canceled, it wakes the survivors
/// itself (W2); their callbacks run here once the subtree is canceled,
/// helping a concurrent cancel finish first (F2).
pub(crate) fn note_abandoned(node: &Node) {
    let mut callbacks = Callbacks::default();
    waiters::note_abandoned(&node.state, &node.waiter_gc, &mut callbacks);
    if !callbacks.is_empty() {
        propagate(node, &mut callbacks);
        callbacks.run();
        waiters::panics::resume();
    }
}

/// Planted bug for the timer's loom models: claims without propagating.
#[cfg(ctxtree_plant = "fire_no_propagate")]
pub(crate) fn cancel_without_propagation(node: &Node, err: Error, cause: Option<Cause>) {
    let mut callbacks = Callbacks::default();
    if !state::is_canceled(node.state_word())
        && node.claim_from(
            node.state_word(),
            state::canceled(err, cause),
            &mut callbacks,
        )
    {
        node.link.mark_deleted();
    }
}

/// Closes `node`'s children list and cancels everything below (N2, N4).
fn propagate(node: &Node, callbacks: &mut Callbacks) {
    // A leaf (the common case) needs no pin: its list is empty.
    match node.children.close() {
        Close::Owner { first: 0, .. } | Close::Helper(0) => {}
        Close::Owner { first, swept } => walk(node, first, Some(swept), callbacks),
        #[cfg(not(ctxtree_plant = "skip_help"))]
        Close::Helper(unpinned) => walk(node, unpinned, None, callbacks),
        #[cfg(ctxtree_plant = "skip_help")]
        Close::Helper(_) => {}
    }
}

/// A list this walk closed, to finish once everything below is canceled: a
/// node pointer (8-aligned) with `SWEPT` in bit 0 (`close` found a sweeper
/// running). One word, because a deep chain owns one list per level: a
/// 10⁶-deep chain's walk keeps 10⁶ of these. After `finish_close` the walk
/// rewrites the entry in place as [`Finished`].
#[derive(Clone, Copy)]
struct Owned(usize);

/// A finished list: its first node, with `EPOCH` in bit 0 if its
/// references go through the epoch (`Release::Epoch`).
#[derive(Clone, Copy)]
struct Finished(usize);

const SWEPT: usize = 1;
const EPOCH: usize = 1;

impl Finished {
    fn new(first: usize, how: Release) -> Finished {
        Finished(first | if how == Release::Epoch { EPOCH } else { 0 })
    }

    fn first(self) -> usize {
        self.0 & !EPOCH
    }

    fn epoch(self) -> bool {
        self.0 & EPOCH != 0
    }
}

impl Owned {
    fn new(node: *const Node, swept: bool) -> Owned {
        Owned(node as usize | if swept { SWEPT } else { 0 })
    }

    fn node(self) -> *const Node {
        (self.0 & !SWEPT) as *const Node
    }

    fn swept(self) -> bool {
        self.0 & SWEPT != 0
    }
}

/// The iterative subtree walk (N4, N5). `owner`: `Some(swept)` if this
/// thread closed `root`'s list (with `swept` from its `close`), `None` if it
/// helps another thread's walk; `unpinned`: the first child as `close` saw
/// it, before pinning.
fn walk(root: &Node, unpinned: usize, owner: Option<bool>, callbacks: &mut Callbacks) {
    let guard = epoch::pin();
    // Read the first child again now that we are pinned: a pointer read before
    // pinning may already have been released (L4). Only the owner resets the
    // head (L3), so an owner reads the same child; a helper announces itself
    // (L6) and may find the walk finished.
    #[cfg(not(ctxtree_plant = "pin_late"))]
    let first = {
        let _ = unpinned;
        match owner {
            Some(_) => root.children.first(),
            None => root.children.help(),
        }
    };
    #[cfg(ctxtree_plant = "pin_late")]
    let first = {
        let _ = root.children.help();
        unpinned
    };
    if first == 0 {
        return;
    }
    // Lists this walk closed, to finish after everything below is canceled:
    // `Owned` words, rewritten in place as `Finished` ones by the finish.
    let mut owned: InlineStack<usize, 16> = InlineStack::new(0);
    // Lists still to walk.
    let mut work: InlineStack<(*const Node, usize), 8> = InlineStack::new((std::ptr::null(), 0));
    work.push((root as *const Node, first));
    if let Some(swept) = owner {
        owned.push(Owned::new(root, swept).0);
    }
    while let Some((parent, first)) = work.pop() {
        // SAFETY (whole loop): `parent` and every child we reach were reachable
        // after we pinned `guard` from a list this walk closed or announced
        // itself on (L6); their list references are released only after
        // that list is finished and through `defer` if we helped (L4).
        let parent_word = unsafe { (*parent).state_word() };
        let mut cur = first;
        while cur != 0 {
            let child = unsafe { &*(cur as *const Node) };
            cur = child.link.next_sibling();
            inherit(child, parent_word, callbacks);
            match child.children.close() {
                Close::Owner { first: 0, .. } | Close::Helper(0) => {}
                Close::Owner {
                    first: grand,
                    swept,
                } => {
                    owned.push(Owned::new(child, swept).0);
                    #[cfg(not(ctxtree_plant = "shallow_walk"))]
                    work.push((child, grand));
                }
                #[cfg(not(ctxtree_plant = "skip_help"))]
                Close::Helper(_) => {
                    let grand = child.children.help();
                    if grand != 0 {
                        work.push((child, grand));
                    }
                }
                #[cfg(ctxtree_plant = "skip_help")]
                Close::Helper(_) => {}
            }
        }
    }
    // Finish every owned list before releasing anything: a release may free
    // a node whose own list is still to be finished.
    let mut released = Vec::new();
    for entry in owned.iter_mut() {
        let list = Owned(*entry);
        // SAFETY: this walk closed the list (Owner), everything below is
        // canceled now, and `guard` was pinned before the close.
        let (how, first) = unsafe { (*list.node()).children.finish_close(list.swept()) };
        // The node may be freed by the releases below: keep what they need.
        *entry = Finished::new(first, how).0;
        if how == Release::Epoch {
            // SAFETY: as above, and still pinned.
            unsafe { ChildList::claim_for_epoch::<Node>(first, &mut released) };
        }
    }
    // SAFETY: the references were claimed by `claim_for_epoch` while pinned.
    unsafe { children::release_later(&guard, released) };
    for list in owned.iter().map(|&entry| Finished(entry)) {
        if !list.epoch() {
            // SAFETY: every owned list is finished (its owner is not read
            // again); nobody else can reach these children (L6).
            unsafe { ChildList::release_now::<Node>(list.first()) };
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_context_is_one_64_byte_malloc_chunk() {
        // One allocation of this size per `with_cancel` (docs/design.md §1):
        // glibc adds an 8-byte header and rounds to 16, so 56 bytes is the
        // most that fits a 64-byte chunk.
        let size = std::mem::size_of::<Node>();
        assert!(size <= 56, "Node is {size} bytes");
        // A deadline node adds its 24-byte timer slot (a 96-byte chunk).
        let timed = std::mem::size_of::<TimedNode>();
        assert!(timed <= 80, "TimedNode is {timed} bytes");
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
                for kind in [Kind::Cancel, Kind::Deadline] {
                    let packed = PackedShape::new(Shape {
                        root,
                        kind,
                        deadline,
                    });
                    assert_eq!(packed.deadline(), deadline);
                    assert_eq!(packed.root(), root);
                    assert_eq!(packed.kind(), kind);
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
}

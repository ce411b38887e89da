//! The cancel node: one heap allocation per cancelable context, and the cancel
//! walk over its subtree.
//!
//! A node joins the three mechanisms: its state word (`state.rs`, which also
//! heads the waiter stack of `waiters.rs`), the list of its children
//! (`children.rs`), and its own link in its parent's list. Handles
//! (`Context`, `CancelHandle`) are just counted pointers to it.
//!
//! Invariants (numbered as in docs/design.md):
//! - **N1** `refs` holds `USER` per *user* — every `Context` and
//!   `CancelHandle` naming the node, each child that holds a *grant* on
//!   it, and the timer's entry while the node is armed and not yet claimed
//!   (T6: the claim gives that user back) — plus the `LISTED` bit while the
//!   node's parent's list holds it (L4).
//!   A child holds a grant on its parent exactly while it has users and is
//!   not listed: a linked child needs none, because a node with a listed
//!   child is alive (its list is open, so its `CancelHandle` is alive, or a
//!   canceler is walking it, and lists are unlisted bottom-up). Whoever
//!   unlists a node that still has users grants its parent a count *first*
//!   (so the parent's count never dips), and a node freed by its last user
//!   releases its grant. The node is freed when no user is left and it is
//!   not listed, by an iterative loop that then releases the parent's grant
//!   (no recursion, however deep the chain); a deadline node's block may
//!   outlive that free while the timer still holds it (T7). A last user that finds the
//!   node listed, marked deleted and first in its parent's open list
//!   unlinks it and frees it without touching the parent's count (L7);
//!   that last user is a `Context` or `CancelHandle` (a `NodeRef` drop): a
//!   child's grant released by the freeing loop leaves a listed parent to
//!   its list (a sweep or the close).
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

#[cfg(not(loom))]
pub(crate) mod cache;

use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::process::abort;
use std::ptr::NonNull;

use crate::error::{Cause, Error};
use crate::plant::planted;
use crate::sync::{epoch, AtomicU32, AtomicUsize, Ordering};
use crate::time::slot::TimerSlot;
use crate::time::{Deadline, DEADLINE_BITS};
use crate::tree::children::{self, ChildLink, ChildList, Close, Listed, Release, SweepBudget};
use crate::tree::inline_stack::InlineStack;
use crate::tree::state;
use crate::tree::waiters::{self, Callbacks, WaiterGc};

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

#[repr(align(8))] // list heads and links tag node pointers with three bits (children.rs)
pub(crate) struct Node {
    /// `USER` per user plus `LISTED` (N1). Relaxed increments, Release/Acquire on the last
    /// decrement, as `Arc`. 32 bits (beside the 32-bit sweep budget, so the
    /// node is 56 bytes): `USER` is 2 and the top bit is the overflow guard,
    /// so 2³⁰ users of one node, which would take over 20 GiB of contexts or
    /// children; an increment past that aborts, as `Arc`'s does past
    /// `isize::MAX`.
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
    /// The nearest cancelable ancestor, or `None` below a root; a grant on
    /// it while the node has users and is not listed (N1). Immutable.
    parent: Option<NonNull<Node>>,
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

// Three tag bits in list heads and links (children.rs), on every target.
const _: () = assert!(std::mem::align_of::<Node>() >= 8);

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

    pub(crate) fn parent(&self) -> Option<&Node> {
        // SAFETY: while a node has a user, its parent is alive — through
        // the node's grant, or because a node with a listed child is alive
        // (N1) — and so, link by link, is every ancestor: the caller
        // reached `self` through a user or through this same argument.
        self.parent.map(|p| unsafe { &*p.as_ptr() })
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

    /// Disarms this node's deadline right after its claim (T6): the timer's
    /// entry gives back its user, so a canceled node waiting in the timer's
    /// queues pins only its own block, never its parent (N1), and the driver
    /// is told it may reclaim the entry (T3). The caller keeps the node
    /// alive (a user, or its listing in a closed list), so the user released
    /// here is never the last.
    fn disarm_timer(&self) {
        if self.kind() == Kind::Deadline && self.timer_slot().disarm() {
            // SAFETY: the timer's user, handed to us by `disarm` (T6).
            unsafe { release_users(self, 1) };
            crate::time::note_disarmed();
        }
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

#[cfg(loom)]
std::thread_local! {
    /// Under loom, nodes allocated and not yet freed: a model checks that
    /// every iteration frees what it allocated (a leak — a lost grant, a
    /// pass that never ends — is otherwise invisible, since freed nodes are
    /// kept). Per OS thread, which is per test: loom runs a model's threads
    /// on the thread that runs the model.
    static LIVE_NODES: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
}

#[cfg(any(loom, test))]
impl Node {
    /// For `loom_hooks::shard_children` and unit tests.
    pub(crate) fn shard_children(&self) -> bool {
        self.children.shard_now()
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

// SAFETY: `link` is the node's only `ChildLink`; nodes are 8-aligned; the
// hold ended by `unlist` is the `LISTED` bit `derive` set for `attach`.
unsafe impl Listed for Node {
    type Pass = GrantPass;

    fn link(&self) -> &ChildLink {
        // Every list operation reaches a node's link through here: under
        // loom, a use after free by a sweep, claim or release pass fails
        // the model.
        self.assert_live();
        &self.link
    }

    unsafe fn begin_pass(first: *const Node, prepaid: u32) -> GrantPass {
        GrantPass {
            // SAFETY: a listed node is alive and has a parent (its owner).
            owner: unsafe { (*first).parent }.expect("a listed node has a parent"),
            spare: prepaid,
            chunk: 1,
        }
    }

    unsafe fn unlist(this: *const Node, pass: &mut GrantPass) {
        // SAFETY: forwarded: `this` is listed, unreachable from the list for
        // every other thread, and a child of `pass.owner`.
        unsafe { unlist(this, pass) }
    }

    unsafe fn end_pass(pass: GrantPass) {
        if pass.spare > 0 {
            // SAFETY: the unused grants are users of the owner we hold.
            unsafe { release_users(pass.owner.as_ptr(), pass.spare) }
        }
    }

    unsafe fn prepay(first: *const Node, n: u32) {
        // SAFETY: a listed node is alive and so is its parent (N1).
        let owner = unsafe { (*first).parent }.expect("a listed node has a parent");
        // Planted: the deferred pass finds nothing paid.
        let n = if planted!("no_prepay") { 0 } else { n };
        // SAFETY: as above.
        unsafe { (*owner.as_ptr()).grant(n) };
    }
}

/// The grants a pass that unlists children of one list hands their parent
/// (N1): taken before each child's `LISTED` bit is cleared — one at first,
/// then in chunks, so a large fan-out costs the parent's cache line a few
/// RMWs — and the spare ones given back when the pass ends.
pub(crate) struct GrantPass {
    owner: NonNull<Node>,
    spare: u32,
    chunk: u32,
}

/// Grants taken at a time by a pass after its first.
const GRANT_CHUNK: u32 = 64;

impl GrantPass {
    fn take(&mut self) {
        if self.spare == 0 {
            // SAFETY: the owner is alive while it has a listed child (N1).
            unsafe { (*self.owner.as_ptr()).grant(self.chunk) };
            self.spare = self.chunk;
            self.chunk = GRANT_CHUNK;
        }
        self.spare -= 1;
    }
}

/// Ends the list's hold on `node` (clears `LISTED`): a node that still has
/// users keeps a grant on its parent, taken from `pass` before the clear; a
/// node without users is freed here, without touching its parent's count.
///
/// # Safety
/// `node` is listed, no other thread can reach it through the list, and
/// `pass` belongs to its parent.
unsafe fn unlist(node: *const Node, pass: &mut GrantPass) {
    // SAFETY: listed, so alive.
    let refs = unsafe { &(*node).refs };
    // Acquire: pairs with the users' Release decrements before a free.
    let cur = refs.load(Ordering::Acquire);
    if cur != LISTED {
        // Users may leave at any moment: the grant comes first.
        let prev = if planted!("grant_after_unlist") {
            let prev = refs.fetch_sub(LISTED, Ordering::AcqRel);
            pass.take();
            prev
        } else {
            pass.take();
            refs.fetch_sub(LISTED, Ordering::AcqRel)
        };
        if prev != LISTED {
            return;
        }
        // The last user left between the load and the clear: it saw the
        // node listed and left it to us; the grant was not needed.
        if !planted!("keep_spare_grant") {
            pass.spare += 1;
        }
    }
    // Freeing drops the node's cause, whose `drop` is foreign code: a panic
    // must not stop the pass (the children after this one would stay listed
    // with no grant on their parent), so it is held until the operation
    // running the pass ends (`panics::resume` in `cancel` and `derive`).
    // SAFETY: no user and no list: nobody else can reach the node; it holds
    // no grant on its parent.
    waiters::panics::hold_from(|| unsafe { free(node) });
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
pub(crate) struct TimedNode {
    node: Node,
    timer: TimerSlot,
}

/// The layout of a deadline node's allocation.
pub(crate) const TIMED_LAYOUT: std::alloc::Layout = std::alloc::Layout::new::<TimedNode>();

impl NodeRef {
    /// Allocates the node `make` builds, of kind `kind`; a `Kind::Deadline`
    /// node gets a timer slot holding the cause to record if its deadline
    /// fires. The node is built after its block is taken, so it is written
    /// straight into the block: built on the stack first, its copy read back
    /// 16 bytes at a time what had just been written 8 at a time, and the
    /// store-forwarding stalls were a tenth of a derive + cancel + drop.
    #[inline(always)]
    fn alloc(
        kind: Kind,
        deadline_cause: Option<Cause>,
        make: impl FnOnce() -> Node,
    ) -> *const Node {
        #[cfg(loom)]
        LIVE_NODES.with(|n| n.set(n.get() + 1));
        if kind == Kind::Deadline {
            return NodeRef::alloc_timed(make, deadline_cause);
        }
        debug_assert!(deadline_cause.is_none());
        let block = NodeRef::block(
            #[cfg(not(loom))]
            &crate::tree::node::cache::NODES,
            std::alloc::Layout::new::<Node>(),
        ) as *mut Node;
        // SAFETY: a block of `Node`'s layout, holding no value (C1, or fresh).
        unsafe { block.write(make()) };
        block
    }

    /// [`alloc`](NodeRef::alloc) for a deadline node: a block of
    /// [`TIMED_LAYOUT`], the node and its timer slot written in place.
    #[inline(never)]
    fn alloc_timed(make: impl FnOnce() -> Node, deadline_cause: Option<Cause>) -> *const Node {
        let block = NodeRef::block(
            #[cfg(not(loom))]
            &crate::tree::node::cache::TIMED,
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
    fn block(
        #[cfg(not(loom))] class: &'static crate::tree::node::cache::Class,
        layout: std::alloc::Layout,
    ) -> *mut u8 {
        #[cfg(not(loom))]
        if crate::tree::node::cache::ENABLED {
            return class.alloc_block();
        }
        // SAFETY: node layouts have a non-zero size.
        let block = unsafe { std::alloc::alloc(layout) };
        if block.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        block
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
const USER: u32 = 2;
/// The hold of the parent's list while the node is linked (N1, L4).
const LISTED: u32 = 1;

impl Node {
    /// Adds `n` users. Relaxed, as `Arc::clone`: the caller holds a user or
    /// otherwise keeps the node alive (N1). Past `i32::MAX` it aborts, as
    /// `Arc` does past `isize::MAX`.
    fn grant(&self, n: u32) {
        if self.refs.fetch_add(USER * n, Ordering::Relaxed) > i32::MAX as u32 {
            abort();
        }
    }
}

/// Drops one user of `ptr` (N1). The last user of a node that its parent's
/// list still holds unlinks it if it is first in that open list and frees
/// it at once (L7); otherwise see [`release_users`].
///
/// # Safety
/// The caller owns one user of `ptr`.
unsafe fn release_user(ptr: *const Node) {
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
        if let Some(parent) = node.parent {
            let link = node.link.word();
            // SAFETY: the node is listed, so its parent is alive (N1); it is
            // alive itself (our user), and its link was read after its
            // `DELETED` mark (its cancel happened before its last user left).
            if ChildLink::is_deleted(link)
                && unsafe { (*parent.as_ptr()).children.unlink_first(ptr, link) }
            {
                // Unlinked: no thread can reach it through the list (L7) and
                // we are its last user; it holds no grant (it was listed).
                // SAFETY: as just said.
                unsafe { free(ptr) };
                return;
            }
        }
    }
    // SAFETY: forwarded.
    unsafe { release_users(ptr, 1) }
}

/// Drops `n` users of `ptr` in one decrement. A node left with no user and
/// not listed is freed, and its grant on its parent released, in a loop up
/// the chain (N1, N5); one still listed is left to its list.
///
/// # Safety
/// The caller owns `n` users of `ptr`.
unsafe fn release_users(mut ptr: *const Node, mut n: u32) {
    loop {
        // SAFETY: we own a user, so the node is alive.
        unsafe { (*ptr).assert_live() };
        // SAFETY: as above.
        if unsafe { (*ptr).refs.fetch_sub(USER * n, Ordering::Release) } != USER * n {
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
        let parent = unsafe { (*ptr).parent };
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

/// Frees a node (its memory, its cause count). Does not touch its parent.
/// A deadline node whose block the timer still holds (T7) is retired
/// instead: its fields are dropped now, its block when the timer lets go.
///
/// # Safety
/// Nobody else can reach the node: no user left, and not listed.
#[inline]
unsafe fn free(ptr: *const Node) {
    // SAFETY: nobody else can reach it (the caller's contract).
    if unsafe { (*ptr).kind() } == Kind::Deadline {
        // SAFETY: as above.
        return unsafe { retire_timed(ptr) };
    }
    #[cfg(not(loom))]
    {
        // SAFETY (both arms): a plain node's block, from the node cache's
        // `NODES` class when it is on, else an allocation of `Node`'s
        // layout as `Box` makes (`NodeRef::alloc`); nobody else can reach
        // it, so it is dropped once.
        if crate::tree::node::cache::ENABLED {
            // Hand the memory back to the cache (C1) also if the drop
            // unwinds (a cause whose `drop` panics), as a `Box` would.
            let _block = ReturnBlock(&crate::tree::node::cache::NODES, ptr as *mut u8);
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

/// Returns a block to its node-cache class when dropped (also on unwind).
#[cfg(not(loom))]
struct ReturnBlock(&'static crate::tree::node::cache::Class, *mut u8);

#[cfg(not(loom))]
impl Drop for ReturnBlock {
    fn drop(&mut self) {
        // SAFETY: the value in the block was dropped (or its drop unwound);
        // nobody can reach the block (the creator's contract).
        unsafe { self.0.free_block(self.1) };
    }
}

/// Returns a deadline node's block, from the cache's `TIMED` class or the
/// global allocator as `NodeRef::block` took it, when dropped.
#[cfg(not(loom))]
struct ReturnTimedBlock(*mut u8);

#[cfg(not(loom))]
impl Drop for ReturnTimedBlock {
    fn drop(&mut self) {
        if crate::tree::node::cache::ENABLED {
            drop(ReturnBlock(&crate::tree::node::cache::TIMED, self.0));
        } else {
            // SAFETY: allocated with `TIMED_LAYOUT` by `NodeRef::block`;
            // nobody can reach it (the creator's contract).
            unsafe { std::alloc::dealloc(self.0, TIMED_LAYOUT) };
        }
    }
}

/// [`free`] for a deadline node: drops the node's own fields, then clears
/// the tree side's hold on the block (T7) and frees the block unless the
/// timer still holds it — also if the drop unwinds.
///
/// # Safety
/// As for [`free`], and `ptr` is a deadline node.
unsafe fn retire_timed(ptr: *const Node) {
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
    let shape = PackedShape::new(Shape {
        root,
        kind,
        deadline,
    });
    match parent {
        Some(parent) => derive_under(parent, shape, deadline_cause),
        None => {
            let ptr = NodeRef::alloc(shape.kind(), deadline_cause, || {
                Node::new(2 * USER, state::ACTIVE, ChildList::new(), None, shape)
            });
            // SAFETY: two counts, handed to the two refs.
            unsafe { (NodeRef::adopt(ptr), NodeRef::adopt(ptr)) }
        }
    }
}

/// `with_cancel` under a node: the child inherits the parent's effective
/// deadline and root, so its shape is the parent's with the kind cleared.
/// The hot path of the library, kept free of the general case's branches.
#[inline]
pub(crate) fn derive_cancel(parent: &NodeRef) -> (NodeRef, NodeRef) {
    derive_under(parent, parent.shape.cancel_child(), None)
}

#[inline(always)]
fn derive_under(
    parent: &NodeRef,
    shape: PackedShape,
    deadline_cause: Option<Cause>,
) -> (NodeRef, NodeRef) {
    let parent_word = parent.state_word();
    if state::is_canceled(parent_word) {
        return born_canceled(parent, parent_word, shape, deadline_cause);
    }
    // Two users (the two handles) and the list's hold; no grant on the
    // parent while listed (N1): no write to the parent's count.
    let ptr = NodeRef::alloc(shape.kind(), deadline_cause, || {
        Node::new(
            (2 * USER) | LISTED,
            state::ACTIVE,
            ChildList::new(),
            Some(parent.0),
            shape,
        )
    });
    match parent.children.attach(ptr, &parent.sweep_budget) {
        Ok(swept) => {
            // SAFETY: the two users; the list holds the node.
            let pair = unsafe { (NodeRef::adopt(ptr), NodeRef::adopt(ptr)) };
            if swept {
                // The sweep may have freed a node whose cause panicked on
                // drop (held by `unlist`): raise it now that the pass is done.
                waiters::panics::resume();
            }
            pair
        }
        Err(()) => attach_refused(parent, ptr),
    }
}

/// `derive` after the parent's list refused the child: the parent closed
/// it, so it is canceled (N2). The node was never published, so nobody
/// races with us; cancel it like the walk would. Not listed after all: it
/// holds a grant on its parent instead (N1).
#[cold]
fn attach_refused(parent: &NodeRef, ptr: *const Node) -> (NodeRef, NodeRef) {
    parent.grant(1);
    // SAFETY: unpublished, so ours alone.
    unsafe { (*ptr).refs.fetch_sub(LISTED, Ordering::Relaxed) };
    // SAFETY: the two users.
    let (a, b) = unsafe { (NodeRef::adopt(ptr), NodeRef::adopt(ptr)) };
    // Unpublished, so no waiters and no callbacks to run.
    inherit(&a, parent.state_word(), &mut Callbacks::default());
    let _ = a.children.close();
    (a, b)
}

fn born_canceled(
    parent: &NodeRef,
    parent_word: usize,
    shape: PackedShape,
    deadline_cause: Option<Cause>,
) -> (NodeRef, NodeRef) {
    // SAFETY: `parent` is alive, so its word's cause is too; the new word
    // needs its own count.
    unsafe { state::retain(parent_word) };
    // Never listed: a grant on the parent (N1).
    parent.grant(1);
    let ptr = NodeRef::alloc(shape.kind(), deadline_cause, || {
        Node::new(
            2 * USER,
            parent_word,
            ChildList::new_closed(),
            Some(parent.0),
            shape,
        )
    });
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
        child.disarm_timer();
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

    /// The shape of a `with_cancel` child of a node of this shape.
    fn cancel_child(self) -> PackedShape {
        PackedShape(self.0 & !DEADLINE_KIND)
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
        parent: Option<NonNull<Node>>,
        shape: PackedShape,
    ) -> Node {
        Node {
            refs: AtomicU32::new(refs),
            sweep_budget: SweepBudget::new(),
            state: AtomicUsize::new(word),
            children,
            link: ChildLink::new(),
            waiter_gc: WaiterGc::new(),
            parent,
            shape,
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
#[inline]
pub(crate) fn cancel(node: &Node, err: Error, cause: Option<Cause>) {
    let cur = node.state_word();
    if state::is_canceled(cur) {
        // Canceled and its walk finished (`CLOSED | 0`, L3): the subtree is
        // canceled and nothing is left to claim, help or run. A handle
        // dropped after its cancel lands here.
        if node.children.is_finished() {
            return;
        }
    } else if cur == state::ACTIVE && cause.is_none() {
        // Nobody waiting, no cause to count: the claim (S1) is one CAS that
        // wakes nobody and queues no callback, and a leaf's walk is closing
        // its empty list. The common cancel, without the general machinery.
        let won = node
            .state
            .compare_exchange(
                state::ACTIVE,
                state::canceled(err, None),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if won {
            if node.children.close_if_empty() {
                // No subtree: leave the parent's list as below (L1).
                node.link.mark_deleted();
                node.disarm_timer();
                return;
            }
            return finish_cancel(node, true, Callbacks::default());
        }
    }
    cancel_slow(node, err, cause)
}

#[inline(never)]
fn cancel_slow(node: &Node, err: Error, cause: Option<Cause>) {
    let mut callbacks = Callbacks::default();
    let cur = node.state_word();
    let won = !state::is_canceled(cur)
        && node.claim_from(cur, state::canceled(err, cause), &mut callbacks);
    finish_cancel(node, won, callbacks)
}

/// The rest of a cancel after the claim (which `won` tells whether this
/// call made): the walk, the mark, the callbacks.
#[inline(never)]
fn finish_cancel(node: &Node, won: bool, mut callbacks: Callbacks) {
    let mark_first = planted!("mark_before_walk");
    if won && mark_first {
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
        // Marked, it may leave the list: by a sweep, or by its last user
        // if it is then first in the list (L7).
        if !mark_first {
            node.link.mark_deleted();
        }
        node.disarm_timer();
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
    }
    // A waker that panicked while the collection woke its survivors was
    // held (with or without callbacks): raise it here, not at some later,
    // unrelated cancel (the fast paths of `cancel` and `derive` do not look).
    waiters::panics::resume();
}

/// Planted bug for the timer's loom models: claims without propagating.
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
        Close::Owner { first, swept } => walk(node, Start::Owner(first, swept), callbacks),
        Close::Helper(_) if planted!("skip_help") => {}
        Close::Helper(unpinned) => walk(node, Start::Helper(unpinned), callbacks),
        // Every shard finished (a handle dropped after its cancel): nothing
        // to walk, no pin.
        Close::Sharded(block) if block.iter().all(|shard| shard.list.is_finished()) => {}
        Close::Sharded(_) => walk(node, Start::Sharded, callbacks),
    }
}

/// How a walk begins at its root's list: what the root's `close` returned
/// before pinning (the first child as it saw it), or `Sharded`, whose
/// shards the walk closes once pinned (L8).
enum Start {
    Owner(usize, bool),
    Helper(usize),
    Sharded,
}

/// A list this walk closed, to finish once everything below is canceled: a
/// list pointer (8-aligned: a node's own list or one of its shards) with
/// `SWEPT` in bit 0 (`close` found a sweeper running). One word, because a
/// deep chain owns one list per level: a 10⁶-deep chain's walk keeps 10⁶ of
/// these. After `finish_close` the walk rewrites the entry in place as
/// [`Finished`].
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
    fn new(list: &ChildList, swept: bool) -> Owned {
        Owned(list as *const ChildList as usize | if swept { SWEPT } else { 0 })
    }

    fn list(self) -> *const ChildList {
        (self.0 & !SWEPT) as *const ChildList
    }

    fn swept(self) -> bool {
        self.0 & SWEPT != 0
    }
}

/// The walk's two worklists: lists it closed (to finish), lists to walk.
struct Worklists {
    /// `Owned` words, rewritten in place as `Finished` ones by the finish.
    owned: InlineStack<usize, 16>,
    /// `(node, first child)` for each list still to walk.
    work: InlineStack<(*const Node, usize), 8>,
}

impl Worklists {
    /// Closes `node`'s children list — or each of its shards (L8) — and
    /// queues what there is to walk: lists this thread closed (which it
    /// owns and finishes) and lists another walker closed (which it helps).
    /// The caller is pinned and reached `node` from a list it closed or
    /// announced itself on (L6).
    fn enter(&mut self, node: &Node) {
        match node.children.close() {
            Close::Sharded(block) => {
                let shards = block.iter().skip(usize::from(planted!("skip_shard")));
                for shard in shards {
                    let close = shard.list.close();
                    self.enter_list(node, &shard.list, close);
                }
            }
            close => self.enter_list(node, &node.children, close),
        }
    }

    /// Queues `list`, a list of `node`'s (its own or a shard), after its
    /// `close` returned `close`.
    fn enter_list(&mut self, node: &Node, list: &ChildList, close: Close<'_>) {
        match close {
            Close::Owner { first: 0, .. } | Close::Helper(0) => {}
            Close::Owner { first, swept } => {
                self.owned.push(Owned::new(list, swept).0);
                if !planted!("shallow_walk") {
                    self.work.push((node, first));
                }
            }
            Close::Helper(_) if planted!("skip_help") => {}
            Close::Helper(_) => {
                let first = list.help();
                if first != 0 {
                    self.work.push((node, first));
                }
            }
            Close::Sharded(_) => unreachable!("a shard is never sharded (L8)"),
        }
    }
}

/// The iterative subtree walk (N4, N5), from `root`'s list as `start` says.
fn walk(root: &Node, start: Start, callbacks: &mut Callbacks) {
    let guard = epoch::pin();
    let mut lists = Worklists {
        owned: InlineStack::new(0),
        work: InlineStack::new((std::ptr::null(), 0)),
    };
    match start {
        Start::Sharded => lists.enter(root),
        Start::Owner(unpinned, swept) => {
            // Read the first child again now that we are pinned: a pointer
            // read before pinning may already have been released (L4). Only
            // the owner resets the head (L3), so it reads the same child.
            let first = if planted!("pin_late") {
                unpinned
            } else {
                root.children.first()
            };
            lists.owned.push(Owned::new(&root.children, swept).0);
            lists.work.push((root, first));
        }
        Start::Helper(unpinned) => {
            // A helper announces itself (L6) and may find the walk finished.
            let announced = root.children.help();
            let first = if planted!("pin_late") {
                unpinned
            } else {
                announced
            };
            if first == 0 {
                return;
            }
            lists.work.push((root, first));
        }
    }
    let mut visited = 0usize;
    while let Some((parent, first)) = lists.work.pop() {
        // SAFETY (whole loop): `parent` and every child we reach were reachable
        // after we pinned `guard` from a list this walk closed or announced
        // itself on (L6); their list references are released only after
        // that list is finished and through `defer` if we helped (L4).
        let parent_word = unsafe { (*parent).state_word() };
        let mut cur = first;
        while cur != 0 {
            let child = unsafe { &*(cur as *const Node) };
            cur = child.link.next_sibling();
            visited += 1;
            inherit(child, parent_word, callbacks);
            // Most children are leaves: an empty list closed is finished
            // (`CLOSED | 0`), with one CAS and nothing to queue.
            if !child.children.close_if_empty() {
                lists.enter(child);
            }
        }
    }
    // Finish every owned list before releasing anything: a release may free
    // a node whose own list is still to be finished.
    let mut released = Vec::new();
    for entry in lists.owned.iter_mut() {
        let list = Owned(*entry);
        // SAFETY: this walk closed the list (Owner), everything below is
        // canceled now, and `guard` was pinned before the close. The list's
        // node is alive: nothing is released before this loop ends.
        let (how, first) = unsafe { (*list.list()).finish_close(list.swept()) };
        // The node may be freed by the releases below: keep what they need.
        *entry = Finished::new(first, how).0;
        if how == Release::Epoch {
            // SAFETY: as above, and still pinned.
            unsafe { ChildList::claim_for_epoch::<Node>(first, &mut released) };
        }
    }
    // SAFETY: the references were claimed by `claim_for_epoch` while pinned
    // (which paid their grants in advance).
    unsafe { children::release_later(&guard, released) };
    // Bottom-up: a list is pushed after its owner's own list, so in reverse
    // every child is unlisted before its parent is (N1: a node with a
    // listed child must stay alive, and unlisting the parent may free it).
    for list in lists.owned.iter().rev().map(|&entry| Finished(entry)) {
        if !list.epoch() {
            // SAFETY: every owned list is finished; nobody else can reach
            // these children (L6).
            unsafe { ChildList::release_now::<Node>(list.first()) };
        }
    }
    drop(guard);
    if visited >= children::LARGE_WALK {
        // What this walk, or the walk it helped, deferred is freed now, not
        // by some later operation (a quiet process returns to its baseline).
        // Deferred releases may drop causes (foreign code): a panic is held
        // until the cancel is complete, like a waker's.
        waiters::panics::hold_from(children::collect_deferred);
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
        // A deadline node adds its 32-byte timer slot: 88 bytes, still one
        // 96-byte chunk.
        let timed = std::mem::size_of::<TimedNode>();
        assert!(timed <= 88, "TimedNode is {timed} bytes");
    }

    /// C1/C2 (`node_cache.rs`): a node whose cause panics when dropped
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
            let before = crate::tree::node::cache::NODES.cached();
            let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(ctx)));
            assert!(dropped.is_err(), "the cause's panic reaches the dropper");
            if crate::tree::node::cache::ENABLED {
                assert_eq!(
                    crate::tree::node::cache::NODES.cached(),
                    before + 1,
                    "block leaked"
                );
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
    /// are swept by the other shards' inserts, each shard in turn, and the
    /// deleted first node of a shard does not stop its sweeps.
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
        // All still linked, but for the newest if this thread's shard is the
        // maker's (thread tokens are global, so that depends on the other
        // tests): then its last user, dropped last, unlinked it (L7).
        let stranded = node.children.linked_counts::<Node>();
        assert!(stranded.iter().sum::<usize>() >= made - 1, "{stranded:?}");
        // Another thread's churn (each child dropped at once, so it leaves
        // its shard by L7): each sweep of its shard (every 64 inserts) looks
        // at the next other shard and sweeps it if it had no insert since.
        let churn = 65 * 2 * crate::tree::children::shards::shard_count();
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

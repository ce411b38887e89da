//! Deriving a child: building its node in place, inserting it in its
//! parent's list (L2), and the child of an already canceled parent, born
//! canceled (N2, N3).

use super::alloc::alloc_node;
use super::layout::{Kind, Node, PackedShape, ParentLink, Root, Shape};
use super::names::{self, Label};
use super::refs::{NodeRef, LISTED, USER};
use crate::error::Cause;
use crate::plant::planted;
use crate::sync::{AtomicU32, AtomicUsize, Ordering};
use crate::time::deadline::Deadline;
use crate::tree::children::{ChildLink, ChildList, Sweep, SweepBudget};
use crate::tree::panics;
use crate::tree::state;
use crate::tree::waiters::{Callbacks, WaiterGc};

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
    label: Option<Label>,
) -> (NodeRef, NodeRef) {
    let shape = PackedShape::new(Shape {
        root,
        kind,
        deadline,
        virtual_time: parent.is_some_and(|p| p.virtual_time()),
    });
    let tags = label.as_ref().map_or(0, Label::tags);
    let pair = match parent {
        Some(parent) => derive_under(parent, shape, deadline_cause, tags),
        None => {
            let ptr = alloc_node(shape.kind(), deadline_cause, || {
                let parent = ParentLink::new(None, tags);
                Node::new(2 * USER, state::ACTIVE, ChildList::new(), parent, shape)
            });
            // SAFETY: two counts, handed to the two refs.
            unsafe { (NodeRef::adopt(ptr), NodeRef::adopt(ptr)) }
        }
    };
    if let Some(label) = label.filter(|label| label.name.is_some()) {
        // We hold both users: the node cannot be freed (and its entry
        // removed) before the entry is in.
        names::insert(&pair.0, label);
    }
    pair
}

/// The root node of a virtual clock's tree (`virtual_clock.rs`): a
/// `with_cancel` of `context.Background` whose subtree counts time on the
/// clock (the shape bit is copied to every descendant).
pub(crate) fn derive_virtual_root() -> (NodeRef, NodeRef) {
    let shape = PackedShape::new(Shape {
        root: Root::Background,
        kind: Kind::Cancel,
        deadline: Deadline::NEVER,
        virtual_time: true,
    });
    let ptr = alloc_node(shape.kind(), None, || {
        let parent = ParentLink::new(None, 0);
        Node::new(2 * USER, state::ACTIVE, ChildList::new(), parent, shape)
    });
    // SAFETY: two counts, handed to the two refs.
    unsafe { (NodeRef::adopt(ptr), NodeRef::adopt(ptr)) }
}

/// `with_cancel` under a node: the child inherits the parent's effective
/// deadline and root, so its shape is the parent's with the kind cleared.
/// The hot path of the library, kept free of the general case's branches.
#[inline]
pub(crate) fn derive_cancel(parent: &NodeRef) -> (NodeRef, NodeRef) {
    derive_under(parent, parent.shape.cancel_child(), None, 0)
}

#[inline(always)]
pub(super) fn derive_under(
    parent: &NodeRef,
    shape: PackedShape,
    deadline_cause: Option<Cause>,
    tags: usize,
) -> (NodeRef, NodeRef) {
    let parent_word = parent.state_word();
    if state::is_canceled(parent_word) {
        return born_canceled(parent, parent_word, shape, deadline_cause, tags);
    }
    // Two users (the two handles) and the list's hold; no grant on the
    // parent while listed (N1): no write to the parent's count.
    let ptr = alloc_node(shape.kind(), deadline_cause, || {
        Node::new(
            (2 * USER) | LISTED,
            state::ACTIVE,
            ChildList::new(),
            ParentLink::new(Some(parent.0), tags),
            shape,
        )
    });
    match parent.children.attach(ptr, &parent.sweep_budget) {
        Ok(swept) => {
            // SAFETY: the two users; the list holds the node.
            let pair = unsafe { (NodeRef::adopt(ptr), NodeRef::adopt(ptr)) };
            if swept == Sweep::HandOff {
                super::refs::sweep_later(parent);
            }
            if matches!(swept, Sweep::Ran | Sweep::HandOff) {
                // The sweep may have freed a node whose cause panicked on
                // drop (held by `unlist`): raise it now that the pass is done.
                panics::resume();
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
pub(super) fn attach_refused(parent: &NodeRef, ptr: *const Node) -> (NodeRef, NodeRef) {
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

pub(super) fn born_canceled(
    parent: &NodeRef,
    parent_word: usize,
    shape: PackedShape,
    deadline_cause: Option<Cause>,
    tags: usize,
) -> (NodeRef, NodeRef) {
    // SAFETY: `parent` is alive, so its word's cause is too; the new word
    // needs its own count.
    unsafe { state::retain(parent_word) };
    // Never listed: a grant on the parent (N1).
    parent.grant(1);
    let ptr = alloc_node(shape.kind(), deadline_cause, || {
        Node::new(
            2 * USER,
            state::inherited(parent_word),
            ChildList::new_closed(),
            ParentLink::new(Some(parent.0), tags),
            shape,
        )
    });
    // SAFETY: two counts, handed to the two refs.
    unsafe { (NodeRef::adopt(ptr), NodeRef::adopt(ptr)) }
}

/// Claims `child` with a copy of its parent's canceled `parent_word` (N3).
pub(super) fn inherit(child: &Node, parent_word: usize, callbacks: &mut Callbacks) -> bool {
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
    let word = if planted!("inherit_keeps_how") {
        parent_word // planted: the child claims to have started the cancel
    } else {
        state::inherited(parent_word)
    };
    let won = child.claim_from(cur, word, callbacks);
    if won {
        child.disarm_timer();
    }
    won
}

impl Node {
    pub(super) fn new(
        refs: u32,
        word: usize,
        children: ChildList,
        parent: ParentLink,
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

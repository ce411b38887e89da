//! How the children list ends its hold on a node (the `Listed` impl): a
//! pass over one list's children grants their parent a user for each child
//! that still has users before clearing its `LISTED` bit (N1, L4).

use std::ptr::NonNull;

use super::layout::Node;
use super::refs::{free, release_users, LISTED};
use crate::plant::planted;
use crate::sync::Ordering;
use crate::tree::children::{ChildLink, Listed};
use crate::tree::panics;

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
            owner: unsafe { (*first).parent }
                .get()
                .expect("a listed node has a parent"),
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
        let owner = unsafe { (*first).parent }
            .get()
            .expect("a listed node has a parent");
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
pub(super) const GRANT_CHUNK: u32 = 64;

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
pub(super) unsafe fn unlist(node: *const Node, pass: &mut GrantPass) {
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
    panics::hold_from(|| unsafe { free(node) });
}

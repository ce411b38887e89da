//! The cancel node: one heap allocation per cancelable context, and the cancel
//! walk over its subtree.
//!
//! A node joins the three mechanisms: its state word (`tree/state.rs`,
//! which also heads the waiter stack of `tree/waiters/`), the list of its
//! children (`tree/children/`), and its own link in its parent's list.
//! Handles (`Context`, `CancelHandle`) are just counted pointers to it.
//!
//! Invariants:
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
//!   A pass that unlists nodes takes the grants it needs one at first, then
//!   in chunks of 64, and gives back the spare ones when it ends; a pass
//!   deferred through the epoch has its nodes' grants paid before it is
//!   deferred, while the parent is surely alive. A child born canceled, or
//!   refused by a closed list, takes a grant at once. A node without users
//!   at its unlist is freed by the unlister and never had a grant.
//!   Counts form no cycle: a child counts on its parent only while
//!   unlisted, and a list holds only its bit in each child; only a
//!   `mem::forget`-ten `CancelHandle` keeps a subtree alive for good, as a
//!   never-called Go `CancelFunc` does.
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
//!   So the second of two concurrent cancels, or a cancel of a node an
//!   ancestor's walk already claimed, returns only after the subtree is
//!   done (Go's second cancel waits on the mutex).
//! - **N5** No recursion: the walk keeps an explicit worklist of
//!   `(node, first child)` pairs, and release (N1) is a loop.
//!
//! Linearization: a derive at its insert CAS (L2), ordered before the
//! parent's close; or, born canceled, at the load or failed insert that
//! found the parent canceled (N2), ordered after the claim. A cancel at its
//! claim (S1); it returns after the whole subtree is canceled (N4).
//!
//! Files: [`layout`] (the fields and the shape word), [`refs`] (N1, L7,
//! N5: counted references and the free), [`alloc`] and [`cache`] (the
//! blocks, C1–C4), [`listed`] (the list's hold, N1/L4), [`derive`](mod@derive),
//! [`cancel`](mod@cancel) and [`walk`] (N2–N5), [`names`] (the side table
//! of named nodes, tagged in their parent link).

mod alloc;
#[cfg(not(loom))]
pub(crate) mod cache;
mod cancel;
mod derive;
#[cfg(feature = "tracing")]
pub(crate) mod events;
mod layout;
mod listed;
mod names;
pub(crate) mod path;
mod refs;
pub(crate) mod snapshot;
#[cfg(all(test, not(loom)))]
mod tests;
mod walk;

pub(crate) use cancel::{cancel, cancel_without_propagation, note_abandoned};
pub(crate) use derive::{derive, derive_cancel, derive_virtual_root};
#[cfg(loom)]
pub use layout::live_nodes;
pub(crate) use layout::{deadline_of, timer_slot_of, Kind, Node, Root};
pub(crate) use names::{get as name_of, Label, Name};
pub(crate) use refs::{free_timed_block, NodeRef};

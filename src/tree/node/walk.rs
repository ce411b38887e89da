//! The cancel walk: an iterative traversal of a closed subtree with an
//! explicit worklist (N4, N5), helping concurrent walks (L3) and closing
//! sharded lists (L8).

use super::derive::inherit;
use super::layout::Node;
use crate::plant::planted;
use crate::sync::epoch::{self, Guard};
use crate::tree::children::{self, ChildList, Close, Release};
use crate::tree::inline_stack::InlineStack;
use crate::tree::panics;
use crate::tree::waiters::Callbacks;

/// How a walk begins at its root's list: what the root's `close` returned
/// before pinning (the first child as it saw it), or `Sharded`, whose
/// shards the walk closes once pinned (L8).
pub(super) enum Start {
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
pub(super) struct Owned(usize);

/// A finished list: its first node, with `EPOCH` in bit 0 if its
/// references go through the epoch (`Release::Epoch`).
#[derive(Clone, Copy)]
pub(super) struct Finished(usize);

pub(super) const SWEPT: usize = 1;
pub(super) const EPOCH: usize = 1;

impl Finished {
    pub(super) fn new(first: usize, how: Release) -> Finished {
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
    pub(super) fn new(list: &ChildList, swept: bool) -> Owned {
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
pub(super) struct Worklists {
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
pub(super) fn walk(root: &Node, start: Start, callbacks: &mut Callbacks) {
    let guard = epoch::pin();
    let Some(mut lists) = Worklists::begin(root, start) else {
        return;
    };
    let visited = lists.cancel_all(callbacks);
    lists.release(guard);
    if visited >= children::LARGE_WALK {
        // What this walk, or the walk it helped, deferred is freed now, not
        // by some later operation (a quiet process returns to its baseline).
        // Deferred releases may drop causes (foreign code): a panic is held
        // until the cancel is complete, like a waker's.
        panics::hold_from(children::collect_deferred);
    }
}

impl Worklists {
    /// Enters the root's list as `start` says, once pinned; `None` if a
    /// helper finds the walk it would help already finished.
    fn begin(root: &Node, start: Start) -> Option<Worklists> {
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
                    return None;
                }
                lists.work.push((root, first));
            }
        }
        Some(lists)
    }

    /// Cancels every node the worklist reaches (N3, N4), closing each one's
    /// list and queueing the non-empty ones; returns how many it visited.
    fn cancel_all(&mut self, callbacks: &mut Callbacks) -> usize {
        let mut visited = 0usize;
        while let Some((parent, first)) = self.work.pop() {
            // SAFETY: `parent` and every child we reach were reachable
            // after we pinned `guard` from a list this walk closed or announced
            // itself on (L6); their list references are released only after
            // that list is finished and through `defer` if we helped (L4).
            let parent_word = unsafe { (*parent).state_word() };
            let mut cur = first;
            while cur != 0 {
                // SAFETY: as for `parent`.
                let child = unsafe { &*(cur as *const Node) };
                cur = child.link.next_sibling();
                visited += 1;
                inherit(child, parent_word, callbacks);
                // Most children are leaves: an empty list closed is finished
                // (`CLOSED | 0`), with one CAS and nothing to queue.
                if !child.children.close_if_empty() {
                    self.enter(child);
                }
            }
        }
        visited
    }

    /// Finishes every list this walk owns, then ends their references to
    /// their children: after the epoch for the lists a sweep may still
    /// read (L6), at once and bottom-up for the others (N1).
    fn release(mut self, guard: Guard) {
        // Finish every owned list before releasing anything: a release may free
        // a node whose own list is still to be finished.
        let mut released = Vec::new();
        for entry in self.owned.iter_mut() {
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
        for list in self.owned.iter().rev().map(|&entry| Finished(entry)) {
            if !list.epoch() {
                // SAFETY: every owned list is finished; nobody else can reach
                // these children (L6).
                unsafe { ChildList::release_now::<Node>(list.first()) };
            }
        }
        drop(guard);
    }
}

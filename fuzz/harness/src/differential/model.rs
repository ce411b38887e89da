//! The reference model: a plain tree with Go's rules, and a plain chain
//! of value layers.

use std::fmt::Write as _;
use std::time::Instant;

use ctxtree::{Error, OriginKind};

use super::values::{key_name, KEYS};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RootKind {
    Background,
    Todo,
}

impl RootKind {
    fn name(self) -> &'static str {
        match self {
            RootKind::Background => "context.Background",
            RootKind::Todo => "context.TODO",
        }
    }
}

/// The cancel part of a context: a root (never canceled; a
/// `without_cancel` context has `Root(Background)`, as in ctxtree) or a
/// model node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CancelPart {
    Root(RootKind),
    Node(usize),
}

/// What an arena context is in the model: its cancel part and its
/// nearest value layer. Two contexts are `same()` iff both are equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct At {
    pub(super) cancel: CancelPart,
    pub(super) vals: Option<usize>,
}

impl At {
    pub(super) fn root(kind: RootKind) -> At {
        At {
            cancel: CancelPart::Root(kind),
            vals: None,
        }
    }
}

pub(super) struct MNode {
    parent: Option<usize>,
    /// `(err, cause id)` once canceled.
    pub(super) canceled: Option<(Error, usize)>,
    /// Once canceled: the node its cancel started at, and how
    /// (`Context::origin`); a child taking its parent's cancel copies it.
    origin: Option<(usize, OriginKind)>,
    children: Vec<usize>,
    /// Merged nodes that this node's cancel also cancels (with its err
    /// and cause), after its subtree, as `Context::merge`'s registration.
    mergers: Vec<usize>,
    /// Canceled through a merge registration (a callback of the cancel,
    /// run after its walk): not necessarily done when other callbacks of
    /// the same cancel run.
    pub(super) via_merge: bool,
    /// Made by `merge` (it has a registration on its other input).
    merged: bool,
    deadline: Option<Instant>,
    /// The Go-style path (`Display`, deadlines shown as `*`).
    path: String,
    /// Derivation order, shared with the layers.
    seq: usize,
}

/// A value layer: a binding `(key, value)`, or a `without_cancel`
/// detach (`None`) that keeps the values above it visible.
struct MLayer {
    parent: Option<usize>,
    binding: Option<(usize, u32)>,
    path: String,
    seq: usize,
}

/// The kind of cancel node to derive.
pub(super) enum NodeKind {
    Cancel,
    Deadline(Instant),
}

#[derive(Default)]
pub(super) struct Model {
    pub(super) nodes: Vec<MNode>,
    layers: Vec<MLayer>,
    seq: usize,
}

impl Model {
    /// A child node of `at`; born canceled with the parent's err and
    /// cause if the parent is canceled. Returns the node.
    pub(super) fn derive(&mut self, at: At, kind: NodeKind) -> usize {
        let id = self.nodes.len();
        let mut path = self.path(at);
        let (parent, canceled, origin, inherited) = match at.cancel {
            CancelPart::Root(_) => (None, None, None, None),
            CancelPart::Node(p) => {
                self.nodes[p].children.push(id);
                let node = &self.nodes[p];
                (Some(p), node.canceled, node.origin, node.deadline)
            }
        };
        let deadline = match kind {
            NodeKind::Cancel => {
                path.push_str(".WithCancel");
                inherited
            }
            NodeKind::Deadline(d) => {
                path.push_str(".WithDeadline(*)");
                Some(d)
            }
        };
        self.seq += 1;
        self.nodes.push(MNode {
            parent,
            canceled,
            origin,
            children: Vec::new(),
            mergers: Vec::new(),
            via_merge: false,
            merged: false,
            deadline,
            path,
            seq: self.seq,
        });
        id
    }

    fn layer(&mut self, at: At, binding: Option<(usize, u32)>) -> usize {
        let mut path = self.path(at);
        match binding {
            Some((key, _)) => {
                let _ = write!(path, ".WithValue({})", key_name(key));
            }
            None => path.push_str(".WithoutCancel"),
        }
        self.seq += 1;
        self.layers.push(MLayer {
            parent: at.vals,
            binding,
            path,
            seq: self.seq,
        });
        self.layers.len() - 1
    }

    /// `with_value`: same cancel part, one more binding.
    pub(super) fn bind(&mut self, at: At, key: usize, v: u32) -> At {
        let vals = Some(self.layer(at, Some((key, v))));
        At {
            cancel: at.cancel,
            vals,
        }
    }

    /// `without_cancel`: the values, a never-canceled root.
    pub(super) fn detach(&mut self, at: At) -> At {
        let vals = Some(self.layer(at, None));
        At {
            cancel: CancelPart::Root(RootKind::Background),
            vals,
        }
    }

    /// Go's cancel: first writer wins on the node; then every descendant
    /// not canceled yet takes its parent's (by then canceled) err and cause.
    /// Then (as the merge registrations run after the cancel's walk) each
    /// merged node registered on a node this cancel reached is canceled
    /// with that node's err and cause, and so on, in FIFO order.
    pub(super) fn cancel(&mut self, n: usize, err: Error, cause: usize, how: OriginKind) {
        let mut merges = std::collections::VecDeque::from([(n, (err, cause))]);
        let mut direct = true;
        while let Some((n, state)) = merges.pop_front() {
            let via_merge = !std::mem::replace(&mut direct, false);
            if self.nodes[n].canceled.is_some() {
                continue;
            }
            self.nodes[n].canceled = Some(state);
            self.nodes[n].via_merge = via_merge;
            let how = if via_merge { OriginKind::Merged } else { how };
            self.nodes[n].origin = Some((n, how));
            let mut reached = vec![n];
            let mut todo = self.nodes[n].children.clone();
            while let Some(c) = todo.pop() {
                if self.nodes[c].canceled.is_none() {
                    let p = self.nodes[c].parent.expect("a child has a parent");
                    self.nodes[c].canceled = self.nodes[p].canceled;
                    self.nodes[c].origin = self.nodes[p].origin;
                    self.nodes[c].via_merge = via_merge;
                    reached.push(c);
                }
                todo.extend_from_slice(&self.nodes[c].children);
            }
            for r in reached {
                let state = self.nodes[r].canceled.expect("reached");
                merges.extend(self.nodes[r].mergers.iter().map(|&m| (m, state)));
            }
        }
    }

    /// Whether `got` (kind, depth) is a possible `Context::origin` of `at`.
    /// The model's, or, when the cancel came through merge registrations
    /// (which run in an order the model does not fix): a merged node the
    /// same cascade canceled, below the model's origin (its registration
    /// ran first there), or above it with every node between canceled by
    /// the cascade too (the walk from above reached the model's origin
    /// first).
    pub(super) fn origin_matches(&self, at: At, got: Option<(OriginKind, usize)>) -> bool {
        let want = self.origin(at);
        if got == want {
            return true;
        }
        let (Some((OriginKind::Merged, want_depth)), Some((OriginKind::Merged, depth))) =
            (want, got)
        else {
            return false;
        };
        let CancelPart::Node(leaf) = at.cancel else {
            return false;
        };
        let mut path = vec![leaf];
        while path.len() <= depth.max(want_depth) {
            match self.nodes[path[path.len() - 1]].parent {
                Some(p) => path.push(p),
                None => return false,
            }
        }
        let cascade = |k: usize| self.nodes[path[k]].via_merge;
        let origin = &self.nodes[path[depth]];
        origin.merged
            && origin.via_merge
            && (depth < want_depth || (want_depth..=depth).all(cascade))
    }

    /// `Context::origin` of `at`: how its cancel started and how many
    /// cancel nodes up.
    pub(super) fn origin(&self, at: At) -> Option<(OriginKind, usize)> {
        let CancelPart::Node(mut n) = at.cancel else {
            return None;
        };
        let (start, how) = self.nodes[n].origin?;
        let mut depth = 0;
        while n != start {
            n = self.nodes[n].parent.expect("the origin is an ancestor");
            depth += 1;
        }
        Some((how, depth))
    }

    /// `primary.merge(&other)`: a child of `primary` with the earlier
    /// deadline (a deadline child only if `other`'s is earlier than
    /// `primary`'s; expired at once if not after `now`), born with the
    /// primary's state, else expired, else with `other`'s state, else
    /// registered on `other`.
    pub(super) fn merge(&mut self, primary: At, other: At, now: Instant) -> usize {
        let mine = self.deadline(primary);
        let theirs = self.deadline(other);
        let earlier = theirs.filter(|t| mine.is_none_or(|m| t < &m));
        let n = match earlier {
            Some(d) => {
                let n = self.derive(primary, NodeKind::Deadline(d));
                if d <= now {
                    self.cancel(
                        n,
                        Error::DeadlineExceeded,
                        super::causes::DEADLINE_ID,
                        OriginKind::Deadline,
                    );
                }
                n
            }
            None => self.derive(primary, NodeKind::Cancel),
        };
        self.nodes[n].merged = true;
        if let CancelPart::Node(o) = other.cancel {
            match self.nodes[o].canceled {
                Some((err, cause)) => self.cancel(n, err, cause, OriginKind::Merged),
                None => self.nodes[o].mergers.push(n),
            }
        }
        n
    }

    pub(super) fn state(&self, at: At) -> Option<(Error, usize)> {
        match at.cancel {
            CancelPart::Root(_) => None,
            CancelPart::Node(n) => self.nodes[n].canceled,
        }
    }

    /// Whether `at` was canceled through a merge registration.
    pub(super) fn via_merge(&self, at: At) -> bool {
        match at.cancel {
            CancelPart::Root(_) => false,
            CancelPart::Node(n) => self.nodes[n].via_merge,
        }
    }

    pub(super) fn deadline(&self, at: At) -> Option<Instant> {
        match at.cancel {
            CancelPart::Root(_) => None,
            CancelPart::Node(n) => self.nodes[n].deadline,
        }
    }

    /// The nearest binding of `key`; detach layers are transparent.
    fn value(&self, at: At, key: usize) -> Option<u32> {
        let mut l = at.vals;
        while let Some(i) = l {
            if let Some((k, v)) = self.layers[i].binding {
                if k == key {
                    return Some(v);
                }
            }
            l = self.layers[i].parent;
        }
        None
    }

    pub(super) fn values(&self, at: At) -> [Option<u32>; KEYS] {
        [0, 1, 2, 3].map(|k| self.value(at, k))
    }

    /// The path of the newer of the context's cancel part and value layer.
    pub(super) fn path(&self, at: At) -> String {
        let node = match at.cancel {
            CancelPart::Root(_) => None,
            CancelPart::Node(n) => Some(&self.nodes[n]),
        };
        let layer = at.vals.map(|l| &self.layers[l]);
        match (node, layer, at.cancel) {
            (Some(n), Some(l), _) if n.seq > l.seq => n.path.clone(),
            (Some(n), None, _) => n.path.clone(),
            (_, Some(l), _) => l.path.clone(),
            (None, None, CancelPart::Root(root)) => root.name().to_string(),
            (None, None, CancelPart::Node(_)) => unreachable!(),
        }
    }
}

//! The tree dump: `ctx.tree()` walks the live subtree below a context and
//! renders it one line per context, within bounds, so that operators can
//! see what is alive under a server's root and why something ended.
//!
//! The walk holds no lock and stops no one: each list is visited under
//! the sweeper's rights for a moment (L9, `tree/children/visit.rs`), and
//! each child shown is held by a user of its own while the dump reads it.

use std::fmt;
use std::time::Duration;

use crate::context::{Context, Repr};
use crate::error::Error;
use crate::tree::children::Visit;
use crate::tree::node::{snapshot, Kind, NodeRef};

/// Bounds of a tree dump. The defaults print at most 1,000 lines.
///
/// ```
/// let limits = ctxtree::TreeLimits { max_depth: 2, ..Default::default() };
/// let (root, _h) = ctxtree::Context::background().with_cancel();
/// assert_eq!(root.tree_with(&limits).nodes.len(), 1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeLimits {
    /// Levels below the context shown (deeper children are counted on
    /// their parent's line, not shown).
    pub max_depth: usize,
    /// Children shown per context; the others are counted.
    pub max_children: usize,
    /// Contexts shown in all.
    pub max_nodes: usize,
    /// How many children not shown a context's count goes up to (a count
    /// that reaches it means "at least").
    pub count_cap: usize,
}

impl Default for TreeLimits {
    fn default() -> TreeLimits {
        TreeLimits {
            max_depth: 16,
            max_children: 32,
            max_nodes: 1000,
            count_cap: 10_000,
        }
    }
}

/// A dump of a live context subtree: one entry per context shown, in
/// depth-first order (the dumped context first, at depth 0). `Display`
/// renders it as an indented tree; the fields are plain data for an admin
/// endpoint.
///
/// ```
/// use std::time::Duration;
/// use ctxtree::Context;
///
/// let (server, _s) = Context::background().named("server").with_cancel();
/// let (request, _r) = server.named("GET /a").with_timeout(Duration::from_secs(5));
/// let (_job, _j) = request.with_cancel();
/// let tree = server.tree();
/// assert_eq!(tree.nodes.len(), 3);
/// assert_eq!(tree.nodes[1].name.as_deref(), Some("GET /a"));
/// assert_eq!(tree.nodes[1].children, 1);
/// let text = tree.to_string();
/// assert!(text.contains("WithDeadline(\"GET /a\""), "{text}");
/// ```
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ContextTree {
    /// The contexts shown, depth first.
    pub nodes: Vec<TreeNode>,
    /// Contexts left out by `max_nodes` or `max_depth` (at least: counts
    /// stop at `count_cap` per context).
    pub not_shown: usize,
}

/// One context of a [`ContextTree`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct TreeNode {
    /// Levels below the dumped context.
    pub depth: usize,
    /// `"WithCancel"`, `"WithDeadline"`, `"Merged"` (from
    /// [`Context::merge`]), or the root's name (`"context.Background"`).
    pub kind: &'static str,
    /// Its name, if it was derived with one ([`Context::named`]).
    pub name: Option<String>,
    /// How long ago it was derived: known for named contexts (the names
    /// table keeps the time; unnamed contexts carry nothing for it).
    #[cfg_attr(feature = "serde", serde(serialize_with = "serde_support::secs"))]
    pub age: Option<Duration>,
    /// Time left to its deadline (zero once passed), if it has one.
    #[cfg_attr(feature = "serde", serde(serialize_with = "serde_support::secs"))]
    pub deadline_in: Option<Duration>,
    /// Its err once it is done.
    #[cfg_attr(feature = "serde", serde(serialize_with = "serde_support::display"))]
    pub err: Option<Error>,
    /// Its cause, when it is more than the err.
    pub cause: Option<String>,
    /// Where its cancellation started ([`crate::Origin`]'s text).
    pub origin: Option<String>,
    /// Who waits on it while it is active.
    pub waiters: Waiters,
    /// The dumped context's value layers (line 0 only): the key type of
    /// each value it sees, newest first, up to `count_cap`. Value layers
    /// are not nodes of the tree — a cancelable context does not know the
    /// layers derived below it — so deeper lines have none.
    pub values: Vec<&'static str>,
    /// Live children shown below it.
    pub children: usize,
    /// Live children not shown (limits), up to `count_cap`.
    pub children_not_shown: usize,
    /// Its children list could not be read: another thread was sweeping it
    /// each time the dump tried.
    pub busy: bool,
}

/// Who waits on a context of a [`TreeNode`], by kind, counted up to the
/// dump's `count_cap` entries. Counting is a collection of the context's
/// waiter stack: it also frees the entries of waiters that gave up.
///
/// ```
/// let (ctx, _h) = ctxtree::Context::background().with_cancel();
/// let _registration = ctx.after_func(|| ());
/// let waiters = ctx.tree().nodes[0].waiters;
/// assert_eq!((waiters.callbacks, waiters.tasks, waiters.threads), (1, 0, 0));
/// assert_eq!(waiters.total(), 1);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Waiters {
    /// Threads blocked in `wait` or `wait_timeout`.
    pub threads: usize,
    /// Tasks waiting on a `done()` future (or `run`, `cancelled()`…).
    pub tasks: usize,
    /// `after_func` functions registered (merges and bridges among them).
    pub callbacks: usize,
    /// The count stopped at `count_cap`: there are more.
    pub more: bool,
}

impl Waiters {
    /// Threads, tasks and functions together.
    pub fn total(&self) -> usize {
        self.threads + self.tasks + self.callbacks
    }
}

impl Context {
    /// Dumps the live subtree below this context with the default
    /// [`TreeLimits`]. See [`ContextTree`].
    ///
    /// ```
    /// let (root, _h) = ctxtree::Context::background().with_cancel();
    /// let (_a, _ha) = root.with_cancel();
    /// assert_eq!(root.tree().nodes.len(), 2);
    /// ```
    pub fn tree(&self) -> ContextTree {
        self.tree_with(&TreeLimits::default())
    }

    /// Dumps the live subtree below this context within `limits`.
    ///
    /// ```
    /// use ctxtree::{Context, TreeLimits};
    /// let (root, _h) = Context::background().with_cancel();
    /// let kids: Vec<_> = (0..10).map(|_| root.with_cancel()).collect();
    /// let tree = root.tree_with(&TreeLimits { max_children: 3, ..TreeLimits::default() });
    /// assert_eq!(tree.nodes[0].children, 3);
    /// assert_eq!(tree.nodes[0].children_not_shown, 7);
    /// # drop(kids);
    /// ```
    pub fn tree_with(&self, limits: &TreeLimits) -> ContextTree {
        let mut tree = ContextTree::default();
        let values = self.value_types(limits.count_cap);
        let root = match &self.repr {
            Repr::Root(root) => {
                tree.nodes.push(TreeNode::root(root.name()));
                tree.nodes[0].values = values;
                return tree;
            }
            Repr::Node(node) => node.clone(),
        };
        let mut values_left = values;
        // Depth first with an explicit stack (no recursion: trees can be a
        // million deep); each entry holds a user of its node.
        let mut stack = vec![(root, 0usize)];
        while let Some((node, depth)) = stack.pop() {
            let room = limits
                .max_nodes
                .saturating_sub(tree.nodes.len() + stack.len() + 1);
            let shown = if depth < limits.max_depth {
                limits.max_children.min(room)
            } else {
                0
            };
            let (children, visit) = snapshot::children(&node, shown, limits.count_cap);
            let mut entry = TreeNode::of(&node, depth, limits.count_cap);
            entry.children = children.len();
            match visit {
                Visit::Open { more } => entry.children_not_shown = more,
                Visit::Busy => entry.busy = true,
                Visit::Closed => {}
            }
            tree.not_shown += entry.children_not_shown;
            if tree.nodes.is_empty() {
                entry.values = std::mem::take(&mut values_left);
            }
            tree.nodes.push(entry);
            stack.extend(children.into_iter().rev().map(|c| (c, depth + 1)));
        }
        tree
    }
}

impl Context {
    /// The key types of the values this context sees, newest first, at
    /// most `cap` (a detach layer, `without_cancel`, is skipped).
    fn value_types(&self, cap: usize) -> Vec<&'static str> {
        let mut types = Vec::new();
        let mut layer = self.values.as_ref();
        while let Some(l) = layer.filter(|_| types.len() < cap) {
            types.extend(l.type_name());
            layer = l.parent();
        }
        types
    }
}

impl TreeNode {
    fn root(name: &'static str) -> TreeNode {
        TreeNode {
            depth: 0,
            kind: name,
            name: None,
            age: None,
            deadline_in: None,
            err: None,
            cause: None,
            origin: None,
            waiters: Waiters::default(),
            values: Vec::new(),
            children: 0,
            children_not_shown: 0,
            busy: false,
        }
    }

    fn of(node: &NodeRef, depth: usize, count_cap: usize) -> TreeNode {
        let (census, more) = snapshot::waiters(node, count_cap);
        let waiters = Waiters {
            threads: census.threads,
            tasks: census.tasks,
            callbacks: census.callbacks,
            more,
        };
        let ctx = Context {
            repr: Repr::Node(node.clone()),
            values: None,
        };
        let err = ctx.err();
        let cause = ctx
            .cause()
            .filter(|c| c.as_context_error() != err)
            .map(|c| c.to_string());
        TreeNode {
            depth,
            kind: match node.kind() {
                _ if snapshot::merged(node) => "Merged",
                Kind::Cancel => "WithCancel",
                Kind::Deadline => "WithDeadline",
            },
            name: ctx.name().map(|n| n.into_owned()),
            age: snapshot::born(node).map(|born| born.elapsed()),
            deadline_in: ctx.remaining(),
            err,
            cause,
            origin: ctx.origin().map(|o| o.to_string()),
            waiters,
            ..TreeNode::root("")
        }
    }
}

/// Two spaces per level, one context per line:
/// `WithDeadline("GET /a") in 4.998s · 1 child · waiting`, then
/// `… 7 more children` lines where limits cut.
impl fmt::Display for ContextTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for node in &self.nodes {
            writeln!(f, "{node}")?;
        }
        if self.not_shown > 0 {
            writeln!(f, "({} contexts not shown)", self.not_shown)?;
        }
        Ok(())
    }
}

impl fmt::Display for TreeNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:indent$}{}", "", self.kind, indent = 2 * self.depth)?;
        if let Some(name) = &self.name {
            write!(f, "({name:?})")?;
        }
        if let Some(left) = self.deadline_in {
            write!(f, " in {left:.3?}")?;
        }
        if let Some(age) = self.age {
            write!(f, " · age {age:.3?}")?;
        }
        if !self.values.is_empty() {
            write!(f, " · values {}", self.values.join(", "))?;
        }
        let children = self.children + self.children_not_shown;
        if children > 0 {
            let s = if children == 1 { "" } else { "ren" };
            write!(f, " · {children} child{s}")?;
            if self.children_not_shown > 0 {
                write!(f, " ({} not shown)", self.children_not_shown)?;
            }
        }
        if self.busy {
            f.write_str(" · children busy")?;
        }
        let waiters = self.waiters;
        if waiters.total() > 0 {
            let more = if waiters.more { "+" } else { "" };
            write!(f, " · {}{more} waiting", waiters.total())?;
            let kinds = [
                (waiters.threads, "thread"),
                (waiters.tasks, "task"),
                (waiters.callbacks, "after_func"),
            ];
            let mut sep = " (";
            for (n, what) in kinds.into_iter().filter(|(n, _)| *n > 0) {
                let s = if n == 1 { "" } else { "s" };
                write!(f, "{sep}{n} {what}{s}")?;
                sep = ", ";
            }
            f.write_str(")")?;
        }
        if let Some(err) = self.err {
            write!(f, " · {err}")?;
            if let Some(cause) = &self.cause {
                write!(f, ": {cause}")?;
            }
            if let Some(origin) = &self.origin {
                write!(f, " ({origin})")?;
            }
        }
        Ok(())
    }
}

/// How the dump's data serializes (feature `serde`): durations as seconds
/// (`f64`), errors as their message.
#[cfg(feature = "serde")]
mod serde_support {
    use std::time::Duration;

    use serde::Serializer;

    pub(super) fn secs<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn display<S: Serializer>(
        e: &Option<crate::Error>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match e {
            Some(e) => s.collect_str(e),
            None => s.serialize_none(),
        }
    }
}

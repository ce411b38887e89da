//! Where a cancellation started: [`Context::origin`] reads the `H` bits the
//! claim wrote into each state word (S4, `tree/state.rs`) and follows
//! inherited words up the parent chain. Nothing is stored for it beyond
//! those bits, so it costs nothing until asked.

use std::fmt;

use crate::context::Context;
use crate::tree::node::path::write_node_path;
use crate::tree::node::Node;
use crate::tree::state::{self, How};

/// How a cancellation started: the kind of event that canceled the context
/// an [`Origin`] names.
///
/// ```
/// use ctxtree::{Context, OriginKind};
///
/// let (ctx, handle) = Context::background().with_cancel();
/// drop(handle);
/// assert_eq!(ctx.origin().unwrap().kind(), OriginKind::HandleDropped);
/// ```
///
/// `#[non_exhaustive]`: a later release may add kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OriginKind {
    /// [`CancelHandle::cancel`](crate::CancelHandle::cancel) or
    /// [`cancel_with_cause`](crate::CancelHandle::cancel_with_cause).
    Cancel,
    /// The [`CancelHandle`](crate::CancelHandle) was dropped.
    HandleDropped,
    /// The context's own deadline passed.
    Deadline,
    /// A context it was [merged](Context::merge) with ended (the primary
    /// parent's cancel is inherited like any parent's).
    Merged,
    /// The tokio `CancellationToken` it was bridged to was cancelled
    /// (feature `tokio`).
    TokenBridge,
    /// The request it belongs to was dropped before it finished: the client
    /// went away (feature `tower`).
    RequestAborted,
    /// Its task group canceled it: a task failed, panicked, or the group was
    /// shut down or dropped.
    TaskGroup,
}

/// Where a done context's cancellation started: which context (itself or
/// an ancestor) and how. Returned by [`Context::origin`].
///
/// ```
/// use std::time::Duration;
/// use ctxtree::{Context, OriginKind};
///
/// let (server, shutdown) = Context::background().with_cancel();
/// let (request, _end) = server.with_timeout(Duration::from_secs(30));
/// let (step, _end_step) = request.with_cancel();
/// shutdown.cancel();
///
/// let origin = step.origin().unwrap();
/// assert_eq!(origin.kind(), OriginKind::Cancel);
/// assert_eq!(origin.depth(), 2); // step → request → server
/// assert!(origin.is(&server));
/// assert_eq!(
///     origin.to_string(),
///     "context.Background.WithCancel was canceled by its handle"
/// );
/// ```
#[derive(Clone)]
pub struct Origin {
    /// The context asked: it keeps every ancestor up to the origin alive.
    asked: Context,
    depth: usize,
    how: How,
    kind: OriginKind,
}

impl Context {
    /// Where this context's cancellation started, once it is done: the
    /// context (this one, or the ancestor whose cancel reached it) and how
    /// it was canceled. `None` while the context is not done, and for the
    /// roots, which never are.
    ///
    /// Costs nothing until called: the kind is recorded in the state word by
    /// the same atomic step that records the err, and the call follows the
    /// chain of contexts that inherited it (one load per level).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxtree::{Context, OriginKind};
    ///
    /// let (ctx, _h) = Context::background().with_timeout(Duration::ZERO);
    /// let origin = ctx.origin().unwrap();
    /// assert_eq!((origin.kind(), origin.depth()), (OriginKind::Deadline, 0));
    ///
    /// let (live, _h) = Context::background().with_cancel();
    /// assert!(live.origin().is_none());
    /// ```
    pub fn origin(&self) -> Option<Origin> {
        let (depth, how) = find(self.node()?)?;
        Some(Origin {
            asked: self.clone(),
            depth,
            how,
            kind: kind_of(how),
        })
    }
}

impl Origin {
    /// How the cancellation started.
    ///
    /// ```
    /// let (ctx, h) = ctxtree::Context::background().with_cancel();
    /// h.cancel();
    /// assert_eq!(ctx.origin().unwrap().kind(), ctxtree::OriginKind::Cancel);
    /// ```
    pub fn kind(&self) -> OriginKind {
        self.kind
    }

    /// How many cancelable ancestors up the cancellation started: 0 for the
    /// context itself, 1 for the context it was derived from, and so on
    /// (value layers do not count, as they cannot be canceled).
    ///
    /// ```
    /// let (parent, h) = ctxtree::Context::background().with_cancel();
    /// let (child, _child_handle) = parent.with_value(7u8).with_cancel();
    /// h.cancel();
    /// assert_eq!(child.origin().unwrap().depth(), 1);
    /// ```
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// True when the cancellation started at `ctx` (any context sharing its
    /// cancel part: its clones and the value layers derived from it).
    ///
    /// ```
    /// let (request, h) = ctxtree::Context::background().with_cancel();
    /// let (task, _t) = request.with_cancel();
    /// h.cancel();
    /// let origin = task.origin().unwrap();
    /// assert!(origin.is(&request) && !origin.is(&task));
    /// ```
    pub fn is(&self, ctx: &Context) -> bool {
        match ctx.node() {
            Some(node) => std::ptr::eq(self.node(), &**node),
            None => false,
        }
    }

    /// The node the cancellation started at.
    fn node(&self) -> &Node {
        let mut node: &Node = self.asked.node().expect("an origin has a node");
        for _ in 0..self.depth {
            node = node.parent().expect("S4: the origin is an ancestor");
        }
        node
    }
}

/// The depth and kind of the claim `node`'s cancel came from (S4).
fn find(mut node: &Node) -> Option<(usize, How)> {
    let mut word = node.state_word();
    if !state::is_canceled(word) {
        return None;
    }
    let mut depth = 0;
    loop {
        let how = state::how_of(word);
        if how != How::Inherited {
            return Some((depth, how));
        }
        // An inherited word was copied from the parent (S4): it exists and
        // its word is canceled (N2).
        node = node.parent().expect("S4: an inherited word has a parent");
        word = node.state_word();
        depth += 1;
    }
}

fn kind_of(how: How) -> OriginKind {
    match how {
        How::Cancel | How::Inherited => OriginKind::Cancel,
        How::HandleDropped => OriginKind::HandleDropped,
        How::Deadline => OriginKind::Deadline,
        How::Merged => OriginKind::Merged,
        How::TokenBridge => OriginKind::TokenBridge,
        How::RequestAborted => OriginKind::RequestAborted,
        How::TaskGroup => OriginKind::TaskGroup,
    }
}

/// `<path of the origin> <what happened>`, e.g.
/// `context.Background.WithDeadline([-1.000ms]) passed its deadline`.
impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_node_path(f, self.node(), self.asked.now())?;
        f.write_str(self.how.sentence())
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Origin")
            .field("kind", &self.kind)
            .field("depth", &self.depth)
            .field("at", &format_args!("{self}"))
            .finish()
    }
}

//! How contexts print: `Display` is Go's derivation path
//! (`context.Background.WithCancel.WithValue(app::RequestId)`); `Debug`
//! adds the err.

use std::fmt;

use crate::context::{Context, Repr};
use crate::handle::{CancelHandle, Canceler};
use crate::time::Deadline;
use crate::tree::node::path::write_node;
use crate::tree::node::Node;
use crate::values::ValuesRef;

/// A stretch of the path between two `without_cancel`s: its cancel part
/// and the value layers derived in it, oldest first.
type Segment<'a> = (&'a Repr, Vec<&'a ValuesRef>);

/// Go-style derivation path, root first: `context.Background.WithCancel`,
/// `context.TODO.WithDeadline([1.500s]).WithValue(app::RequestId)`,
/// `context.Background.WithCancel.WithoutCancel`.
///
/// The cancel chain and the value chain are printed interleaved in the order
/// they were derived: each value layer remembers the cancel node it was
/// derived under. Iterative throughout (chains can be a million deep).
impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let now = self.now();
        for (i, (repr, layers)) in segments(self).iter().rev().enumerate() {
            if i == 0 {
                let root = match repr {
                    Repr::Root(root) => *root,
                    Repr::Node(node) => node.root(),
                };
                f.write_str(root.name())?;
            } else {
                f.write_str(".WithoutCancel")?;
            }
            write_segment(f, repr, layers, now)?;
        }
        Ok(())
    }
}

/// The context's segments, separated by `without_cancel`, newest first.
fn segments(ctx: &Context) -> Vec<Segment<'_>> {
    let mut segments = Vec::new();
    let (mut repr, mut values) = (&ctx.repr, ctx.values.as_ref());
    loop {
        let mut layers = Vec::new();
        let mut detach = None;
        while let Some(layer) = values {
            if layer.type_name().is_none() {
                detach = Some(layer);
                break;
            }
            layers.push(layer);
            values = layer.parent();
        }
        layers.reverse();
        segments.push((repr, layers));
        match detach {
            Some(layer) => {
                repr = layer.origin::<Repr>().expect("a detach layer");
                values = layer.parent();
            }
            None => return segments,
        }
    }
}

/// One segment's cancel nodes, root first, each followed by the value
/// layers derived under it.
fn write_segment(
    f: &mut fmt::Formatter<'_>,
    repr: &Repr,
    layers: &[&ValuesRef],
    now: Deadline,
) -> fmt::Result {
    let mut nodes = Vec::new();
    let mut cur: Option<&Node> = match repr {
        Repr::Root(_) => None,
        Repr::Node(node) => Some(node),
    };
    while let Some(n) = cur {
        nodes.push(n);
        cur = n.parent();
    }
    nodes.reverse();
    let mut layers = layers.iter().peekable();
    let mut print_layers_at = |anchor: usize, f: &mut fmt::Formatter<'_>| {
        while let Some(layer) = layers.next_if(|l| l.anchor() == anchor) {
            write!(f, ".WithValue({})", layer.type_name().unwrap_or("?"))?;
        }
        Ok::<(), fmt::Error>(())
    };
    print_layers_at(0, f)?;
    for node in nodes {
        write_node(f, node, now)?;
        print_layers_at(node as *const Node as usize, f)?;
    }
    // Unreachable unless an anchor was missed: print, do not drop.
    for layer in layers {
        write!(f, ".WithValue({})", layer.type_name().unwrap_or("?"))?;
    }
    Ok(())
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("path", &format_args!("{self}"))
            .field("err", &self.err())
            .field("origin", &self.origin().map(|o| o.to_string()))
            .finish()
    }
}

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelHandle")
            .field("canceled", &self.is_canceled())
            .finish()
    }
}

impl fmt::Debug for Canceler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Canceler")
            .field("canceled", &self.is_canceled())
            .finish()
    }
}

//! A model of the six atomic read-modify-writes that ctxtree's derive +
//! cancel + drop of a leaf needs, with the same dependences and nothing
//! else: take a node from a free list, link it at the parent's head (CAS),
//! claim its state (CAS), close its empty list (CAS), mark its link
//! (fetch_or), drop the handle's count (fetch_sub), unlink it from the
//! parent's head (CAS) and put it back on the free list.
//!
//! Not part of the build: `rustc -O docs/floor/leaf_rmw_floor.rs -o /tmp/leaf && /tmp/leaf`
//! (docs/benchmarks.md, "What limits ctxtree": 13 ns per op on the 2-core
//! machine, against ctxtree's 25). `/tmp/leaf 5` leaves out the close: what
//! a state word merged with the children head (claim and close in one RMW,
//! docs/design.md §6) would need at least.

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::*};
use std::time::Instant;

#[repr(C)]
struct Node {
    state: AtomicUsize,
    children: AtomicUsize,
    refs: AtomicU32,
    budget: u32,
    link: AtomicUsize,
    gc: usize,
    parent: usize,
    shape: u64,
}

fn node(refs: u32, parent: usize) -> Node {
    Node {
        state: AtomicUsize::new(0),
        children: AtomicUsize::new(0),
        refs: AtomicU32::new(refs),
        budget: 0,
        link: AtomicUsize::new(0),
        gc: 0,
        parent,
        shape: black_box(7),
    }
}

#[inline(never)]
fn op(parent: &Node, free: &mut Vec<*mut Node>, merged: bool) {
    let p = free.pop().unwrap_or_else(|| Box::into_raw(Box::new(node(0, 0))));
    // SAFETY: `p` is a block of `Node` no one else uses; written in place.
    unsafe { p.write(node(5, parent as *const Node as usize)) };
    // SAFETY: just written.
    let n = black_box(unsafe { &*p });
    let cur = parent.children.load(Acquire);
    n.link.store(cur, Relaxed);
    assert!(parent.children.compare_exchange(cur, p as usize, Release, Acquire).is_ok());
    // cancel: claim, close the empty list, mark
    let s = n.state.load(Acquire);
    assert!(n.state.compare_exchange(s, 9, AcqRel, Acquire).is_ok());
    if !merged {
        assert!(n.children.compare_exchange(0, 1, AcqRel, Acquire).is_ok());
    } else {
        n.children.store(1, Relaxed); // stands in for the merged word's closed state
    }
    n.link.fetch_or(1, AcqRel);
    // the handle's drop: already canceled and finished; one decrement
    assert!(n.state.load(Acquire) & 1 == 1 && n.children.load(Acquire) == 1);
    if n.refs.load(Acquire) != 3 {
        n.refs.fetch_sub(2, Release);
    }
    // the context's drop: last user, first in the list: unlink, free
    assert_eq!(n.refs.load(Acquire), 3);
    let link = n.link.load(Relaxed);
    assert!(parent.children.compare_exchange(p as usize, link & !1, AcqRel, Acquire).is_ok());
    free.push(p);
}

fn main() {
    let merged = match std::env::args().nth(1).as_deref() {
        None | Some("6") => false,
        Some("5") => true,
        Some(other) => panic!("argument: 6 (default) or 5 RMWs, not {}", other),
    };
    let parent = node(5, 0);
    let mut free = Vec::with_capacity(64);
    for _ in 0..5 {
        let n = 20_000_000u64;
        let t = Instant::now();
        for _ in 0..n {
            op(&parent, &mut free, merged);
        }
        println!("{:.2} ns per op", t.elapsed().as_nanos() as f64 / n as f64);
    }
}

//! A model of the three atomic read-modify-writes per child that ctxtree's
//! cancel walk needs over a parent's 1,000 children: claim the child's
//! state (CAS) and close its empty list (CAS) while walking the list, then
//! drop the list's hold on it (fetch_sub) in a second pass. Argument 1 adds
//! a prefetch of the next child (it changes nothing: each locked
//! instruction waits for the one before). Argument 2 is the two-RMW walk
//! measured and not kept (docs/design.md §6, "Why a leaf's empty list is
//! closed with a CAS"): the claim, then a load of the child's list instead
//! of the closing CAS, so two RMWs per child.
//!
//! Not part of the build: `rustc -O docs/floor/fanout_rmw_floor.rs -o /tmp/fan && /tmp/fan 0`
//! (docs/benchmarks.md, "What limits ctxtree").

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
    rest: [usize; 3],
}

fn main() {
    let arg = std::env::args().nth(1);
    let prefetch = arg.as_deref() == Some("1");
    let two_rmws = arg.as_deref() == Some("2");
    let n = 1000;
    let nodes: Vec<Box<Node>> = (0..n)
        .map(|_| {
            Box::new(Node {
                state: AtomicUsize::new(0),
                children: AtomicUsize::new(0),
                refs: AtomicU32::new(5),
                budget: 0,
                link: AtomicUsize::new(0),
                rest: [0; 3],
            })
        })
        .collect();
    let mut best = f64::MAX;
    for _ in 0..2000 {
        for (i, node) in nodes.iter().enumerate() {
            let next = nodes.get(i + 1).map_or(0, |n| &**n as *const Node as usize);
            node.link.store(next, Relaxed);
            node.state.store(0, Relaxed);
            node.children.store(0, Relaxed);
            node.refs.store(5, Relaxed);
        }
        let t = Instant::now();
        let mut cur = &*nodes[0] as *const Node as usize;
        while cur != 0 {
            // SAFETY: every link names a node of `nodes`, alive here.
            let c = unsafe { &*(cur as *const Node) };
            let next = c.link.load(Acquire);
            if prefetch && next != 0 {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: a prefetch never faults.
                unsafe {
                    std::arch::x86_64::_mm_prefetch(next as *const i8, std::arch::x86_64::_MM_HINT_T0)
                };
            }
            let s = c.state.load(Acquire);
            if two_rmws {
                let _ = c.state.compare_exchange(s, 9, SeqCst, Acquire);
                black_box(c.children.load(SeqCst));
            } else {
                let _ = c.state.compare_exchange(s, 9, AcqRel, Acquire);
                let h = c.children.load(Acquire);
                let _ = c.children.compare_exchange(h, h | 1, AcqRel, Acquire);
            }
            cur = next & !7;
        }
        let mut cur = &*nodes[0] as *const Node as usize;
        while cur != 0 {
            // SAFETY: as above.
            let c = unsafe { &*(cur as *const Node) };
            let next = c.link.load(Acquire);
            black_box(c.refs.fetch_sub(1, Release));
            cur = next & !7;
        }
        best = best.min(t.elapsed().as_nanos() as f64 / n as f64);
    }
    println!("best {best:.2} ns per child");
}

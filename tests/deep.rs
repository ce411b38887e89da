//! A million-deep chain of `with_cancel`, canceled and dropped in every order
//! on a 256 KiB thread stack: cancel, propagation, `Display` and freeing must
//! all be iterative (no recursion over the depth).
//!
//! Freeing is observed through a sentinel cause: the top node of each chain
//! is canceled with a cause whose drop sets a flag. Every node holds its
//! parent, so the top node (and with it the cause) is freed only after the
//! whole chain is. The library hands the children-list references to
//! crossbeam-epoch, so the frees run when epoch garbage is collected; the
//! tests drive that with ordinary library use on the small stack.

use std::error::Error as StdError;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ctxtree::{CancelHandle, Cause, Context, Error};

const STACK: usize = 256 * 1024;

fn depth() -> usize {
    if cfg!(miri) {
        1_000
    } else {
        1_000_000
    }
}

/// Runs `f` on a thread with a 256 KiB stack and reports how long it took.
fn on_small_stack(name: &str, f: impl FnOnce() + Send + 'static) {
    let start = Instant::now();
    thread::Builder::new()
        .name(name.to_owned())
        .stack_size(STACK)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap_or_else(|_| panic!("{name} panicked"));
    eprintln!("{name}: {:?}", start.elapsed());
}

/// An error whose drop raises a flag.
#[derive(Debug)]
struct DropFlag(Arc<AtomicBool>);

impl fmt::Display for DropFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sentinel")
    }
}

impl StdError for DropFlag {}

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A cause that reports when its last holder is gone.
fn sentinel() -> (Cause, Arc<AtomicBool>) {
    let flag = Arc::new(AtomicBool::new(false));
    (Cause::from(DropFlag(flag.clone())), flag)
}

/// Uses the library (cancels that walk a child, so they pin the epoch and
/// defer garbage like any user would) until `freed` is set: the chain's
/// deferred releases ran and freed it, here or on another thread.
fn use_until_freed(freed: &AtomicBool) {
    let start = Instant::now();
    let mut ops = 0u64;
    while !freed.load(Ordering::SeqCst) {
        let (p, h) = Context::background().with_cancel();
        let (_c, _ch) = p.with_cancel();
        h.cancel();
        ops += 1;
        assert!(
            start.elapsed() < Duration::from_secs(if cfg!(miri) { 3600 } else { 60 }),
            "the chain was never freed ({ops} operations later)"
        );
    }
    eprintln!("  freed after {ops} more operations, {:?}", start.elapsed());
}

/// `ctxs[0]` is a child of background, `ctxs[i]` a child of `ctxs[i - 1]`.
fn chain(n: usize) -> (Vec<Context>, Vec<CancelHandle>) {
    let mut ctxs: Vec<Context> = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    let (first, h) = Context::background().with_cancel();
    ctxs.push(first);
    handles.push(h);
    for i in 1..n {
        let (c, h) = ctxs[i - 1].with_cancel();
        ctxs.push(c);
        handles.push(h);
    }
    (ctxs, handles)
}

#[track_caller]
fn assert_all_canceled_with(ctxs: &[Context], cause: &Cause) {
    for (i, c) in ctxs.iter().enumerate() {
        assert_eq!(c.err(), Some(Error::Canceled), "depth {i}");
        if i % 1024 == 0 || i == ctxs.len() - 1 {
            assert_eq!(c.cause().as_ref(), Some(cause), "depth {i}");
        }
    }
}

/// Drops a vector's elements from the last to the first.
fn drop_from_back<T>(mut v: Vec<T>) {
    while let Some(x) = v.pop() {
        drop(x);
    }
}

/// Drops a vector's elements from the first to the last.
fn drop_from_front<T>(v: Vec<T>) {
    for x in v {
        drop(x);
    }
}

#[test]
fn cancel_root_then_drop_root_to_leaf() {
    on_small_stack("deep (i) root→leaf", || {
        let (ctxs, handles) = chain(depth());
        let leaf = ctxs.last().unwrap().clone();
        assert!(!leaf.is_done());
        let (cause, freed) = sentinel();
        handles[0].cancel_with_cause(cause.clone());
        assert_all_canceled_with(&ctxs, &cause);
        drop_from_front(ctxs);
        drop_from_front(handles);
        assert_eq!(leaf.cause().as_ref(), Some(&cause));
        // The leaf still names its whole chain.
        let (born, born_h) = leaf.with_cancel();
        assert!(born.is_done());
        drop((born, born_h, leaf, cause));
        use_until_freed(&freed);
    });
}

#[test]
fn cancel_root_then_drop_leaf_to_root() {
    on_small_stack("deep (ii) leaf→root", || {
        let (ctxs, handles) = chain(depth());
        let (cause, freed) = sentinel();
        handles[0].cancel_with_cause(cause.clone());
        assert_all_canceled_with(&ctxs, &cause);
        drop(cause);
        drop_from_back(ctxs);
        drop_from_back(handles);
        use_until_freed(&freed);
    });
}

#[test]
fn drop_handles_leaf_first_then_contexts() {
    on_small_stack("deep (iii) handles leaf-first", || {
        let (ctxs, mut handles) = chain(depth());
        let top = handles.remove(0);
        drop_from_back(handles); // each drop cancels one node, leaf first
        let (cause, freed) = sentinel();
        top.cancel_with_cause(cause); // as dropping it would, with a sentinel
        drop(top);
        let plain = Cause::from(Error::Canceled);
        assert_all_canceled_with(&ctxs[1..], &plain);
        assert_eq!(ctxs[0].cause().unwrap().to_string(), "sentinel");
        drop_from_back(ctxs);
        use_until_freed(&freed);
    });
}

#[test]
fn cancel_leaf_first_then_root() {
    on_small_stack("deep (iv) leaf then root", || {
        let (ctxs, handles) = chain(depth());
        let leaf_cause = Cause::msg("leaf");
        handles
            .last()
            .unwrap()
            .cancel_with_cause(leaf_cause.clone());
        assert!(ctxs.last().unwrap().is_done());
        assert!(!ctxs[ctxs.len() - 2].is_done());
        let (root_cause, freed) = sentinel();
        handles[0].cancel_with_cause(root_cause.clone());
        let (leaf, rest) = ctxs.split_last().unwrap();
        assert_all_canceled_with(rest, &root_cause);
        assert_eq!(leaf.cause(), Some(leaf_cause));
        drop(root_cause);
        drop_from_front(handles);
        drop_from_back(ctxs);
        use_until_freed(&freed);
    });
}

#[test]
fn drop_handles_root_first_without_cancel() {
    on_small_stack("deep (v) handles root-first", || {
        let (ctxs, mut handles) = chain(depth());
        let (cause, freed) = sentinel();
        let top = handles.remove(0);
        top.cancel_with_cause(cause.clone()); // as dropping it would
        drop(top);
        drop_from_front(handles);
        assert_all_canceled_with(&ctxs, &cause);
        drop(cause);
        drop_from_front(ctxs);
        use_until_freed(&freed);
    });
}

#[test]
fn drop_contexts_first_then_handles() {
    on_small_stack("deep (vi) contexts first", || {
        let (ctxs, mut handles) = chain(depth());
        let leaf = ctxs.last().unwrap().clone();
        drop_from_back(ctxs);
        assert!(!leaf.is_done());
        let (cause, freed) = sentinel();
        let top = handles.remove(0);
        top.cancel_with_cause(cause);
        drop(top);
        drop_from_front(handles);
        assert!(leaf.is_done());
        assert_eq!(leaf.cause().unwrap().to_string(), "sentinel");
        drop(leaf); // the last handle on the chain
        use_until_freed(&freed);
    });
}

#[test]
fn drop_uncanceled_chain_by_leaf_reference() {
    on_small_stack("deep (vii) only the leaf keeps the chain", || {
        let (ctxs, mut handles) = chain(depth());
        let leaf = ctxs.last().unwrap().clone();
        drop_from_front(ctxs);
        // Cancel from the middle down, then everything above.
        let mid = handles.len() / 2;
        handles[mid].cancel();
        assert!(leaf.is_done());
        let top = handles.remove(0);
        drop_from_back(handles);
        let (cause, freed) = sentinel();
        top.cancel_with_cause(cause);
        drop(top);
        drop(leaf);
        use_until_freed(&freed);
    });
}

#[test]
fn deep_display_on_a_small_stack() {
    on_small_stack("deep display", || {
        let n = if cfg!(miri) { 100 } else { 10_000 };
        let (ctxs, _handles) = chain(n);
        let s = ctxs.last().unwrap().to_string();
        assert!(s.starts_with("context.Background.WithCancel.WithCancel"));
        assert_eq!(
            s.len(),
            "context.Background".len() + n * ".WithCancel".len()
        );
        let dbg = format!("{:?}", ctxs.last().unwrap());
        assert!(dbg.len() > s.len());
    });
}

#[test]
fn deep_wait_and_done_on_a_small_stack() {
    on_small_stack("deep wait", || {
        let (ctxs, handles) = chain(depth() / 10);
        let leaf = ctxs.last().unwrap().clone();
        let waiter = thread::Builder::new()
            .stack_size(STACK)
            .spawn(move || leaf.wait_timeout(Duration::from_secs(60)))
            .unwrap();
        handles[0].cancel();
        // A lost wake-up fails after a minute instead of hanging.
        assert_eq!(waiter.join().unwrap(), Some(Error::Canceled));
        assert!(ctxs.last().unwrap().is_done());
        assert_eq!(
            futures::executor::block_on(ctxs.last().unwrap().done()),
            Error::Canceled
        );
    });
}

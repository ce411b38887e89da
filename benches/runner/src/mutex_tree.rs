//! A Go-style mutex context tree: the baseline ctxtree is measured against.
//!
//! It follows Go's `context.cancelCtx` closely, written to be fast rather than
//! to lose:
//! - per node, one `Mutex` guarding the child set, the err and cause, and the
//!   waiter bookkeeping, plus an `AtomicBool` so `is_done()` is one lock-free
//!   load (Go's `atomic.Value` done channel plays that role);
//! - the child set is a `Vec` with each child's index stored in the child
//!   (swap-remove in O(1)), instead of Go's map;
//! - a child removes itself from its parent when it is canceled (Go's
//!   `removeChild`), and dropping its handle cancels it, so the parent never
//!   accumulates dead children;
//! - cancel is iterative with an explicit stack (Go recurses while holding the
//!   parent's lock), and the lock is never held while locking another node;
//! - threads block on a `Condvar` that is only signalled when a thread waits;
//!   tasks register `Waker`s in a lazily allocated slab;
//! - deadlines go to one timer thread with a `BinaryHeap` behind a mutex (Go's
//!   runtime timers); a canceled timer is deleted lazily and the heap is
//!   purged when more than half of it is stale (as Go's timer heap does);
//! - dropping a deep chain releases parents in a loop, not recursively.
//!
//! The public entry points are `#[inline(never)]`: the runner calls ctxtree
//! and tokio-util across a crate boundary (no LTO), so their functions are
//! calls, and this baseline, compiled inside the runner, must not get
//! inlined into the benchmark loops where they cannot.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

/// Why a context ended (Go's `Canceled` / `DeadlineExceeded`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Err {
    Canceled,
    DeadlineExceeded,
}

/// A cancel cause, as Go's `context.Cause` stores one (never set by the
/// benchmarks, kept so the node has Go's fields).
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

struct Node {
    /// Set (Release) after `err` under the lock; read without the lock.
    done: AtomicBool,
    inner: Mutex<Inner>,
    /// Blocked threads wait here; signalled only if `Inner::threads > 0`.
    cond: Condvar,
    /// Nearest cancelable ancestor; `None` under the background root.
    parent: Option<Arc<Node>>,
    /// This node's index in its parent's `children`; written only under the
    /// parent's lock.
    slot: AtomicUsize,
    /// Effective deadline (own or inherited).
    deadline: Option<Instant>,
    /// This node has its own entry in the timer heap.
    timed: bool,
}

#[derive(Default)]
struct Inner {
    children: Vec<Arc<Node>>,
    err: Option<Err>,
    cause: Option<Cause>,
    /// Threads blocked in `wait`.
    threads: u32,
    /// Task wakers, allocated on the first `done()` poll.
    wakers: Option<Box<Wakers>>,
}

#[derive(Default)]
struct Wakers {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Node {
    fn new(parent: Option<Arc<Node>>, deadline: Option<Instant>, timed: bool) -> Node {
        Node {
            done: AtomicBool::new(false),
            inner: Mutex::new(Inner::default()),
            cond: Condvar::new(),
            parent,
            slot: AtomicUsize::new(usize::MAX),
            deadline,
            timed,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic never happens under these locks; recover anyway.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims the node under its lock: sets err, takes the children and the
    /// waiters. `None` if it was already canceled.
    fn claim(&self, err: Err, cause: Option<&Cause>) -> Option<Claimed> {
        let mut g = self.lock();
        if g.err.is_some() {
            return None;
        }
        g.err = Some(err);
        g.cause = cause.cloned();
        self.done.store(true, Ordering::Release);
        let claimed = Claimed {
            children: mem::take(&mut g.children),
            wakers: g.wakers.take(),
        };
        if g.threads > 0 {
            self.cond.notify_all();
        }
        drop(g);
        Some(claimed)
    }

    /// Go's `removeChild`: O(1) swap-remove by the index stored in the child.
    fn remove_child(&self, child: &Arc<Node>) {
        let mut g = self.lock();
        let idx = child.slot.load(Ordering::Relaxed);
        if idx < g.children.len() && Arc::ptr_eq(&g.children[idx], child) {
            let removed = g.children.swap_remove(idx);
            if let Some(moved) = g.children.get(idx) {
                moved.slot.store(idx, Ordering::Relaxed);
            }
            drop(g);
            drop(removed);
        }
    }
}

struct Claimed {
    children: Vec<Arc<Node>>,
    wakers: Option<Box<Wakers>>,
}

impl Claimed {
    fn wake(&mut self) {
        if let Some(w) = self.wakers.take() {
            for waker in w.slots.into_iter().flatten() {
                waker.wake();
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Release the ancestors in a loop: a 10^6-deep chain must not recurse.
        let mut parent = self.parent.take();
        while let Some(p) = parent {
            match Arc::try_unwrap(p) {
                Ok(mut node) => parent = node.parent.take(),
                Err(_) => break,
            }
        }
    }
}

/// Cancels `node` and its subtree; `by_timer` when the timer fired it.
fn cancel(node: &Arc<Node>, err: Err, cause: Option<&Cause>, by_timer: bool) {
    let Some(mut claimed) = node.claim(err, cause) else {
        return;
    };
    claimed.wake();
    if node.timed && !by_timer {
        timers().stopped();
    }
    if let Some(parent) = &node.parent {
        parent.remove_child(node);
    }
    // The taken child vector doubles as the walk's stack.
    let mut stack = mem::take(&mut claimed.children);
    while let Some(child) = stack.pop() {
        if let Some(mut c) = child.claim(err, cause) {
            c.wake();
            if child.timed {
                timers().stopped();
            }
            stack.append(&mut c.children);
        }
    }
}

/// A context of the mutex tree (`None` is the background root).
#[derive(Clone, Default)]
pub struct Ctx(Option<Arc<Node>>);

/// Cancels its context when canceled or dropped.
pub struct Handle(Arc<Node>);

impl Ctx {
    pub fn background() -> Ctx {
        Ctx(None)
    }

    #[inline(never)]
    pub fn with_cancel(&self) -> (Ctx, Handle) {
        let deadline = self.0.as_ref().and_then(|p| p.deadline);
        self.derive(deadline, false)
    }

    /// Go's `WithTimeout`: a plain child when the parent ends first.
    #[inline(never)]
    pub fn with_timeout(&self, timeout: Duration) -> (Ctx, Handle) {
        let deadline = Instant::now() + timeout;
        if let Some(parent_deadline) = self.0.as_ref().and_then(|p| p.deadline) {
            if parent_deadline <= deadline {
                return self.with_cancel();
            }
        }
        let (ctx, handle) = self.derive(Some(deadline), true);
        if timeout.is_zero() {
            cancel(&handle.0, Err::DeadlineExceeded, None, true);
        } else if !handle.0.done.load(Ordering::Acquire) {
            timers().arm(deadline, &handle.0);
        }
        (ctx, handle)
    }

    fn derive(&self, deadline: Option<Instant>, timed: bool) -> (Ctx, Handle) {
        let node = Arc::new(Node::new(self.0.clone(), deadline, timed));
        if let Some(parent) = &self.0 {
            let mut g = parent.lock();
            match g.err {
                // Born canceled, with the parent's err and cause.
                Some(err) => {
                    let cause = g.cause.clone();
                    drop(g);
                    let _ = node.claim(err, cause.as_ref());
                }
                None => {
                    node.slot.store(g.children.len(), Ordering::Relaxed);
                    g.children.push(Arc::clone(&node));
                }
            }
        }
        (Ctx(Some(Arc::clone(&node))), Handle(node))
    }

    /// One lock-free load.
    #[inline(never)]
    pub fn is_done(&self) -> bool {
        match &self.0 {
            Some(node) => node.done.load(Ordering::Acquire),
            None => false,
        }
    }

    #[inline(never)]
    pub fn err(&self) -> Option<Err> {
        let node = self.0.as_ref()?;
        if !node.done.load(Ordering::Acquire) {
            return None;
        }
        node.lock().err
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.0.as_ref().and_then(|n| n.deadline)
    }

    /// Blocks until canceled (forever on the background root).
    #[inline(never)]
    pub fn wait(&self) -> Err {
        let Some(node) = &self.0 else {
            loop {
                std::thread::park();
            }
        };
        let mut g = node.lock();
        loop {
            if let Some(err) = g.err {
                return err;
            }
            g.threads += 1;
            g = node.cond.wait(g).unwrap_or_else(|e| e.into_inner());
            g.threads -= 1;
        }
    }

    /// A `'static` future resolving to the err once canceled.
    #[inline(never)]
    pub fn done(&self) -> DoneFuture {
        DoneFuture {
            node: self.0.clone(),
            key: usize::MAX,
        }
    }

    /// Number of live children registered in this node (tests only).
    #[cfg(test)]
    pub fn child_count(&self) -> usize {
        self.0.as_ref().map_or(0, |n| n.lock().children.len())
    }
}

impl Handle {
    #[inline(never)]
    pub fn cancel(&self) {
        cancel(&self.0, Err::Canceled, None, false);
    }

    #[inline(never)]
    pub fn cancel_with_cause(&self, cause: Cause) {
        cancel(&self.0, Err::Canceled, Some(&cause), false);
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// The mutex tree's `done()` future.
pub struct DoneFuture {
    node: Option<Arc<Node>>,
    key: usize,
}

impl Future for DoneFuture {
    type Output = Err;

    #[inline(never)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Err> {
        let this = &mut *self;
        let Some(node) = &this.node else {
            return Poll::Pending;
        };
        let mut g = node.lock();
        if let Some(err) = g.err {
            return Poll::Ready(err);
        }
        let wakers = g.wakers.get_or_insert_with(Default::default);
        match wakers.slots.get_mut(this.key) {
            Some(Some(w)) => {
                if !w.will_wake(cx.waker()) {
                    *w = cx.waker().clone();
                }
            }
            _ => {
                let waker = Some(cx.waker().clone());
                this.key = match wakers.free.pop() {
                    Some(k) => {
                        wakers.slots[k] = waker;
                        k
                    }
                    None => {
                        wakers.slots.push(waker);
                        wakers.slots.len() - 1
                    }
                };
            }
        }
        Poll::Pending
    }
}

impl Drop for DoneFuture {
    fn drop(&mut self) {
        if self.key == usize::MAX {
            return;
        }
        if let Some(node) = &self.node {
            let mut g = node.lock();
            if let Some(w) = g.wakers.as_mut() {
                if let Some(slot) = w.slots.get_mut(self.key) {
                    if slot.take().is_some() {
                        w.free.push(self.key);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Go's `AfterFunc`, and the merge recipe built on it.

/// A function registered with [`Ctx::after_func`], as a `Waker`.
struct AfterFunc(Mutex<Option<Box<dyn FnOnce() + Send>>>);

impl std::task::Wake for AfterFunc {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let f = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(f) = f {
            f();
        }
    }
}

/// Unregisters an [`Ctx::after_func`] function when dropped (Go's `stop()`).
pub struct Stop(#[allow(dead_code)] DoneFuture);

/// The handle of a [`Ctx::merge`]d context: the recipe's cancel function.
/// Fields drop in order: the registration on the other context first, then
/// the handle, which cancels the merged context.
pub struct MergeHandle {
    _stop: Stop,
    handle: Handle,
}

impl MergeHandle {
    pub fn cancel(&self) {
        self.handle.cancel();
    }
}

impl Ctx {
    /// Go's `context.AfterFunc`: `f` runs once when this context is canceled
    /// (at once if it already is). It runs on the canceling thread, where
    /// Go starts a goroutine. It is a `Waker` in the node's waker slab, so
    /// the node needs no field for it; dropping the [`Stop`] frees the slot.
    #[inline(never)]
    pub fn after_func(&self, f: impl FnOnce() + Send + 'static) -> Stop {
        let waker = Waker::from(Arc::new(AfterFunc(Mutex::new(Some(Box::new(f))))));
        let mut done = self.done();
        if Pin::new(&mut done)
            .poll(&mut TaskContext::from_waker(&waker))
            .is_ready()
        {
            waker.wake();
        }
        Stop(done)
    }

    /// Go's documented recipe for a merged context (golang/go#36503 never
    /// landed): a child of `self` plus an [`after_func`](Ctx::after_func) on
    /// `other` that cancels it with `other`'s err and cause. The deadline is
    /// `self`'s, as in the recipe.
    #[inline(never)]
    pub fn merge(&self, other: &Ctx) -> (Ctx, MergeHandle) {
        let (ctx, handle) = self.with_cancel();
        let (merged, watched) = (Arc::clone(&handle.0), other.0.clone());
        let stop = other.after_func(move || {
            let (err, cause) = match &watched {
                Some(node) => {
                    let g = node.lock();
                    (g.err.unwrap_or(Err::Canceled), g.cause.clone())
                }
                None => (Err::Canceled, None),
            };
            cancel(&merged, err, cause.as_ref(), false);
        });
        (
            ctx,
            MergeHandle {
                _stop: stop,
                handle,
            },
        )
    }
}

// ---------------------------------------------------------------------------
// Timers: one thread, a min-heap behind a mutex.

struct Entry {
    when: Instant,
    seq: u64,
    node: Weak<Node>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.when, self.seq) == (other.when, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // Reversed: `BinaryHeap` is a max-heap, the earliest deadline must be on top.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.when, other.seq).cmp(&(self.when, self.seq))
    }
}

#[derive(Default)]
struct Heap {
    heap: BinaryHeap<Entry>,
    seq: u64,
    /// Entries whose node was canceled before its deadline.
    stale: usize,
}

struct Timers {
    heap: Mutex<Heap>,
    cond: Condvar,
}

fn timers() -> &'static Timers {
    static TIMERS: OnceLock<&'static Timers> = OnceLock::new();
    TIMERS.get_or_init(|| {
        let timers: &'static Timers = Box::leak(Box::new(Timers {
            heap: Mutex::new(Heap::default()),
            cond: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("mutex-tree-timer".into())
            .spawn(move || timers.run())
            .expect("spawn the timer thread");
        timers
    })
}

impl Timers {
    fn lock(&self) -> MutexGuard<'_, Heap> {
        self.heap.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn arm(&self, when: Instant, node: &Arc<Node>) {
        let mut g = self.lock();
        let earliest = g.heap.peek().is_none_or(|top| when < top.when);
        g.seq += 1;
        let seq = g.seq;
        g.heap.push(Entry {
            when,
            seq,
            node: Arc::downgrade(node),
        });
        drop(g);
        if earliest {
            self.cond.notify_one();
        }
    }

    /// A timed node was canceled before its deadline (Go's `timer.Stop`).
    fn stopped(&self) {
        let mut g = self.lock();
        g.stale += 1;
        if g.stale > 64 && g.stale * 2 > g.heap.len() {
            g.heap.retain(|e| {
                e.node
                    .upgrade()
                    .is_some_and(|n| !n.done.load(Ordering::Acquire))
            });
            g.stale = 0;
        }
    }

    fn run(&self) {
        let mut due = Vec::new();
        let mut g = self.lock();
        loop {
            let now = Instant::now();
            while g.heap.peek().is_some_and(|top| top.when <= now) {
                let entry = g.heap.pop().expect("peeked");
                due.push(entry.node);
            }
            if !due.is_empty() {
                drop(g);
                for weak in due.drain(..) {
                    match weak.upgrade() {
                        Some(node) if !node.done.load(Ordering::Acquire) => {
                            cancel(&node, Err::DeadlineExceeded, None, true);
                        }
                        _ => {
                            let mut g = self.lock();
                            g.stale = g.stale.saturating_sub(1);
                        }
                    }
                }
                g = self.lock();
                continue;
            }
            g = match g.heap.peek() {
                Some(top) => {
                    let left = top.when.saturating_duration_since(now);
                    self.cond
                        .wait_timeout(g, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.cond.wait(g).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// Go's `valueCtx` chain: one node per `WithValue`, looked up by walking
/// from the nearest layer to the root and comparing keys, as Go's
/// `value()` does (Go also walks through cancel layers; this chain holds only
/// value layers, which favours the baseline).
pub struct ValueCtx(Option<Arc<ValueNode>>);

struct ValueNode {
    key: usize,
    value: u64,
    parent: Option<Arc<ValueNode>>,
}

impl ValueCtx {
    pub fn background() -> ValueCtx {
        ValueCtx(None)
    }

    pub fn with_value(&self, key: usize, value: u64) -> ValueCtx {
        ValueCtx(Some(Arc::new(ValueNode {
            key,
            value,
            parent: self.0.clone(),
        })))
    }

    #[inline(never)]
    pub fn value(&self, key: usize) -> Option<u64> {
        let mut cur = self.0.as_deref();
        while let Some(node) = cur {
            if node.key == key {
                return Some(node.value);
            }
            cur = node.parent.as_deref();
        }
        None
    }
}

impl Drop for ValueCtx {
    fn drop(&mut self) {
        // Iterative, like the rest of this tree.
        let mut next = self.0.take();
        while let Some(node) = next {
            next = match Arc::try_unwrap(node) {
                Ok(mut n) => n.parent.take(),
                Err(_) => None,
            };
        }
    }
}

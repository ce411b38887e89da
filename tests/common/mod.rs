//! Helpers shared by the integration tests (each test binary includes this
//! module with `mod common;` and uses the parts it needs).
#![allow(dead_code)]

/// A global allocator that counts live heap bytes. Each memory test binary
/// installs it: `#[global_allocator] static GLOBAL: common::alloc::Counting =
/// common::alloc::Counting;`.
pub mod alloc {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicIsize, Ordering};

    pub struct Counting;

    pub static LIVE: AtomicIsize = AtomicIsize::new(0);

    std::thread_local! {
        /// Allocations made by this thread (a `const` Cell: no lazy
        /// initialization and no destructor, so the allocator may touch it).
        static THREAD_ALLOCS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
        /// Bytes allocated minus bytes freed by this thread.
        static THREAD_LIVE: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
    }

    fn count_thread_alloc() {
        let _ = THREAD_ALLOCS.try_with(|n| n.set(n.get() + 1));
    }

    fn count_thread_bytes(delta: isize) {
        let _ = THREAD_LIVE.try_with(|n| n.set(n.get() + delta));
    }

    /// Bytes this thread allocated minus bytes it freed: for single-threaded
    /// checks that the process-wide [`live`] would let other threads disturb.
    pub fn thread_live() -> isize {
        THREAD_LIVE.try_with(|n| n.get()).unwrap_or(0)
    }

    /// Allocations made so far by the calling thread: unlike [`live`], not
    /// disturbed by other threads (a timer thread, another test's leftovers).
    pub fn thread_allocs() -> usize {
        THREAD_ALLOCS.try_with(|n| n.get()).unwrap_or(0)
    }

    // SAFETY: forwards to `System` unchanged; only counts sizes.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded contract.
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
                count_thread_alloc();
                count_thread_bytes(layout.size() as isize);
            }
            p
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded contract.
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
                count_thread_alloc();
                count_thread_bytes(layout.size() as isize);
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded contract.
            unsafe { System.dealloc(ptr, layout) };
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
            count_thread_bytes(-(layout.size() as isize));
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: forwarded contract.
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                LIVE.fetch_add(
                    new_size as isize - layout.size() as isize,
                    Ordering::Relaxed,
                );
                count_thread_bytes(new_size as isize - layout.size() as isize);
            }
            p
        }
    }

    /// Live heap bytes right now.
    pub fn live() -> isize {
        LIVE.load(Ordering::SeqCst)
    }

    /// Live heap bytes above `base` once they are at most `bound`, or
    /// after `within` (whatever is left then): for memory that a
    /// background thread (the collector) gives back shortly after.
    #[allow(dead_code)]
    pub fn settled(base: isize, bound: isize, within: std::time::Duration) -> isize {
        let start = std::time::Instant::now();
        loop {
            let left = live() - base;
            if left <= bound || start.elapsed() >= within {
                return left;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// Wakers that count, and one-shot polling.
pub mod waker {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context as TaskContext, Poll, Wake, Waker};

    use futures::task::noop_waker_ref;

    /// A waker that counts its wake-ups.
    pub struct CountingWaker(AtomicUsize);

    impl CountingWaker {
        pub fn new() -> Arc<CountingWaker> {
            Arc::new(CountingWaker(AtomicUsize::new(0)))
        }

        pub fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    pub fn poll_with<F: Future + Unpin>(fut: &mut F, waker: &Waker) -> Poll<F::Output> {
        Pin::new(fut).poll(&mut TaskContext::from_waker(waker))
    }

    pub fn poll_noop<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
        poll_with(fut, noop_waker_ref())
    }
}

/// A tree of cancelable contexts built breadth-first: node 0 is a child of
/// `root`, node `i > 0` has parent `(i - 1) / arity`.
pub mod tree {
    use ctxtree::{CancelHandle, Context};

    pub struct Tree {
        pub ctxs: Vec<Context>,
        pub handles: Vec<CancelHandle>,
        pub arity: usize,
    }

    impl Tree {
        /// A complete `arity`-ary tree of the given depth under `root`.
        pub fn under(root: &Context, arity: usize, depth: u32) -> Tree {
            let n: usize = (0..=depth).map(|d| arity.pow(d)).sum();
            let mut ctxs: Vec<Context> = Vec::with_capacity(n);
            let mut handles = Vec::with_capacity(n);
            for i in 0..n {
                let (ctx, handle) = if i == 0 {
                    root.with_cancel()
                } else {
                    ctxs[(i - 1) / arity].with_cancel()
                };
                ctxs.push(ctx);
                handles.push(handle);
            }
            Tree {
                ctxs,
                handles,
                arity,
            }
        }

        pub fn parent(&self, i: usize) -> Option<usize> {
            (i > 0).then(|| (i - 1) / self.arity)
        }

        /// True if `a` is `d` or an ancestor of `d`.
        pub fn is_ancestor_or_self(&self, a: usize, mut d: usize) -> bool {
            loop {
                if a == d {
                    return true;
                }
                match self.parent(d) {
                    Some(p) => d = p,
                    None => return false,
                }
            }
        }
    }
}

/// The process's threads, as the timer tests count them.
pub mod threads {
    /// Names (`comm`) of this process's threads, or `None` where `/proc` is
    /// unavailable.
    pub fn thread_names() -> Option<Vec<String>> {
        let dir = std::fs::read_dir("/proc/self/task").ok()?;
        Some(
            dir.flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
                .map(|s| s.trim_end().to_owned())
                .collect(),
        )
    }
}

/// A tiny deterministic generator (xorshift64*), so failures reproduce.
pub mod rng {
    pub struct Rng(u64);

    impl Rng {
        /// Any seed works (0 is mapped to 1: xorshift needs a nonzero state).
        pub fn new(seed: u64) -> Rng {
            Rng(seed | 1)
        }

        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// Uniform-ish in `0..n` (`n > 0`).
        pub fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        /// True with probability `percent`/100.
        pub fn chance(&mut self, percent: usize) -> bool {
            self.below(100) < percent
        }
    }
}

/// The churn tests' cycle counts (tests/memory.rs, tests/deadline_memory.rs)
/// divided by `CTXTREE_CHURN_DIVISOR` (default 1: the full count).
/// `scripts/verify.sh --ci` sets 10 under ThreadSanitizer and
/// AddressSanitizer, where a million identical cycles on one core took most
/// of each step: 100,000 cycles still pass every batching threshold (sweeps,
/// collections, the timer's backlog and compaction: at most 4,096) many
/// times, and test.sh checks the heap bounds at the full count.
pub fn churn_cycles(full: usize) -> usize {
    let divisor = std::env::var("CTXTREE_CHURN_DIVISOR")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    full / divisor
}

//! A per-thread cache of freed node blocks in front of the global
//! allocator: deriving a child right after another was freed — the common
//! request pattern — reuses its memory without a trip through the allocator
//! (glibc's `malloc` + `free` were about a quarter of the instructions of a
//! derive + cancel + drop, and a third of a chain's).
//!
//! A size class has its own per-thread stack; the node defines two
//! (`alloc.rs`): plain nodes and deadline nodes (a node and its timer slot).
//!
//! Invariants:
//! - **C1** A cached block is an allocation of its class's layout from the
//!   global allocator that holds no value (its node was dropped in place);
//!   its first word links the next cached block of the class.
//! - **C2** A thread caches at most `capacity` blocks of a class
//!   (plain nodes: 1024 × 56 bytes, in 64-byte glibc chunks, 64 KiB;
//!   deadline nodes: 64 × 88 bytes); a block freed when its cache is full goes
//!   to the allocator, and the thread's exit returns every cached block to
//!   it. So the memory a thread holds beyond its live nodes is bounded,
//!   whatever the churn.
//! - **C3** Only the owning thread touches its caches (thread-locals; no
//!   atomics). A block freed on another thread than the one that allocated
//!   it joins the freeing thread's cache: blocks migrate, the bound is per
//!   thread.
//! - **C4** After a cache is destroyed (thread exit: another thread-local's
//!   destructor may still free nodes) blocks bypass it. The stack itself
//!   is a thread-local without a destructor (reaching it is one address
//!   computation, no lazy registration), emptied at exit by a second
//!   thread-local, its guard, registered by the first push.
//!
//! Reuse needs no ordering of its own: whoever frees a node has acquired
//! every other access to it (N1's Acquire on the last count, or the epoch),
//! and the block then stays on one thread until it is allocated again. No
//! protocol compares a freed node's address, so reuse makes ABA no likelier
//! than glibc's own per-thread cache, which also hands back the last freed
//! chunk first.
//!
//! Why 1024 plain blocks: a request's tree is freed in one burst when it
//! ends; with 64 blocks most of a 1000-deep chain's frees went through
//! glibc's `_int_free` (7 chunks per size) and the next request's derives
//! through `_int_malloc`. 64 KiB is what jemalloc's and mimalloc's
//! per-thread caches hold for one size class (docs/design.md §6,
//! "Alternatives considered").
//!
//! The cache is off under miri and with `--cfg ctxtree_no_node_cache` (the
//! AddressSanitizer step): reused memory would hide a use after free from
//! them. Its own unit tests use it everywhere, miri included. Under loom
//! the module is not compiled and nodes bypass it: freed nodes are kept, as
//! use-after-free oracles (docs/design.md §11).

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::cell::Cell;
use std::ptr;
use std::thread::LocalKey;

/// A size class: the layout of its blocks, how many one thread keeps (C2),
/// the per-thread stacks and the thread-local whose destructor empties them.
pub(crate) struct Class {
    layout: Layout,
    capacity: u32,
    caches: &'static LocalKey<Cache>,
    guard: &'static LocalKey<Guard>,
}

/// Whether `alloc.rs` allocates through the cache.
pub(crate) const ENABLED: bool = !cfg!(any(miri, ctxtree_no_node_cache));

/// `Cache::len` of a thread's stack before its first push registered the
/// guard: at or above every capacity, so the push takes the slow path once.
const UNARMED: u32 = u32::MAX - 1;
/// `Cache::len` once the guard has emptied the stack at thread exit (C4).
const DESTROYED: u32 = u32::MAX;

/// A thread's cached blocks of one class: an intrusive stack (C1). It has
/// no destructor, so reaching it costs no lazy registration; its [`Guard`]
/// empties it at thread exit.
pub(crate) struct Cache {
    head: Cell<*mut u8>,
    /// Blocks cached, or `UNARMED` / `DESTROYED`.
    len: Cell<u32>,
    layout: Layout,
}

impl Cache {
    pub(crate) const fn new(layout: Layout) -> Cache {
        Cache {
            head: Cell::new(ptr::null_mut()),
            len: Cell::new(UNARMED),
            layout,
        }
    }

    #[inline(always)]
    fn pop(&self) -> *mut u8 {
        let block = self.head.get();
        if !block.is_null() {
            // SAFETY: a cached block starts with its successor's address (C1).
            self.head.set(unsafe { ptr::read(block as *const *mut u8) });
            self.len.set(self.len.get() - 1);
        }
        block
    }

    /// Caches `block` if there are fewer than `capacity`; returns whether
    /// it did. The first push registers `guard` (C2's return at exit).
    #[inline(always)]
    fn push(&self, block: *mut u8, capacity: u32, guard: &'static LocalKey<Guard>) -> bool {
        let len = self.len.get();
        if len >= capacity && !self.arm(len, guard) {
            return false;
        }
        let len = self.len.get();
        // SAFETY: the caller hands over a block of the class (pointer-aligned,
        // at least a word) holding no value.
        unsafe { ptr::write(block as *mut *mut u8, self.head.get()) };
        self.head.set(block);
        self.len.set(len + 1);
        true
    }

    /// The slow path of `push`: the stack is full, destroyed (C4), or not
    /// yet armed — then the guard is reached (registering its destructor)
    /// and the stack starts empty. Returns whether the push may go on.
    #[cold]
    #[inline(never)]
    fn arm(&self, len: u32, guard: &'static LocalKey<Guard>) -> bool {
        if len != UNARMED || guard.try_with(|_| ()).is_err() {
            return false;
        }
        self.len.set(0);
        true
    }

    /// Returns every cached block to the allocator; later blocks bypass
    /// the stack (C4).
    fn destroy(&self) {
        loop {
            let block = self.pop();
            if block.is_null() {
                break;
            }
            // SAFETY: cached blocks came from `alloc(self.layout)` (C1).
            unsafe { dealloc(block, self.layout) };
        }
        self.len.set(DESTROYED);
    }
}

/// Empties its class's stack of the thread when the thread exits (C2, C4).
pub(crate) struct Guard(&'static LocalKey<Cache>);

impl Guard {
    pub(crate) const fn new(caches: &'static LocalKey<Cache>) -> Guard {
        Guard(caches)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // A `Cache` has no destructor, so it is reachable here.
        let _ = self.0.try_with(Cache::destroy);
    }
}

impl Class {
    /// A class whose blocks have `layout`: at most `capacity` kept per
    /// thread in the thread-local `caches`, emptied by `guard` (C2).
    pub(crate) const fn new(
        layout: Layout,
        capacity: u32,
        caches: &'static LocalKey<Cache>,
        guard: &'static LocalKey<Guard>,
    ) -> Class {
        Class {
            layout,
            capacity,
            caches,
            guard,
        }
    }

    /// A block of the class: a cached one, or a new allocation.
    #[inline(always)]
    pub(crate) fn alloc_block(&'static self) -> *mut u8 {
        let cached = self.caches.with(|cache| cache.pop());
        if !cached.is_null() {
            return cached;
        }
        // SAFETY: both classes' layouts have a non-zero size.
        let block = unsafe { alloc(self.layout) };
        if block.is_null() {
            handle_alloc_error(self.layout);
        }
        block
    }

    /// Returns a block to the cache, or to the allocator when the cache is
    /// full or gone (C2, C4).
    ///
    /// # Safety
    /// `block` came from this class's [`alloc_block`](Class::alloc_block),
    /// holds no value, and nobody uses it any more.
    #[inline(always)]
    pub(crate) unsafe fn free_block(&'static self, block: *mut u8) {
        let (capacity, guard) = (self.capacity, self.guard);
        if !self.caches.with(|cache| cache.push(block, capacity, guard)) {
            // SAFETY: forwarded from the caller; blocks come from
            // `alloc(self.layout)`.
            unsafe { dealloc(block, self.layout) };
        }
    }

    /// Blocks of the class cached on this thread (tests).
    #[cfg(test)]
    pub(crate) fn cached(&'static self) -> u32 {
        self.caches.with(|cache| cache.len.get()) % UNARMED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two classes shaped like the node's (`alloc.rs`): 56- and 88-byte
    // blocks, 1024 and 64 per thread.
    const NODE_LAYOUT: Layout = Layout::new::<[usize; 7]>();
    const TIMED_LAYOUT: Layout = Layout::new::<[usize; 11]>();
    std::thread_local! {
        static NODE_CACHES: Cache = const { Cache::new(NODE_LAYOUT) };
        static TIMED_CACHES: Cache = const { Cache::new(TIMED_LAYOUT) };
        static NODE_GUARD: Guard = const { Guard::new(&NODE_CACHES) };
        static TIMED_GUARD: Guard = const { Guard::new(&TIMED_CACHES) };
    }
    static NODES: Class = Class::new(NODE_LAYOUT, 1024, &NODE_CACHES, &NODE_GUARD);
    static TIMED: Class = Class::new(TIMED_LAYOUT, 64, &TIMED_CACHES, &TIMED_GUARD);

    #[test]
    fn a_freed_block_is_reused_lifo() {
        let a = NODES.alloc_block();
        let b = NODES.alloc_block();
        let before = NODES.cached();
        // SAFETY: fresh blocks holding no value.
        unsafe {
            NODES.free_block(a);
            NODES.free_block(b);
        }
        assert_eq!(NODES.cached(), before + 2);
        assert_eq!(NODES.alloc_block(), b);
        assert_eq!(NODES.alloc_block(), a);
        assert_eq!(NODES.cached(), before);
        // SAFETY: as above.
        unsafe {
            NODES.free_block(a);
            NODES.free_block(b);
        }
    }

    #[test]
    fn the_cache_is_bounded() {
        let blocks: Vec<_> = (0..3 * NODES.capacity)
            .map(|_| NODES.alloc_block())
            .collect();
        for &block in &blocks {
            // SAFETY: fresh blocks holding no value.
            unsafe { NODES.free_block(block) };
        }
        assert_eq!(NODES.cached(), NODES.capacity);
    }

    #[test]
    fn the_classes_are_separate() {
        // On a fresh thread, whose caches start empty.
        std::thread::spawn(|| {
            let timed = TIMED.alloc_block();
            // SAFETY: a fresh block holding no value.
            unsafe { TIMED.free_block(timed) };
            assert_eq!((NODES.cached(), TIMED.cached()), (0, 1));
            assert_eq!(TIMED.alloc_block(), timed);
            let blocks: Vec<_> = (0..2 * TIMED.capacity)
                .map(|_| TIMED.alloc_block())
                .collect();
            for &block in blocks.iter().chain([&timed]) {
                // SAFETY: as above.
                unsafe { TIMED.free_block(block) };
            }
            assert_eq!((NODES.cached(), TIMED.cached()), (0, TIMED.capacity));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_returns_its_blocks_when_it_exits() {
        // Blocks allocated here, freed there: they join that thread's cache
        // (C3), which its exit returns to the allocator (a block left behind
        // is a leak for the AddressSanitizer step's LeakSanitizer: this
        // module's tests use the cache whatever `ENABLED` says).
        let blocks: Vec<usize> = (0..8).map(|_| NODES.alloc_block() as usize).collect();
        std::thread::spawn(move || {
            for block in blocks {
                // SAFETY: blocks holding no value, handed over to this thread.
                unsafe { NODES.free_block(block as *mut u8) };
            }
            assert_eq!(NODES.cached(), 8);
        })
        .join()
        .unwrap();
    }
}

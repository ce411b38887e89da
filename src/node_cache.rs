//! A small per-thread cache of freed node blocks in front of the global
//! allocator: deriving a child right after another was freed — the common
//! request pattern — reuses its memory without a trip through the allocator
//! (glibc's `malloc` + `free` were about a quarter of the instructions of a
//! derive + cancel + drop).
//!
//! Invariants:
//! - **C1** A cached block is an allocation of [`BLOCK`] from the global
//!   allocator that holds no value (its node was dropped in place); its
//!   first word links the next cached block.
//! - **C2** A thread caches at most [`CAPACITY`] blocks (`CAPACITY × 56`
//!   bytes, in 64-byte glibc chunks); a block freed when the cache is full goes to the allocator, and
//!   the thread's exit returns every cached block to it. So the memory a
//!   thread holds beyond its live nodes is bounded, whatever the churn.
//! - **C3** Only the owning thread touches its cache (a thread-local; no
//!   atomics). A block freed on another thread than the one that allocated
//!   it joins the freeing thread's cache: blocks migrate, the bound is per
//!   thread.
//! - **C4** After the cache is destroyed (thread exit: another thread-local's
//!   destructor may still free nodes) blocks bypass it.
//!
//! Reuse needs no ordering of its own: whoever frees a node has acquired
//! every other access to it (N1's Acquire on the last count, or the epoch),
//! and the block then stays on one thread until it is allocated again.
//!
//! The cache is off under miri and with `--cfg ctxtree_no_node_cache` (the
//! AddressSanitizer step): reused memory would hide a use after free from
//! them. Its own unit tests use it everywhere, miri included.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::cell::Cell;
use std::ptr;

/// The layout of one cached block: a `Node`'s.
pub(crate) const BLOCK: Layout = Layout::new::<crate::node::Node>();

/// Blocks one thread keeps (C2): enough for a burst of derives after a burst
/// of drops in one request, small next to the thread's stack.
pub(crate) const CAPACITY: u32 = 64;

/// Whether `node.rs` allocates through the cache.
pub(crate) const ENABLED: bool = !cfg!(any(miri, ctxtree_no_node_cache));

/// A thread's cached blocks: an intrusive stack (C1).
struct Cache {
    head: Cell<*mut u8>,
    len: Cell<u32>,
}

impl Cache {
    fn pop(&self) -> *mut u8 {
        let block = self.head.get();
        if !block.is_null() {
            // SAFETY: a cached block starts with its successor's address (C1).
            self.head.set(unsafe { ptr::read(block as *const *mut u8) });
            self.len.set(self.len.get() - 1);
        }
        block
    }

    /// Caches `block` if there is room; returns whether it did.
    fn push(&self, block: *mut u8) -> bool {
        let len = self.len.get();
        if len >= CAPACITY {
            return false;
        }
        // SAFETY: the caller hands over a block of `BLOCK` (pointer-aligned,
        // at least a word) holding no value.
        unsafe { ptr::write(block as *mut *mut u8, self.head.get()) };
        self.head.set(block);
        self.len.set(len + 1);
        true
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        loop {
            let block = self.pop();
            if block.is_null() {
                return;
            }
            // SAFETY: cached blocks came from `alloc(BLOCK)` (C1).
            unsafe { dealloc(block, BLOCK) };
        }
    }
}

std::thread_local! {
    static CACHE: Cache = const {
        Cache {
            head: Cell::new(ptr::null_mut()),
            len: Cell::new(0),
        }
    };
}

/// A block of [`BLOCK`]: a cached one, or a new allocation.
#[inline]
pub(crate) fn alloc_block() -> *mut u8 {
    let cached = CACHE.try_with(Cache::pop).unwrap_or(ptr::null_mut());
    if !cached.is_null() {
        return cached;
    }
    // SAFETY: `BLOCK` has a non-zero size.
    let block = unsafe { alloc(BLOCK) };
    if block.is_null() {
        handle_alloc_error(BLOCK);
    }
    block
}

/// Returns a block to the cache, or to the allocator when the cache is full
/// or gone (C2, C4).
///
/// # Safety
/// `block` came from [`alloc_block`], holds no value, and nobody uses it
/// any more.
#[inline]
pub(crate) unsafe fn free_block(block: *mut u8) {
    if !CACHE.try_with(|cache| cache.push(block)).unwrap_or(false) {
        // SAFETY: forwarded from the caller; blocks come from `alloc(BLOCK)`.
        unsafe { dealloc(block, BLOCK) };
    }
}

/// Blocks cached on this thread (tests).
#[cfg(test)]
pub(crate) fn cached() -> u32 {
    CACHE.with(|cache| cache.len.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_block_is_reused_lifo() {
        let a = alloc_block();
        let b = alloc_block();
        let before = cached();
        // SAFETY: fresh blocks holding no value.
        unsafe {
            free_block(a);
            free_block(b);
        }
        assert_eq!(cached(), before + 2);
        assert_eq!(alloc_block(), b);
        assert_eq!(alloc_block(), a);
        assert_eq!(cached(), before);
        // SAFETY: as above.
        unsafe {
            free_block(a);
            free_block(b);
        }
    }

    #[test]
    fn the_cache_is_bounded() {
        let blocks: Vec<_> = (0..3 * CAPACITY).map(|_| alloc_block()).collect();
        for &block in &blocks {
            // SAFETY: fresh blocks holding no value.
            unsafe { free_block(block) };
        }
        assert_eq!(cached(), CAPACITY);
    }

    #[test]
    fn a_thread_returns_its_blocks_when_it_exits() {
        // Blocks allocated here, freed there: they join that thread's cache
        // (C3), which its exit returns to the allocator (a block left behind
        // is a leak for the AddressSanitizer step's LeakSanitizer: this
        // module's tests use the cache whatever `ENABLED` says).
        let blocks: Vec<usize> = (0..8).map(|_| alloc_block() as usize).collect();
        std::thread::spawn(move || {
            for block in blocks {
                // SAFETY: blocks holding no value, handed over to this thread.
                unsafe { free_block(block as *mut u8) };
            }
            assert_eq!(cached(), 8);
        })
        .join()
        .unwrap();
    }
}

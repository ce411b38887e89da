//! A counting global allocator for the memory scenario. Counting is off
//! unless a thread called [`Counting::start`], so the other scenarios pay one
//! relaxed load of a rarely written word per allocation. Counts are per
//! thread: only the calling thread's allocations and frees are counted (the
//! test harness runs other tests on other threads meanwhile).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Counting;

/// Number of threads counting right now.
static COUNTING_THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

impl Counting {
    /// Starts counting this thread's allocations, from zero.
    pub fn start() {
        LIVE.with(|c| c.set(0));
        ALLOCS.with(|c| c.set(0));
        if !ON.with(|c| c.replace(true)) {
            COUNTING_THREADS.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Stops counting on this thread.
    pub fn stop() {
        if ON.with(|c| c.replace(false)) {
            COUNTING_THREADS.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// (live bytes allocated since `start`, allocation calls since `start`)
    /// on this thread.
    pub fn read() -> (isize, usize) {
        (LIVE.with(Cell::get), ALLOCS.with(Cell::get))
    }
}

#[inline]
fn counted() -> bool {
    COUNTING_THREADS.load(Ordering::Relaxed) > 0 && ON.try_with(Cell::get).unwrap_or(false)
}

#[inline]
fn on_alloc(size: usize) {
    if counted() {
        let _ = LIVE.try_with(|c| c.set(c.get() + size as isize));
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
    }
}

#[inline]
fn on_free(size: usize) {
    if counted() {
        let _ = LIVE.try_with(|c| c.set(c.get() - size as isize));
    }
}

// SAFETY: every call is forwarded unchanged to `System`; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            on_alloc(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            on_alloc(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) };
        on_free(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // A reallocation counts as a free of the old block and an
            // allocation of the new one.
            on_free(layout.size());
            on_alloc(new_size);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_this_thread_only() {
        use std::sync::{Arc, Barrier};
        let barrier = Arc::new(Barrier::new(2));
        let other = {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                drop(vec![0u8; 1 << 20]);
                barrier.wait();
            })
        };
        Counting::start();
        barrier.wait();
        let v: Vec<u64> = Vec::with_capacity(16);
        barrier.wait();
        let (bytes, allocs) = Counting::read();
        Counting::stop();
        drop(v);
        other.join().unwrap();
        assert_eq!((bytes, allocs), (128, 1));
    }
}

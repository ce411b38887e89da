//! The one seam between ctxtree's protocols and the machine.
//!
//! Every atomic, cell, reference count, park/unpark and epoch guard used by the
//! library comes from here. Under `--cfg loom` (with `--cfg crossbeam_loom`, so
//! crossbeam-epoch switches too) they are loom's instrumented versions, and the
//! models in `loom-tests/` explore every interleaving of the real code.
//!
//! loom does not model `SeqCst` loads and stores, so no protocol here relies on
//! them: every ordering decision is an Acquire/Release pair on a read-modify-write.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::Arc;

#[cfg(not(loom))]
pub(crate) use crossbeam_epoch as epoch;

/// crossbeam-epoch's contract, modelled for loom.
///
/// crossbeam-epoch itself cannot be model-checked soundly here: on x86 its
/// `pin` publishes the pinned epoch with a `SeqCst` compare-exchange, and loom
/// treats `SeqCst` accesses as `AcqRel` (tokio-rs/loom#180). loom then finds
/// executions where `try_advance` misses a pinned thread and frees garbage it
/// can still reach, corrupting crossbeam's own heap (docs/design.md §11).
///
/// This collector implements exactly the guarantee ctxtree relies on, and as
/// aggressively as it allows: a deferred function runs as soon as every guard
/// pinned *before* the defer has been dropped, at every unpin and flush. A
/// thread that follows a pointer it obtained without being pinned (or a
/// release that is not deferred) is therefore exposed to a real free.
#[cfg(loom)]
pub(crate) mod epoch {
    use std::marker::PhantomData;

    use loom::sync::Mutex;

    /// A deferred function. loom runs every modelled thread on one OS thread,
    /// so moving one between modelled threads is sound.
    struct Deferred(Box<dyn FnOnce()>);

    // SAFETY: see above: all modelled threads share one OS thread.
    unsafe impl Send for Deferred {}

    struct Collector {
        /// Advances at each defer; a guard remembers the tick it pinned at.
        tick: u64,
        /// Pin ticks of the live guards.
        pinned: Vec<u64>,
        /// Deferred functions with the tick they were deferred at.
        deferred: Vec<(u64, Deferred)>,
    }

    loom::lazy_static! {
        static ref COLLECTOR: Mutex<Collector> = Mutex::new(Collector {
            tick: 0,
            pinned: Vec::new(),
            deferred: Vec::new(),
        });
    }

    /// A pinned participant; `!Send`, like crossbeam's.
    pub(crate) struct Guard {
        tick: u64,
        _not_send: PhantomData<*const ()>,
    }

    pub(crate) fn pin() -> Guard {
        let mut c = COLLECTOR.lock().unwrap();
        let tick = c.tick;
        c.pinned.push(tick);
        Guard {
            tick,
            _not_send: PhantomData,
        }
    }

    impl Guard {
        /// # Safety
        /// As crossbeam's: `f` may run on any thread once every guard pinned
        /// before this call has been dropped.
        pub(crate) unsafe fn defer_unchecked<F: FnOnce() + 'static>(&self, f: F) {
            let mut c = COLLECTOR.lock().unwrap();
            let tick = c.tick;
            c.tick += 1;
            c.deferred.push((tick, Deferred(Box::new(f))));
        }

        pub(crate) fn flush(&self) {
            collect();
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            {
                let mut c = COLLECTOR.lock().unwrap();
                let at = c.pinned.iter().position(|&t| t == self.tick);
                if let Some(at) = at {
                    c.pinned.swap_remove(at);
                }
            }
            collect();
        }
    }

    /// Runs every deferred function that no live guard protects.
    fn collect() {
        let ready: Vec<Deferred> = {
            let mut c = COLLECTOR.lock().unwrap();
            let oldest_pin = c.pinned.iter().copied().min().unwrap_or(u64::MAX);
            let (ready, kept) = std::mem::take(&mut c.deferred)
                .into_iter()
                .partition(|(tick, _)| *tick < oldest_pin);
            c.deferred = kept;
            ready.into_iter().map(|(_, f)| f).collect()
        };
        for f in ready {
            (f.0)();
        }
    }
}

/// Thread parking, the only blocking primitive ctxtree uses (in `wait`).
pub(crate) mod thread {
    #[cfg(not(loom))]
    pub(crate) use std::thread::{current, park, park_timeout, Thread};

    #[cfg(loom)]
    pub(crate) use loom::thread::{current, park, Thread};

    /// A number naming the calling thread, unique for the process's life
    /// (not only among live threads, unlike an address).
    pub(crate) fn token() -> usize {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        // A `const` cell, 0 until first asked: one thread-pointer-relative
        // load per call, where a lazily initialized thread-local checks its
        // state first (a sharded list asks on every insert and unlink).
        #[cfg(not(loom))]
        {
            std::thread_local! {
                static TOKEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
            }
            TOKEN.with(|token| match token.get() {
                0 => {
                    let fresh = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    token.set(fresh);
                    fresh
                }
                known => known,
            })
        }
        // loom runs every modelled thread on one OS thread: its own
        // thread-locals are per modelled thread.
        #[cfg(loom)]
        {
            loom::thread_local! {
                static TOKEN: usize = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            TOKEN.with(|t| *t)
        }
    }

    /// loom has no timed park; a model never relies on a timeout firing, so a
    /// yield (a spurious wake-up, which every caller tolerates) stands in.
    #[cfg(loom)]
    pub(crate) fn park_timeout(_: std::time::Duration) {
        loom::thread::yield_now();
    }
}

/// A cell whose accesses loom checks for data races.
///
/// The std version is a thin `UnsafeCell`; the closure style is loom's API.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// Lets another thread run: `std::thread::yield_now`, or loom's (which a
/// model needs to make progress past a spin).
#[inline]
pub(crate) fn yield_now() {
    #[cfg(not(loom))]
    std::thread::yield_now();
    #[cfg(loom)]
    loom::thread::yield_now();
}

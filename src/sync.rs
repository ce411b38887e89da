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
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::Arc;

pub(crate) use crossbeam_epoch as epoch;

/// Thread parking, the only blocking primitive ctxtree uses (in `wait`).
pub(crate) mod thread {
    #[cfg(not(loom))]
    pub(crate) use std::thread::{current, park, park_timeout, Thread};

    #[cfg(loom)]
    pub(crate) use loom::thread::{current, park, Thread};

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

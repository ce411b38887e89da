//! Go's `context` package as a lock-free concurrent context tree.
//!
//! A [`Context`] carries a cancellation signal, an [`Error`] and a [`Cause`]
//! from a parent to every context derived from it. Derive a child with
//! [`Context::with_cancel`]; the returned [`CancelHandle`] cancels the child
//! (and everything below it) when you call [`CancelHandle::cancel`] or drop it.
//! Wait for cancellation with [`Context::done`] (a future), [`Context::wait`]
//! (blocks a thread), or check it with [`Context::is_done`] (one atomic load).
//!
//! ```
//! use ctxtree::{Context, Error};
//!
//! let (request, cancel) = Context::background().with_cancel();
//! let workers: Vec<_> = (0..4)
//!     .map(|_| {
//!         let (ctx, handle) = request.with_cancel();
//!         std::thread::spawn(move || {
//!             let _handle = handle; // this subtask ends when it returns
//!             ctx.wait() // ... or do work, checking ctx.is_done()
//!         })
//!     })
//!     .collect();
//! cancel.cancel_with_cause(ctxtree::Cause::msg("client disconnected"));
//! for w in workers {
//!     assert_eq!(w.join().unwrap(), Error::Canceled);
//! }
//! assert_eq!(request.cause().unwrap().to_string(), "client disconnected");
//! ```
//!
//! # Semantics (Go's)
//! - Cancellation propagates synchronously: when `cancel` returns, every
//!   descendant reports `is_done()`.
//! - The first cancel wins, for the err and the cause, at every level; a child
//!   inherits the err and cause of the ancestor whose cancel reached it.
//! - A child derived from a canceled context is born canceled with its
//!   parent's err and cause, also when the cancel races with the derivation.
//! - `err().is_some()` implies `is_done()` and a ready `done()` at that instant.
//!
//! # Async code and integrations
//! [`Context::run`] (and [`FutureExt::with_context`]) bounds any future by a
//! context, under any executor. Optional features add bridges that spawn no
//! task per link: `tokio` (tokio-util's `CancellationToken`, both ways:
//! `ctx.cancellation_token()`, `ctx.with_cancellation_token(&token)`),
//! `crossbeam-channel` (`ctx.done_channel()`, Go's `Done()` channel for
//! `select!`) and `tower` (`tower::ContextLayer`, giving each HTTP request a
//! context with its caller's deadline, on axum, hyper or tonic, and
//! `tower::BudgetLayer`, sending the remaining budget along on outgoing
//! calls). [`Context::current`] is the context of the enclosing
//! [`Context::scope`]: the request context inside a handler.
//!
//! Task groups (Go's `errgroup`): [`group::scope`] runs subtasks on scoped
//! threads under one context, the first error canceling the siblings; the
//! `tokio` feature adds the same for tokio tasks, `tokio::TaskGroup`.
//!
//! # How it works
//! Each cancelable context is one heap node with a single atomic state word
//! holding both its lifecycle (active, or canceled with err and cause) and the
//! head of a stack of waiters; its children hang in an intrusive lock-free
//! list whose memory is reclaimed with crossbeam-epoch. Canceling is one CAS
//! on the state word plus an iterative walk of the subtree. No locks are
//! taken on any path. Each module's header states its invariants;
//! `docs/design.md` in the repository gives the cross-module argument
//! (layout, reclamation, linearization points, loom models), and
//! `loom-tests/` model-checks them.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(rust_2018_idioms)]

/// Counts a [`stats`] event (feature `stats`); compiles to nothing without.
macro_rules! stat {
    ($event:ident) => {{
        #[cfg(feature = "stats")]
        $crate::stats::count($crate::stats::Event::$event);
    }};
}

mod after_func;
mod context;
mod display;
mod done;
mod dump;
mod error;
pub mod group;
mod handle;
mod integrations;
mod merge;
mod named;
mod origin;
mod plant;
mod run;
#[cfg(feature = "stats")]
#[cfg_attr(docsrs, doc(cfg(feature = "stats")))]
pub mod stats;
mod sync;
mod time;
mod tree;
mod values;
mod virtual_clock;

pub use after_func::AfterFunc;
pub use context::Context;
pub use done::{Cancelled, CancelledOwned, Done, DoneOwned};
pub use dump::{ContextTree, TreeLimits, TreeNode, Waiters};
pub use error::{Cause, Error};
pub use handle::{CancelHandle, Canceler};
pub use integrations::current::Scoped;
pub use named::Named;
pub use origin::{Origin, OriginKind};
pub use run::{FutureExt, Run, RunOwned};
pub use virtual_clock::VirtualClock;

#[cfg(feature = "crossbeam-channel")]
#[cfg_attr(docsrs, doc(cfg(feature = "crossbeam-channel")))]
pub use integrations::channel;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use integrations::tokio;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use integrations::tower;
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub use integrations::trace;

/// What the tests of the crate's bounds read (not a public API: it may
/// change in any release).
#[cfg(not(loom))]
#[doc(hidden)]
pub mod __diagnostics {
    /// The most timer entries the timer thread handled in one step (T9,
    /// `src/time/driver.rs`): at most five slices of 1,024.
    pub fn timer_max_step_work() -> usize {
        crate::time::driver::max_step_work()
    }

    /// The most timer entries one arm's collection of its shard looked at
    /// (T5, `src/time/driver.rs`).
    pub fn timer_max_self_collect() -> usize {
        crate::time::driver::max_self_collect()
    }

    /// The most nodes one sweep run by a derive or a drop has visited (L10,
    /// `src/tree/children/mod.rs`): at most 1,024; the rest of a longer
    /// sweep runs on the collector thread.
    pub fn max_inline_sweep() -> usize {
        crate::tree::children::max_inline_sweep()
    }

    /// The most waiter entries one collection run by an abandoned waiter
    /// has walked (W6, `src/tree/waiters/collect.rs`): at most 1,024.
    pub fn max_inline_collect() -> usize {
        crate::tree::waiters::max_inline_collect()
    }
}

/// Hooks for the loom models only: there is no timer thread under loom.
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_hooks {
    pub use crate::time::model::{drop_disarmed, fire_armed};
    pub use crate::tree::callback_pool::run_handed_off;
    pub use crate::tree::children::set_drop_sweeps as sweep_on_drop;
    pub use crate::tree::children::set_inline_sweep;
    pub use crate::tree::collector::run_collections;
    pub use crate::tree::node::live_nodes;
    pub use crate::tree::waiters::set_inline_collect;

    /// Shards `ctx`'s children list now, as a lost insert race would (L8),
    /// so a model can start from a sharded parent. Returns whether it did
    /// (not if the list is closed, sweeping or already sharded).
    pub fn shard_children(ctx: &crate::Context) -> bool {
        ctx.node().is_some_and(|node| node.shard_children())
    }

    /// The children linked in `ctx`'s list, dead ones included (a model
    /// checks what sweeps left; no other thread may change the list).
    pub fn linked_children(ctx: &crate::Context) -> usize {
        ctx.node().map_or(0, |node| node.linked_children())
    }
}

/// The README's examples, compiled and run as doc tests (they show every
/// integration, so they need every feature).
#[cfg(all(
    doctest,
    feature = "tokio",
    feature = "crossbeam-channel",
    feature = "tower"
))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn assert_traits<T: Send + Sync + 'static>() {}

    #[test]
    fn handles_are_send_sync() {
        assert_traits::<Context>();
        assert_traits::<CancelHandle>();
        assert_traits::<DoneOwned>();
        assert_traits::<CancelledOwned>();
        assert_traits::<Cause>();
        assert_traits::<AfterFunc>();
        fn done_is_send(ctx: &Context) -> impl Send + '_ {
            ctx.done()
        }
        let _ = done_is_send;
    }

    #[test]
    fn context_is_three_words_and_roots_are_unallocated() {
        assert!(std::mem::size_of::<Context>() <= 24);
        assert_eq!(Context::background().err(), None);
        assert!(!Context::todo().is_done());
    }
}

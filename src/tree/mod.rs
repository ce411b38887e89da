//! The lock-free tree: the protocol every context operation runs on.
//!
//! Each invariant is stated once, in the header of the file that keeps it.
//! Bottom up (each layer uses only those before it):
//!
//! 1. [`state`] (S1–S4: the state word), [`panics`] (P1: held panics of
//!    foreign code), [`inline_stack`] (the walk's worklists) and
//!    `foreign_drops` (the per-thread sink through which the collector
//!    takes the timer thread's cause drops, K3, so that `error.rs` below
//!    it needs no import of it) use nothing else in the tree.
//! 2. [`waiters`] (W1–W5: the waiter stack in the state word).
//! 3. [`trampoline`] (F5: one callback loop per thread), [`callback_pool`]
//!    (F6–F7: the timer thread's hand-off), [`dispatch`] (where a
//!    cancel's callbacks run; no invariant of its own) and [`collector`]
//!    (K1–K2: the thread that finishes long sweeps and collections, L10,
//!    W6; it runs jobs the node layer queues and knows no node).
//! 4. [`children`] (L1–L8 in its `mod.rs`; `shards.rs` states the shard
//!    block's own rules), by mechanism: `link`, `list`, `sweep`, `shards`,
//!    `head`. It knows nodes only through its `Listed` trait, so it uses
//!    none of the above.
//! 5. [`node`] (N1–N5 in its `mod.rs`, C1–C4 in `cache.rs`): the node joins
//!    all of the above.
//!
//! Outside the tree: below the node, `time/slot.rs` (T6–T8),
//! `time/deadline.rs` and `time/registry.rs`; above it, `time/fire.rs`
//! (T4), `time/driver.rs` (T1–T3, T5), `after_func.rs` (F1–F4), `run.rs`
//! (R1–R2), `integrations/tokio.rs` (B1–B3) and `integrations/channel.rs`
//! (D1–D2); beside it, `values.rs` (V1–V4). `docs/design.md` holds what
//! crosses modules.
//!
//! Progress: claim, push, insert, close, sweep and unlink steps are single
//! CAS or RMW retries that fail only when another thread's write changed the
//! word (or, for a weak CAS, spuriously); helping replaces waiting (N4), and
//! an insert that finds a sweep running skips its own (L5). No operation
//! waits for another thread except `wait`, `wait_timeout` and a `done()`
//! future (waiting is what they are for) and `stop_wait` on a callback that
//! is running (F3). The only locks are off the tree's paths: the callback
//! pool's queue (F7, taken by the timer thread's hand-off and its runners,
//! with no user code under it), the collector's queue (K1, taken once per
//! sweep or collection too long to run inline, with no user code under it)
//! and the tokio bridge's `try_lock` (B2).
pub(crate) mod callback_pool;
pub(crate) mod children;
pub(crate) mod collector;
pub(crate) mod dispatch;
#[cfg(not(loom))]
pub(crate) mod foreign_drops;
pub(crate) mod inline_stack;
pub(crate) mod node;
pub(crate) mod panics;
pub(crate) mod state;
pub(crate) mod trampoline;
pub(crate) mod waiters;

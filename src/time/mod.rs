//! Deadlines: their representation, and the timer driver that fires them.
//!
//! A deadline is stored on its node as data: nanoseconds since a process-wide
//! base instant (`Deadline`, 8 bytes; `NEVER` when absent or unrepresentable).
//! Firing is done by one lazily started background thread, `ctxtree-timer`,
//! that owns a binary heap of armed deadlines and cancels each due node
//! through the ordinary cancel path (`node::cancel` with `DeadlineExceeded`).
//!
//! Files, bottom up: [`deadline`] (the data), [`slot`] (the hold word each
//! deadline node carries, T6–T8), [`hold`] (the timer's reference),
//! [`fire`] (T4), [`registry`] (what arming and disarming threads share
//! with the driver), [`driver`] (the thread, T1–T3, T5); under loom,
//! `model` replaces the thread.

pub(crate) mod deadline;
#[cfg(not(loom))]
pub(crate) mod driver;
pub(crate) mod fire;
pub(crate) mod hold;
pub(crate) mod manual;
#[cfg(loom)]
pub(crate) mod model;
#[cfg(not(loom))]
pub(crate) mod registry;
pub(crate) mod slot;

pub(crate) use deadline::Deadline;
#[cfg(not(loom))]
pub(crate) use driver::arm;
#[cfg(loom)]
pub(crate) use model::arm;

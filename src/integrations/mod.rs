//! Optional integrations, each behind its Cargo feature and built on the
//! public API only: [`tokio`] (bridges to tokio-util's
//! `CancellationToken`, blocking waits off the runtime),
//! [`channel`] (a crossbeam `select!` arm for `done`), and
//! [`tower`] (a request context per request, from a root and
//! the caller's `grpc-timeout`).

#[cfg(feature = "crossbeam-channel")]
pub mod channel;
pub(crate) mod current;
#[cfg(feature = "tokio")]
mod task_group;
#[cfg(feature = "tokio")]
pub mod tokio;
#[cfg(feature = "tower")]
pub mod tower;
#[cfg(feature = "tracing")]
pub mod trace;

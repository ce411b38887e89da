//! Fuzz harnesses for ctxtree, shared by the cargo-fuzz targets in
//! `fuzz/fuzz_targets/` and by the stable replay test `tests/fuzz_replay.rs`
//! (which includes this very file with `#[path]`, its modules with it, so
//! the harness must depend on nothing but `ctxtree` and `std`).
//!
//! - [`differential::run`] decodes the input into up to 64 single-threaded
//!   operations on a growing arena of contexts (cancel, deadline, value and
//!   `without_cancel` children), cancel handles, pending `done()` futures and
//!   `after_func` registrations, applies each to ctxtree and to a plain
//!   reference model of Go's rules, and compares everything observable after
//!   every operation.
//! - [`concurrent::run`] decodes a small prebuilt tree, 2–4 racing threads
//!   with up to 64 operations between them (cancels, derivations, futures,
//!   `after_func` registrations and their stops) and up to two blocking
//!   waiters, runs them from a common barrier and checks Go's invariants
//!   during the race and after join.
//!
//! Inputs are decoded by hand (no `arbitrary`): every byte string is a valid
//! input, bytes past the end read as 0. Any mismatch panics with the decoded
//! operations in the message.

#![forbid(unsafe_code)]

/// Decoding and waking helpers used by both harnesses.
mod common;

/// The single-threaded differential target: ctxtree against a reference model.
pub mod differential;

/// The multi-threaded target: racing cancels, derivations, waits and drops on
/// a small shared tree, with Go's invariants checked after join.
pub mod concurrent;

//! Go `context` semantics of the public API, single-threaded where possible:
//! roots, `Display`/`Debug`, synchronous propagation, first-cause-wins,
//! born-canceled children, the `err`/`is_done`/`done()` agreement, the
//! futures and the blocking waits.

#[path = "../common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::{mpsc, Arc};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use common::tree::Tree;
use common::waker::{poll_noop, poll_with, CountingWaker};
use ctxtree::{Cause, Context, Error};
use futures::executor::block_on;

/// `err().is_some()` ⇔ `is_done()` ⇔ `done()` ready ⇔ `cause().is_some()`.
#[track_caller]
fn assert_consistent(ctx: &Context) {
    let err = ctx.err();
    assert_eq!(err.is_some(), ctx.is_done(), "err vs is_done for {ctx:?}");
    assert_eq!(err.is_some(), ctx.cause().is_some(), "err vs cause");
    let mut done = ctx.done();
    match poll_noop(&mut done) {
        Poll::Ready(e) => assert_eq!(Some(e), err, "done() ready with another err"),
        Poll::Pending => assert_eq!(err, None, "err set but done() pending"),
    }
}

#[track_caller]
fn assert_active(ctx: &Context) {
    assert_eq!(ctx.err(), None, "{ctx:?} should be active");
    assert_consistent(ctx);
}

#[track_caller]
fn assert_canceled_with(ctx: &Context, cause: &Cause) {
    assert_eq!(
        ctx.err(),
        Some(Error::Canceled),
        "{ctx:?} should be canceled"
    );
    assert_eq!(
        ctx.cause().as_ref(),
        Some(cause),
        "{ctx:?} has the wrong cause"
    );
    assert_consistent(ctx);
}

fn plain_cancel_cause() -> Cause {
    Cause::from(Error::Canceled)
}

#[derive(Debug)]
struct ShuttingDown;

impl fmt::Display for ShuttingDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("server shutting down")
    }
}

impl StdError for ShuttingDown {}

mod tree;
mod waiting;

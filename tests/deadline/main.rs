//! Deadlines: Go's `WithDeadline` / `WithTimeout` semantics (the effective
//! deadline, inheritance, "the earlier deadline wins", born-expired children,
//! the `TestCause` rows with timeouts, huge and unrepresentable deadlines,
//! `Display`), and the timer driver seen from outside: every reader observes
//! expiry by the deadline and never before it, 10^5 timeouts all fire, a fire
//! racing a manual cancel gives one consistent (err, cause) pair, and there is
//! exactly one `ctxtree-timer` thread.
//!
//! Timing bounds are deliberately loose (CI is a loaded 2-core machine): a
//! timer must never fire before its deadline, and must fire within a bound
//! that only a missed or badly delayed fire exceeds. Lateness figures are
//! printed with `eprintln!` (`cargo test --test deadline -- --nocapture`).
//! The timing-sensitive tests hold `timing()` so they do not measure each
//! other.

#[path = "../common/mod.rs"]
mod common;

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use common::threads::thread_names;
use ctxtree::{CancelHandle, Cause, Context, Error};
use futures::executor::block_on;
use futures::task::noop_waker_ref;

// ---------------------------------------------------------------- helpers

/// Deadlines are stored as nanoseconds since a base instant: allow 1 µs.
const TOLERANCE: Duration = Duration::from_micros(1);

/// Generous bound on how late a fire may be observed on a loaded machine.
const LATE_BOUND: Duration = if cfg!(miri) {
    // miri runs far slower than the driver's deadlines; only gross misses count.
    Duration::from_secs(5)
} else {
    Duration::from_millis(250)
};

/// "Never fires" is checked by waiting this long.
const SHORT_WAIT: Duration = Duration::from_millis(30);

const HOUR: Duration = Duration::from_secs(3600);

static TIMING: Mutex<()> = Mutex::new(());

/// Serializes the tests that measure timer lateness or run many timers.
fn timing() -> MutexGuard<'static, ()> {
    TIMING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[track_caller]
fn assert_instant_near(actual: Instant, expected: Instant, what: &str) {
    let diff = if actual >= expected {
        actual - expected
    } else {
        expected - actual
    };
    assert!(
        diff <= TOLERANCE,
        "{what}: deadline off by {diff:?} (actual {actual:?}, expected {expected:?})"
    );
}

#[track_caller]
fn assert_deadline_near(ctx: &Context, expected: Instant, what: &str) {
    let Some(actual) = ctx.deadline() else {
        panic!("{what}: deadline() is None, expected {expected:?}");
    };
    assert_instant_near(actual, expected, what);
}

fn poll_noop<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut TaskContext::from_waker(noop_waker_ref()))
}

/// `err()`, `is_done()`, `cause()` and a fresh `done()` agree.
#[track_caller]
fn assert_consistent(ctx: &Context) {
    let err = ctx.err();
    assert_eq!(err.is_some(), ctx.is_done(), "err vs is_done for {ctx}");
    assert_eq!(
        err.is_some(),
        ctx.cause().is_some(),
        "err vs cause for {ctx}"
    );
    match poll_noop(&mut ctx.done()) {
        Poll::Ready(e) => assert_eq!(Some(e), err, "done() ready with another err"),
        Poll::Pending => assert_eq!(err, None, "err set but done() pending"),
    }
}

#[track_caller]
fn assert_ended(ctx: &Context, err: Error, cause: &Cause) {
    assert_eq!(ctx.err(), Some(err), "err of {ctx}");
    assert_eq!(ctx.cause().as_ref(), Some(cause), "cause of {ctx}");
    assert_consistent(ctx);
}

#[track_caller]
fn assert_exceeded(ctx: &Context) {
    assert_ended(ctx, Error::DeadlineExceeded, &exceeded());
}

#[track_caller]
fn assert_active(ctx: &Context) {
    assert_eq!(ctx.err(), None, "{ctx} should be active");
    assert_consistent(ctx);
}

fn exceeded() -> Cause {
    Cause::from(Error::DeadlineExceeded)
}

fn canceled() -> Cause {
    Cause::from(Error::Canceled)
}

/// A custom cause type, so causes can also be checked by downcasting.
#[derive(Debug)]
struct Why(&'static str);

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl StdError for Why {}

fn cause(name: &'static str) -> Cause {
    Cause::from(Why(name))
}

/// Waits for `ctx` with a generous timeout; panics if it never ends.
#[track_caller]
fn wait_ended(ctx: &Context) -> Error {
    ctx.wait_timeout(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{ctx} did not end within 10 s"))
}

/// How late `observed` is after `deadline`; panics if it is early.
#[track_caller]
fn lateness(observed: Instant, deadline: Instant, what: &str) -> Duration {
    assert!(
        observed >= deadline,
        "{what}: observed expiry {:?} BEFORE the deadline",
        deadline - observed
    );
    observed - deadline
}

/// `Display` split into its skeleton (bracket contents removed) and the
/// bracket contents, e.g. `context.Background.WithDeadline([])` and
/// `["1.000s"]`.
fn split_display(s: &str) -> (String, Vec<String>) {
    let mut skeleton = String::new();
    let mut inner = Vec::new();
    let mut cur: Option<String> = None;
    for ch in s.chars() {
        match (&mut cur, ch) {
            (None, '[') => {
                skeleton.push('[');
                cur = Some(String::new());
            }
            (Some(text), ']') => {
                inner.push(std::mem::take(text));
                cur = None;
                skeleton.push(']');
            }
            (Some(text), c) => text.push(c),
            (None, c) => skeleton.push(c),
        }
    }
    assert!(cur.is_none(), "unbalanced brackets in {s:?}");
    (skeleton, inner)
}

/// Parses `Duration`'s `Debug` output (`1.500s`, `999.999ms`, `12.000µs`,
/// `7ns`, with an optional leading `-`) into signed seconds.
fn parse_debug_duration(s: &str) -> Option<f64> {
    let (sign, s) = match s.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, s),
    };
    let (num, unit) = if let Some(n) = s.strip_suffix("ns") {
        (n, 1e-9)
    } else if let Some(n) = s.strip_suffix("µs") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| sign * v * unit)
}

mod deadlines;
mod driver;
mod firing;

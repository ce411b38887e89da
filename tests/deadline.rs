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

// ---------------------------------------------------------------- deadline()

#[test]
fn roots_and_plain_cancel_chains_have_no_deadline() {
    assert_eq!(Context::background().deadline(), None);
    assert_eq!(Context::todo().deadline(), None);
    for root in [Context::background(), Context::todo()] {
        let (a, _ha) = root.with_cancel();
        let (b, _hb) = a.with_cancel();
        let (c, _hc) = b.with_cancel();
        assert_eq!(a.deadline(), None);
        assert_eq!(b.deadline(), None);
        assert_eq!(c.deadline(), None);
    }
}

#[test]
fn with_deadline_reports_its_deadline() {
    let d = Instant::now() + HOUR;
    let (ctx, _h) = Context::background().with_deadline(d);
    assert_deadline_near(&ctx, d, "with_deadline");
    assert_active(&ctx);

    let (ctx, _h) = Context::todo().with_deadline_cause(d, cause("T"));
    assert_deadline_near(&ctx, d, "with_deadline_cause");

    let before = Instant::now();
    let (ctx, _h) = Context::background().with_timeout(HOUR);
    let after = Instant::now();
    let got = ctx.deadline().expect("with_timeout has a deadline");
    assert!(
        got + TOLERANCE >= before + HOUR && got <= after + HOUR + TOLERANCE,
        "with_timeout(1h) deadline {got:?} not in [{:?}, {:?}]",
        before + HOUR,
        after + HOUR
    );

    let (ctx, _h) = Context::background().with_timeout_cause(HOUR, cause("T"));
    assert!(ctx.deadline().is_some());
}

#[test]
fn deadline_is_inherited_by_cancel_descendants() {
    let d = Instant::now() + HOUR;
    let (top, _h0) = Context::background().with_cancel();
    let (ctx, _h1) = top.with_deadline(d);
    let (child, _h2) = ctx.with_cancel();
    let (grandchild, _h3) = child.with_cancel();
    let (great, _h4) = grandchild.with_cancel();
    assert_eq!(
        top.deadline(),
        None,
        "a parent does not see a child's deadline"
    );
    for (what, c) in [
        ("child", &child),
        ("grandchild", &grandchild),
        ("great-grandchild", &great),
    ] {
        assert_deadline_near(c, d, what);
        assert_eq!(
            c.deadline(),
            ctx.deadline(),
            "{what}: exactly the same instant"
        );
    }
    // Clones report the same.
    assert_eq!(great.clone().deadline(), great.deadline());
}

#[test]
fn later_child_deadline_yields_parent_deadline_and_a_cancel_child() {
    let _t = timing();
    let t = cause("parent's T");
    let (parent, _ph) =
        Context::background().with_timeout_cause(Duration::from_millis(300), t.clone());
    let pd = parent.deadline().unwrap();

    let (later, _lh) = parent.with_deadline(pd + HOUR);
    let (later_t, _lth) = parent.with_timeout(HOUR);
    let (later_c, _lch) = parent.with_deadline_cause(pd + Duration::from_millis(1), cause("C"));
    let (later_tc, _ltch) = parent.with_timeout_cause(Duration::MAX, cause("C"));
    // Equal to the parent's: Go arms a timer, an implementation may not;
    // either way it reports the same deadline and ends with the parent.
    let (equal, _eh) = parent.with_deadline(pd);
    assert_eq!(equal.deadline(), Some(pd));
    for (what, c) in [
        ("with_deadline(later)", &later),
        ("with_timeout(1h)", &later_t),
        ("with_deadline_cause(later)", &later_c),
        ("with_timeout_cause(MAX)", &later_tc),
    ] {
        assert_eq!(
            c.deadline(),
            Some(pd),
            "{what}: reports the parent's deadline"
        );
        let shown = c.to_string();
        assert!(
            shown.ends_with(".WithCancel"),
            "{what}: a later deadline is a plain cancel child, shown as {shown:?}"
        );
        assert_active(c);
    }
    assert_eq!(wait_ended(&later), Error::DeadlineExceeded);
    let observed = Instant::now();
    eprintln!(
        "later child observed the parent's fire {:?} after its deadline",
        lateness(observed, pd, "later child")
    );
    for c in [&parent, &later, &later_t, &later_c, &later_tc, &equal] {
        assert_eq!(wait_ended(c), Error::DeadlineExceeded);
        // The parent's fire reaches them: the parent's cause, not their own.
        assert_ended(c, Error::DeadlineExceeded, &t);
    }
}

#[test]
fn earlier_child_deadline_wins() {
    let _t = timing();
    let (parent, _ph) = Context::background().with_timeout(HOUR);
    let pd = parent.deadline().unwrap();
    let cd = Instant::now() + Duration::from_millis(20);
    let (child, _ch) = parent.with_deadline(cd);
    let (grandchild, _gh) = child.with_cancel();
    assert_deadline_near(&child, cd, "earlier child");
    assert_deadline_near(&grandchild, cd, "grandchild of earlier child");
    assert!(child.deadline().unwrap() < pd);
    let shown = child.to_string();
    assert!(
        shown.starts_with("context.Background.WithDeadline([") && shown.ends_with("])"),
        "{shown:?}"
    );
    assert_eq!(
        split_display(&shown).0,
        "context.Background.WithDeadline([]).WithDeadline([])"
    );

    assert_eq!(wait_ended(&child), Error::DeadlineExceeded);
    lateness(Instant::now(), cd, "earlier child");
    assert_eq!(wait_ended(&grandchild), Error::DeadlineExceeded);
    assert_exceeded(&child);
    assert_exceeded(&grandchild);
    assert_active(&parent);
}

// ---------------------------------------------------------------- born expired

#[test]
fn deadline_at_or_before_now_is_born_exceeded() {
    let now = Instant::now();
    let mut past = vec![("Instant::now()", now)];
    if let Some(p) = now.checked_sub(Duration::from_secs(1)) {
        past.push(("now - 1s", p));
    }
    if let Some(p) = now.checked_sub(Duration::from_nanos(1)) {
        past.push(("now - 1ns", p));
    }
    let (live, _lh) = Context::background().with_cancel();
    for (what, d) in past {
        for parent in [Context::background(), Context::todo(), live.clone()] {
            let (ctx, h) = parent.with_deadline(d);
            assert_exceeded(&ctx);
            assert!(h.is_canceled(), "{what}: the handle sees it");
            assert_eq!(
                ctx.wait_timeout(Duration::ZERO),
                Some(Error::DeadlineExceeded)
            );
            assert_eq!(ctx.wait(), Error::DeadlineExceeded);
            assert_eq!(block_on(ctx.done()), Error::DeadlineExceeded);
            assert_eq!(block_on(ctx.done_owned()), Error::DeadlineExceeded);

            let t = cause("T");
            let (ctx, _h) = parent.with_deadline_cause(d, t.clone());
            assert_ended(&ctx, Error::DeadlineExceeded, &t);
            assert_eq!(
                ctx.cause().unwrap().downcast_ref::<Why>().map(|w| w.0),
                Some("T")
            );
            // Children derived afterwards inherit both.
            let (child, _ch) = ctx.with_cancel();
            assert_ended(&child, Error::DeadlineExceeded, &t);
            let (child, _ch) = ctx.with_timeout(HOUR);
            assert_ended(&child, Error::DeadlineExceeded, &t);
            // A later manual cancel changes nothing (first writer wins).
            h.cancel_with_cause(cause("late"));
        }
        assert_active(&live);
    }

    let (ctx, _h) = Context::background().with_timeout(Duration::ZERO);
    assert_exceeded(&ctx);
    let (ctx, _h) = live.with_timeout(Duration::from_nanos(1));
    assert_eq!(wait_ended(&ctx), Error::DeadlineExceeded);
    assert_exceeded(&ctx);
    let t = cause("T");
    let (ctx, h) = live.with_timeout_cause(Duration::ZERO, t.clone());
    assert_ended(&ctx, Error::DeadlineExceeded, &t);
    h.cancel();
    assert_ended(&ctx, Error::DeadlineExceeded, &t);
    assert_active(&live);
}

/// A deadline before the crate's base instant (its first use of deadlines)
/// must still be reported as given, like Go's `Deadline()`.
///
/// Regression: the base used to be the first use itself, so an earlier
/// instant saturated and `deadline()` reported the base instead.
#[test]
fn deadline_long_before_now_is_reported_as_given() {
    // Make sure the base exists first, then go well before it.
    let _ = Context::background().with_timeout(HOUR);
    let Some(d) = Instant::now().checked_sub(Duration::from_secs(600)) else {
        eprintln!("skipped: Instant cannot go 10 minutes back here");
        return;
    };
    let (ctx, _h) = Context::background().with_deadline(d);
    assert_exceeded(&ctx);
    assert_deadline_near(&ctx, d, "with_deadline(now - 10 min)");
}

// ---------------------------------------------------------------- causes (Go's TestCause)

#[test]
fn go_test_cause_rows_with_timeouts() {
    let _t = timing();
    let t = cause("T");
    let f = cause("F");

    // WithTimeoutCause(0, T), then cancel: (DeadlineExceeded, T).
    let (ctx, cancel) = Context::background().with_timeout_cause(Duration::ZERO, t.clone());
    cancel.cancel();
    assert_ended(&ctx, Error::DeadlineExceeded, &t);
    drop(cancel);
    assert_ended(&ctx, Error::DeadlineExceeded, &t);

    // Same through with_deadline_cause(now).
    let (ctx, cancel) = Context::background().with_deadline_cause(Instant::now(), t.clone());
    cancel.cancel_with_cause(f.clone());
    assert_ended(&ctx, Error::DeadlineExceeded, &t);

    // WithTimeoutCause stacked: parent canceled with F after the child timed out.
    let (parent, cancel_parent) = Context::background().with_cancel();
    let (ctx, _h) = parent.with_timeout_cause(Duration::ZERO, t.clone());
    cancel_parent.cancel_with_cause(f.clone());
    assert_ended(&ctx, Error::DeadlineExceeded, &t);
    assert_ended(&parent, Error::Canceled, &f);

    // WithTimeoutCause(forever, T), then cancel: (Canceled, Canceled).
    let (ctx, cancel) = Context::background().with_timeout_cause(HOUR, t.clone());
    cancel.cancel();
    assert_ended(&ctx, Error::Canceled, &canceled());
    let (ctx, cancel) = Context::background().with_deadline_cause(Instant::now() + HOUR, t.clone());
    drop(cancel);
    assert_ended(&ctx, Error::Canceled, &canceled());

    // Stacked unfinished: parent canceled with F first: (Canceled, F).
    let (parent, cancel_parent) = Context::background().with_cancel();
    let (ctx, _h) = parent.with_timeout_cause(HOUR, t.clone());
    cancel_parent.cancel_with_cause(f.clone());
    assert_ended(&ctx, Error::Canceled, &f);

    // One parent, two children: one fired, one not; then the parent is
    // canceled with F.
    let (parent, cancel_parent) = Context::background().with_cancel();
    let (fired, _h1) = parent.with_timeout_cause(Duration::from_millis(5), t.clone());
    let (fired_now, _h2) = parent.with_timeout_cause(Duration::ZERO, t.clone());
    let (unfired, _h3) = parent.with_timeout_cause(HOUR, t.clone());
    let (unfired_child, _h4) = unfired.with_cancel();
    assert_eq!(wait_ended(&fired), Error::DeadlineExceeded);
    assert_active(&unfired);
    cancel_parent.cancel_with_cause(f.clone());
    assert_ended(&fired, Error::DeadlineExceeded, &t);
    assert_ended(&fired_now, Error::DeadlineExceeded, &t);
    assert_ended(&unfired, Error::Canceled, &f);
    assert_ended(&unfired_child, Error::Canceled, &f);
    assert_ended(&parent, Error::Canceled, &f);
}

#[test]
fn cancel_child_of_timed_out_parent_reports_deadline_exceeded() {
    let _t = timing();
    let t = cause("T");
    // Fired by the driver, child derived before and after the fire.
    let (parent, _ph) =
        Context::background().with_timeout_cause(Duration::from_millis(10), t.clone());
    let (before, _bh) = parent.with_cancel();
    let (before_grand, _bgh) = before.with_cancel();
    assert_eq!(wait_ended(&before_grand), Error::DeadlineExceeded);
    let (after, _ah) = parent.with_cancel();
    for c in [&parent, &before, &before_grand, &after] {
        assert_ended(c, Error::DeadlineExceeded, &t);
        assert!(c.err().unwrap().is_timeout());
    }
    // Without a cause, the cause is DeadlineExceeded itself.
    let (parent, _ph) = Context::background().with_timeout(Duration::from_millis(10));
    let (child, _ch) = parent.with_cancel();
    assert_eq!(wait_ended(&child), Error::DeadlineExceeded);
    assert_exceeded(&child);
    assert_eq!(
        child.cause().unwrap().downcast_ref::<Error>(),
        Some(&Error::DeadlineExceeded)
    );
    // The child's own cancel after the fire changes nothing.
    let (late, late_h) = parent.with_cancel();
    late_h.cancel_with_cause(cause("mine"));
    assert_exceeded(&late);
}

#[test]
fn manual_cancel_of_deadline_context_is_canceled() {
    let (ctx, h) = Context::background().with_timeout(HOUR);
    let (child, _ch) = ctx.with_cancel();
    h.cancel();
    assert_ended(&ctx, Error::Canceled, &canceled());
    assert_ended(&child, Error::Canceled, &canceled());
    assert!(!ctx.err().unwrap().is_timeout());

    let f = cause("F");
    let (ctx, h) = Context::background().with_deadline_cause(Instant::now() + HOUR, cause("T"));
    h.cancel_with_cause(f.clone());
    assert_ended(&ctx, Error::Canceled, &f);

    let (ctx, h) = Context::background().with_timeout(Duration::from_millis(200));
    drop(h);
    assert_ended(&ctx, Error::Canceled, &canceled());
    // Disarmed: nothing changes when the deadline passes.
    thread::sleep(Duration::from_millis(250));
    assert_ended(&ctx, Error::Canceled, &canceled());
}

// ---------------------------------------------------------------- huge deadlines

#[test]
fn huge_timeouts_and_far_instants_never_panic_and_never_fire() {
    const YEAR: u64 = 365 * 24 * 3600;
    let now = Instant::now();
    let timeouts = [
        ("Duration::MAX", Duration::MAX),
        ("u64::MAX s", Duration::from_secs(u64::MAX)),
        ("u64::MAX/4 s", Duration::from_secs(u64::MAX / 4)),
        ("u64::MAX ns", Duration::from_nanos(u64::MAX)),
        ("2^40 s", Duration::from_secs(1 << 40)),
        ("1000 years", Duration::from_secs(1000 * YEAR)),
        ("600 years", Duration::from_secs(600 * YEAR)),
        ("100 years", Duration::from_secs(100 * YEAR)),
        ("1 year", Duration::from_secs(YEAR)),
    ];
    let mut instants = Vec::new();
    for (what, t) in timeouts {
        if let Some(i) = now.checked_add(t) {
            instants.push((what, i));
        }
    }
    eprintln!(
        "{} of {} far instants are representable",
        instants.len(),
        timeouts.len()
    );

    let (live, _lh) = Context::background().with_cancel();
    let (timed, _th) = Context::background().with_timeout(HOUR);
    let parents = [
        ("background", Context::background()),
        ("cancel parent", live.clone()),
        ("1h parent", timed.clone()),
    ];
    let far = now + Duration::from_secs(YEAR / 2);
    let mut keep: Vec<(String, Context, CancelHandle)> = Vec::new();
    for (pname, parent) in &parents {
        for (what, t) in timeouts {
            let (c, h) = parent.with_timeout(t);
            keep.push((format!("{pname}.with_timeout({what})"), c, h));
            let (c, h) = parent.with_timeout_cause(t, cause("T"));
            keep.push((format!("{pname}.with_timeout_cause({what})"), c, h));
        }
        for (what, i) in &instants {
            let (c, h) = parent.with_deadline(*i);
            keep.push((format!("{pname}.with_deadline(now + {what})"), c, h));
            let (c, h) = parent.with_deadline_cause(*i, cause("T"));
            keep.push((format!("{pname}.with_deadline_cause(now + {what})"), c, h));
        }
    }
    for (what, c, _) in &keep {
        assert_active(c);
        match (c.deadline(), timed.deadline()) {
            (d, Some(td)) if what.starts_with("1h parent") => {
                assert_eq!(d, Some(td), "{what}: the parent's earlier deadline");
            }
            (None, _) => {}
            (Some(d), _) => assert!(d > far, "{what}: deadline {d:?} is not far away"),
        }
        let _ = c.to_string(); // Display must not panic either
    }
    // Representable far deadlines (up to about 53 years ahead, 61 bits of
    // nanoseconds from a base 20 years back) are reported as given; further
    // is no deadline.
    let fifty = now + Duration::from_secs(50 * YEAR);
    let (c, _h) = Context::background().with_deadline(fifty);
    assert_deadline_near(&c, fifty, "now + 50 years");
    let (c, _h) = Context::background().with_deadline(now + Duration::from_secs(100 * YEAR));
    assert_eq!(c.deadline(), None, "now + 100 years is no deadline");

    // The driver is alive and still fires near deadlines after all that.
    let (soon, _sh) = Context::background().with_timeout(Duration::from_millis(10));
    assert_eq!(wait_ended(&soon), Error::DeadlineExceeded);

    thread::sleep(SHORT_WAIT);
    for (what, c, h) in &keep {
        assert_eq!(c.err(), None, "{what} fired");
        h.cancel();
        assert_ended(c, Error::Canceled, &canceled());
    }
}

// ---------------------------------------------------------------- observation

/// Every way of observing a context sees the fire, no earlier than the
/// deadline and within `LATE_BOUND` after it.
#[test]
fn every_reader_observes_expiry_by_the_deadline() {
    let _t = timing();
    let (parent, _ph) = Context::background().with_cancel();
    // 50 ms: time for every reader to start blocking before the deadline.
    let (ctx, _h) = parent.with_timeout(Duration::from_millis(50));
    let deadline = ctx.deadline().unwrap();
    let (child, _ch) = ctx.with_cancel();
    let (grandchild, _gh) = child.with_cancel();

    type Reader = Box<dyn FnOnce() -> Error + Send>;
    let poll_until = |ctx: Context, read: fn(&Context) -> Option<Error>| -> Reader {
        Box::new(move || loop {
            if let Some(e) = read(&ctx) {
                return e;
            }
            thread::sleep(Duration::from_micros(200));
        })
    };
    let readers: Vec<(&str, Reader)> = vec![
        ("wait", {
            let c = ctx.clone();
            Box::new(move || c.wait())
        }),
        ("wait_timeout", {
            let c = ctx.clone();
            Box::new(move || c.wait_timeout(Duration::from_secs(10)).expect("timed out"))
        }),
        ("done", {
            let c = ctx.clone();
            Box::new(move || block_on(c.done()))
        }),
        ("done_owned", {
            let c = ctx.done_owned();
            Box::new(move || block_on(c))
        }),
        (
            "is_done polling",
            poll_until(ctx.clone(), |c| c.is_done().then(|| c.err().unwrap())),
        ),
        ("err polling", poll_until(ctx.clone(), |c| c.err())),
        ("child wait", {
            let c = child.clone();
            Box::new(move || c.wait())
        }),
        ("grandchild done", {
            let c = grandchild.clone();
            Box::new(move || block_on(c.done()))
        }),
        (
            "grandchild is_done polling",
            poll_until(grandchild.clone(), |c| {
                c.is_done().then(|| c.err().unwrap())
            }),
        ),
    ];
    let handles: Vec<_> = readers
        .into_iter()
        .map(|(what, read)| {
            (
                what,
                thread::spawn(move || {
                    let err = read();
                    (err, Instant::now())
                }),
            )
        })
        .collect();
    for (what, h) in handles {
        let (err, observed) = h.join().unwrap();
        assert_eq!(err, Error::DeadlineExceeded, "{what}");
        let late = lateness(observed, deadline, what);
        eprintln!("{what}: observed {late:?} after the deadline");
        assert!(
            late < LATE_BOUND,
            "{what}: observed {late:?} after the deadline"
        );
    }
    assert_exceeded(&ctx);
    assert_exceeded(&child);
    assert_exceeded(&grandchild);
    assert_active(&parent);
    // Derived after the fire: born exceeded.
    let (after, _ah) = ctx.with_cancel();
    assert_exceeded(&after);
}

/// Nobody waits: reads alone, from the thread that armed the timer, still
/// see the fire in time (and never early).
#[test]
fn expiry_is_seen_by_reads_alone() {
    let _t = timing();
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(20));
    let deadline = ctx.deadline().unwrap();
    let (child, _ch) = ctx.with_cancel();
    let give_up = deadline + Duration::from_secs(10);
    let observed = loop {
        let done = child.is_done();
        let after = Instant::now();
        if done {
            break after;
        }
        assert!(after < give_up, "never observed");
        thread::sleep(Duration::from_micros(200));
    };
    let late = lateness(observed, deadline, "child.is_done()");
    eprintln!("reads alone: observed {late:?} after the deadline");
    assert!(late < LATE_BOUND);
    assert_exceeded(&ctx);
    assert_exceeded(&child);
}

#[test]
fn accuracy_when_idle() {
    let _t = timing();
    const REPS: usize = 5;
    for ms in [1u64, 5, 20, 50] {
        let mut late = Vec::with_capacity(REPS);
        for _ in 0..REPS {
            let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(ms));
            let deadline = ctx.deadline().unwrap();
            assert_eq!(ctx.wait(), Error::DeadlineExceeded);
            let observed = Instant::now();
            late.push(lateness(observed, deadline, &format!("{ms} ms timeout")));
            assert_exceeded(&ctx);
        }
        late.sort();
        eprintln!(
            "timeout {ms:>2} ms: lateness min {:?} median {:?} max {:?}",
            late[0],
            late[REPS / 2],
            late[REPS - 1]
        );
        assert!(
            late[REPS - 1] < Duration::from_millis(200),
            "{ms} ms timeout fired {:?} late",
            late[REPS - 1]
        );
    }
}

/// Never early, checked densely: many short timers, each observed by a read
/// whose timestamp is taken after the read.
#[test]
fn timers_never_fire_early() {
    let _t = timing();
    let (parent, _ph) = Context::background().with_cancel();
    let timers: Vec<_> = (0..200u64)
        .map(|i| parent.with_timeout(Duration::from_micros(500 + 37 * i)))
        .collect();
    let deadlines: Vec<Instant> = timers.iter().map(|(c, _)| c.deadline().unwrap()).collect();
    let mut seen = vec![false; timers.len()];
    let give_up = Instant::now() + Duration::from_secs(10);
    while seen.iter().any(|s| !s) {
        for (i, (c, _)) in timers.iter().enumerate() {
            if seen[i] {
                continue;
            }
            let done = c.is_done();
            let after = Instant::now();
            if done {
                lateness(after, deadlines[i], &format!("timer {i}"));
                seen[i] = true;
            }
        }
        assert!(Instant::now() < give_up, "not all timers fired");
        thread::yield_now();
    }
    for (c, _) in &timers {
        assert_exceeded(c);
    }
}

// ---------------------------------------------------------------- scale

#[test]
fn many_timeouts_under_one_parent_all_fire() {
    let _t = timing();
    // 10^5 in debug builds too: arming is cheap enough (about 0.1 s).
    let n: usize = 100_000;
    let (parent, _ph) = Context::background().with_cancel();
    let start = Instant::now();
    let timers: Vec<_> = (0..n)
        .map(|i| parent.with_timeout(Duration::from_millis(20 + (i % 31) as u64)))
        .collect();
    let armed = start.elapsed();
    let last_deadline = timers
        .iter()
        .map(|(c, _)| c.deadline().unwrap())
        .max()
        .unwrap();
    for (c, _) in &timers {
        assert_eq!(wait_ended(c), Error::DeadlineExceeded);
    }
    let all_fired = start.elapsed();
    let after_last = Instant::now().saturating_duration_since(last_deadline);
    for (c, _) in &timers {
        assert_eq!(c.err(), Some(Error::DeadlineExceeded));
        assert_eq!(
            c.cause().unwrap().as_context_error(),
            Some(Error::DeadlineExceeded)
        );
    }
    assert_active(&parent);
    eprintln!(
        "{n} timeouts of 20–50 ms: armed in {armed:?}, all fired after {all_fired:?} \
         (last seen {after_last:?} after the last deadline)"
    );
    assert!(
        all_fired < Duration::from_secs(10),
        "{n} timeouts took {all_fired:?}"
    );
}

#[test]
fn deadline_racing_manual_cancel_gives_one_consistent_outcome() {
    let _t = timing();
    const REPS: usize = 200;
    let t = cause("T");
    let f = cause("F");
    // (timed out, canceled) counts, per way of canceling.
    let mut outcomes = [(0usize, 0usize); 4];
    for rep in 0..REPS {
        let variant = rep % 4;
        let (parent, parent_h) = Context::background().with_cancel();
        let (ctx, h) = parent.with_timeout_cause(Duration::from_millis(2), t.clone());
        let (child, _ch) = ctx.with_cancel();
        let deadline = ctx.deadline().unwrap();
        // Cancel somewhere between 300 µs before and 300 µs after the deadline.
        let offset = Duration::from_micros(((rep * 7919) % 600) as u64);
        let target = deadline - Duration::from_micros(300) + offset;
        let expected_cancel_cause = match variant {
            0 | 3 => canceled(),
            _ => f.clone(),
        };
        thread::scope(|s| {
            s.spawn(|| {
                while Instant::now() < target {
                    std::hint::spin_loop();
                }
                match variant {
                    0 => h.cancel(),
                    1 => h.cancel_with_cause(f.clone()),
                    2 => parent_h.cancel_with_cause(f.clone()),
                    _ => drop(h),
                }
            });
            let err = wait_ended(&child);
            let cause = child.cause().unwrap();
            match err {
                Error::DeadlineExceeded => {
                    assert_eq!(cause, t, "rep {rep}: timed out with the wrong cause");
                    outcomes[variant].0 += 1;
                }
                Error::Canceled => {
                    assert_eq!(
                        cause, expected_cancel_cause,
                        "rep {rep}: canceled with the wrong cause"
                    );
                    outcomes[variant].1 += 1;
                }
                other => panic!("rep {rep}: unexpected err {other:?}"),
            }
            // The context itself has the same pair as its child, and it stays.
            assert_eq!(ctx.err(), Some(err), "rep {rep}");
            assert_eq!(ctx.cause().unwrap(), cause, "rep {rep}");
        });
        thread::sleep(Duration::from_micros(200));
        let err = ctx.err().unwrap();
        let c = ctx.cause().unwrap();
        assert_ended(&child, err, &c);
        match err {
            Error::DeadlineExceeded => assert_eq!(c, t),
            Error::Canceled => assert_eq!(c, expected_cancel_cause),
            other => panic!("unexpected err {other:?}"),
        }
    }
    eprintln!(
        "deadline vs cancel (timed out, canceled): handle.cancel {:?}, \
         cancel_with_cause {:?}, parent cancel {:?}, handle drop {:?}",
        outcomes[0], outcomes[1], outcomes[2], outcomes[3]
    );
}

// ---------------------------------------------------------------- Display

#[test]
fn display_shows_deadlines_and_time_left() {
    let (ctx, _h) = Context::background().with_timeout(HOUR);
    let shown = ctx.to_string();
    let (skeleton, inner) = split_display(&shown);
    assert_eq!(skeleton, "context.Background.WithDeadline([])", "{shown:?}");
    let left = parse_debug_duration(&inner[0]).unwrap_or_else(|| panic!("{shown:?}"));
    assert!((3590.0..=3600.0).contains(&left), "{shown:?}");

    let (ctx, _h) = Context::todo().with_deadline(Instant::now() + Duration::from_secs(2));
    let shown = ctx.to_string();
    let (skeleton, inner) = split_display(&shown);
    assert_eq!(skeleton, "context.TODO.WithDeadline([])", "{shown:?}");
    let left = parse_debug_duration(&inner[0]).unwrap();
    assert!((1.0..=2.0).contains(&left), "{shown:?}");

    // An expired deadline shows a non-positive time left.
    let (ctx, _h) = Context::background().with_timeout(Duration::ZERO);
    let shown = ctx.to_string();
    let (skeleton, inner) = split_display(&shown);
    assert_eq!(skeleton, "context.Background.WithDeadline([])", "{shown:?}");
    assert!(parse_debug_duration(&inner[0]).unwrap() <= 0.0, "{shown:?}");

    // Debug carries the same path.
    let (ctx, _h) = Context::background().with_timeout(HOUR);
    assert!(format!("{ctx:?}").contains("context.Background.WithDeadline(["));
}

#[test]
fn display_with_deadlines_in_the_middle_of_a_chain() {
    let (a, _ha) = Context::background().with_cancel();
    let (b, _hb) = a.with_timeout(HOUR); // armed
    let (c, _hc) = b.with_cancel();
    let (d, _hd) = c.with_timeout(2 * HOUR); // later: a cancel child
    let (e, _he) = d.with_timeout(Duration::from_secs(60)); // earlier: armed
    let (f, _hf) = e.with_cancel();
    let shown = f.to_string();
    let (skeleton, inner) = split_display(&shown);
    assert_eq!(
        skeleton,
        "context.Background.WithCancel.WithDeadline([]).WithCancel.WithCancel\
         .WithDeadline([]).WithCancel",
        "{shown:?}"
    );
    let secs: Vec<f64> = inner
        .iter()
        .map(|s| parse_debug_duration(s).unwrap_or_else(|| panic!("{shown:?}")))
        .collect();
    assert!((3590.0..=3600.0).contains(&secs[0]), "{shown:?}");
    assert!((50.0..=60.0).contains(&secs[1]), "{shown:?}");
    assert_deadline_near(&f, e.deadline().unwrap(), "chain end");
    assert_eq!(c.deadline(), b.deadline());
    assert_eq!(d.deadline(), b.deadline());
}

// ---------------------------------------------------------------- the driver thread

fn timer_threads() -> Option<usize> {
    thread_names().map(|names| names.iter().filter(|n| *n == "ctxtree-timer").count())
}

#[test]
fn one_named_timer_thread() {
    if timer_threads().is_none() {
        eprintln!("skipped: no /proc/self/task here");
        return;
    }
    let (ctx, h) = Context::background().with_timeout(HOUR);
    // The thread names itself as it starts: give it a moment.
    let give_up = Instant::now() + Duration::from_secs(5);
    while timer_threads() != Some(1) && Instant::now() < give_up {
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        timer_threads(),
        Some(1),
        "threads: {:?}",
        thread_names().unwrap()
    );
    h.cancel();
    drop(ctx);

    // 1000 timers from 8 threads, half canceled, half fired.
    let (parent, _ph) = Context::background().with_cancel();
    thread::scope(|s| {
        for t in 0..8u64 {
            let parent = &parent;
            s.spawn(move || {
                let timers: Vec<_> = (0..125u64)
                    .map(|i| parent.with_timeout(Duration::from_millis(1 + (t + i) % 10)))
                    .collect();
                for (i, (c, h)) in timers.iter().enumerate() {
                    if i % 2 == 0 {
                        h.cancel();
                    } else {
                        assert_eq!(wait_ended(c), Error::DeadlineExceeded);
                    }
                }
            });
        }
    });
    assert_eq!(
        timer_threads(),
        Some(1),
        "threads: {:?}",
        thread_names().unwrap()
    );
}

// ---------------------------------------------------------------- a panicking waker

struct PanickingWaker;

impl Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        panic!("this waker panics on purpose");
    }
}

/// The driver survives a waker that panics while a deadline fires (T4), and
/// later timers still fire.
#[test]
fn driver_survives_a_panicking_waker() {
    let _t = timing();
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(10));
    let waker = Waker::from(Arc::new(PanickingWaker));
    let mut done = ctx.done();
    assert!(Pin::new(&mut done)
        .poll(&mut TaskContext::from_waker(&waker))
        .is_pending());
    // The fire panics in the waker; the context is still canceled.
    let give_up = Instant::now() + Duration::from_secs(10);
    while !ctx.is_done() {
        assert!(Instant::now() < give_up, "never fired");
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    // The driver keeps firing.
    let (next, _nh) = Context::background().with_timeout(Duration::from_millis(10));
    assert_eq!(wait_ended(&next), Error::DeadlineExceeded);
}

/// A waker that panics while a deadline fires must not stop the cancel: the
/// other waiters wake and the descendants are canceled.
///
/// Regression: the panic used to abandon the cancel half-way (node canceled,
/// later waiters asleep, descendants active); wakers' panics are now held
/// until the cancel completes.
#[test]
fn panicking_waker_during_fire_still_cancels_the_subtree() {
    let _t = timing();
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(50));
    let (child, _ch) = ctx.with_cancel();
    // A thread waiter registered first (so it sits below the panicking one
    // on the waiter stack).
    let waiter = {
        let ctx = ctx.clone();
        thread::spawn(move || ctx.wait_timeout(Duration::from_secs(2)))
    };
    thread::sleep(Duration::from_millis(10));
    let waker = Waker::from(Arc::new(PanickingWaker));
    let mut done = ctx.done();
    assert!(Pin::new(&mut done)
        .poll(&mut TaskContext::from_waker(&waker))
        .is_pending());
    let waited = waiter.join().unwrap();
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    let child_err = child.wait_timeout(Duration::from_secs(1));
    let mut broken = Vec::new();
    if waited != Some(Error::DeadlineExceeded) {
        broken.push(format!(
            "a thread waiting on the fired context got {waited:?} from wait_timeout(2 s)"
        ));
    }
    if child_err != Some(Error::DeadlineExceeded) {
        broken.push(format!(
            "the fired context's child is still active ({child_err:?})"
        ));
    }
    assert!(broken.is_empty(), "{}", broken.join("; "));
}

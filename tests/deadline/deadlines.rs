//! What `deadline()` reports, children born expired, Go's `TestCause` rows with timeouts, huge and unrepresentable deadlines.

use super::*;

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

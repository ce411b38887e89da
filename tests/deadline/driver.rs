//! `Display` of deadlines, the one timer thread, a panicking waker.

use super::*;

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

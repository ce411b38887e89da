//! When deadlines fire: every reader observes expiry by the deadline and never before it, and 10^5 timeouts all fire, also racing manual cancels.

use super::*;

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

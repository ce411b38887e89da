//! `ctxtree::stats`: the counters match the operations a test made, and
//! export through the `metrics` facade.

use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use ctxtree::stats::{snapshot, Snapshot};
use ctxtree::Context;

/// One test at a time: the counters are process-wide.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn delta(before: &Snapshot, after: &Snapshot) -> [u64; 9] {
    [
        after.derived - before.derived,
        after.freed - before.freed,
        after.canceled - before.canceled,
        after.deadline_exceeded - before.deadline_exceeded,
        after.timers_armed - before.timers_armed,
        after.timers_fired - before.timers_fired,
        after.timers_disarmed - before.timers_disarmed,
        after.callbacks_run - before.callbacks_run,
        after.waiters_woken - before.waiters_woken,
    ]
}

#[test]
fn counters_match_the_operations_made() {
    let _serial = serial();
    let before = snapshot();
    // 10 contexts with a child each, canceled from the top: 20 cancels.
    for _ in 0..10 {
        let (parent, cancel) = Context::background().with_cancel();
        let (_child, _h) = parent.with_cancel();
        cancel.cancel();
    }
    // 5 born expired; 4 armed and canceled; 3 fired by the timer thread.
    for _ in 0..5 {
        drop(Context::background().with_timeout(Duration::ZERO));
    }
    for _ in 0..4 {
        drop(Context::background().with_timeout(Duration::from_secs(60)));
    }
    let fired: Vec<_> = (0..3)
        .map(|_| Context::background().with_timeout(Duration::from_millis(5)))
        .collect();
    for (ctx, _) in &fired {
        while !ctx.is_done() {
            thread::sleep(Duration::from_millis(1)); // no waiter to count
        }
    }
    drop(fired);
    // 2 after_func functions and 2 waiters (a thread, a future) on one context.
    let (ctx, cancel) = Context::background().with_cancel();
    let regs: Vec<_> = (0..2).map(|_| ctx.after_func(|| {})).collect();
    let waiter = {
        let ctx = ctx.clone();
        thread::spawn(move || ctx.wait())
    };
    let mut done = Box::pin(ctx.done_owned());
    assert!(futures::executor::block_on(futures::future::poll_immediate(&mut done)).is_none());
    // Let the thread block in `wait` (registered) before the cancel.
    thread::sleep(Duration::from_millis(50));
    cancel.cancel();
    waiter.join().unwrap();
    drop((regs, done, ctx, cancel));
    // The timer thread lets go of a node it fired just after the cancel
    // that `wait` returned from: give it a moment.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    let mut after = snapshot();
    while after.freed - before.freed < after.derived - before.derived
        && std::time::Instant::now() < until
    {
        thread::sleep(Duration::from_millis(1));
        after = snapshot();
    }
    let [derived, freed, canceled, deadline, armed, fired, disarmed, callbacks, woken] =
        delta(&before, &after);
    assert_eq!(derived, 20 + 5 + 4 + 3 + 1);
    assert_eq!(freed, derived, "every context is freed");
    assert_eq!(canceled, 20 + 4 + 1);
    assert_eq!(deadline, 5 + 3);
    assert_eq!(armed, 4 + 3);
    assert_eq!(fired, 3);
    assert_eq!(disarmed, 4);
    assert_eq!(callbacks, 2);
    assert_eq!(woken, 2);
    assert_eq!(after.live(), before.live());
}

#[test]
fn counts_from_threads_that_exited_stay_counted() {
    let _serial = serial();
    let before = snapshot();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(|| {
                for _ in 0..1000 {
                    drop(Context::background().with_cancel());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let after = snapshot();
    assert_eq!(after.derived - before.derived, 8000);
    assert_eq!(after.canceled - before.canceled, 8000);
}

#[test]
fn a_snapshot_records_through_the_metrics_facade() {
    let _serial = serial();
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    drop(Context::background().with_cancel());
    let snap = snapshot();
    metrics::with_local_recorder(&recorder, || snap.record_metrics());
    let recorded = snapshotter.snapshot().into_vec();
    // The counter's total, or `Some(None)` for a metric that is no counter.
    let value = |name: &str, label: Option<(&str, &str)>| {
        recorded.iter().find_map(|(key, _, _, value)| {
            let key = key.key();
            let labels_match = match label {
                None => key.labels().next().is_none(),
                Some((k, v)) => key.labels().any(|l| l.key() == k && l.value() == v),
            };
            let total = match value {
                DebugValue::Counter(total) => Some(*total),
                _ => None,
            };
            (key.name() == name && labels_match).then_some(total)
        })
    };
    assert_eq!(
        value("ctxtree_contexts_derived_total", None),
        Some(Some(snap.derived))
    );
    assert_eq!(
        value("ctxtree_contexts_canceled_total", Some(("err", "canceled"))),
        Some(Some(snap.canceled))
    );
    assert!(value("ctxtree_contexts_live", None).is_some());
    assert!(value("ctxtree_timers_total", Some(("event", "fired"))).is_some());
}

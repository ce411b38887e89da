//! `Context::done_channel` (feature `crossbeam-channel`): Go's
//! `select { case <-ctx.Done(): ... case job := <-jobs: ... }` for threads.

use std::time::{Duration, Instant};

use crossbeam_channel::{select, unbounded, RecvError, RecvTimeoutError};
use ctxtree::{Context, Error};

#[test]
fn disconnects_when_the_context_is_canceled_and_stays_ready() {
    let (ctx, cancel) = Context::background().with_cancel();
    let done = ctx.done_channel();
    assert!(!done.is_ready());
    assert_eq!(
        done.receiver().recv_timeout(Duration::from_millis(10)),
        Err(RecvTimeoutError::Timeout)
    );
    cancel.cancel();
    assert!(done.is_ready());
    for _ in 0..3 {
        assert_eq!(done.receiver().recv(), Err(RecvError));
    }
}

#[test]
fn ready_at_once_on_a_done_context_and_never_on_background() {
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    assert!(ctx.done_channel().is_ready());

    let done = Context::background().done_channel();
    assert!(!done.is_ready());
    assert_eq!(
        done.receiver().recv_timeout(Duration::from_millis(10)),
        Err(RecvTimeoutError::Timeout)
    );
    let never = ctx.without_cancel().done_channel().into_receiver();
    assert_eq!(
        never.recv_timeout(Duration::from_millis(10)),
        Err(RecvTimeoutError::Timeout)
    );
}

#[test]
fn follows_deadlines_and_ancestors() {
    let (root, root_cancel) = Context::background().with_cancel();
    let start = Instant::now(); // before the derive: the deadline is derive + 30 ms
    let (timed, _h) = root.with_timeout(Duration::from_millis(30));
    assert_eq!(timed.done_channel().receiver().recv(), Err(RecvError));
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!(timed.err(), Some(Error::DeadlineExceeded));

    let (mid, _h) = root.with_cancel();
    let leaf = mid.with_value("v");
    let done = leaf.done_channel();
    root_cancel.cancel();
    assert!(done.is_ready());
}

#[test]
fn worker_threads_select_over_jobs_and_cancellation() {
    let (ctx, cancel) = Context::background().with_cancel();
    let (jobs_tx, jobs) = unbounded::<u64>();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (ctx, jobs) = (ctx.clone(), jobs.clone());
            std::thread::spawn(move || {
                let done = ctx.done_channel();
                let mut sum = 0;
                loop {
                    select! {
                        recv(jobs) -> job => sum += job.expect("jobs channel open"),
                        recv(done.receiver()) -> _ => return (sum, ctx.err()),
                    }
                }
            })
        })
        .collect();
    for n in 1..=100 {
        jobs_tx.send(n).unwrap();
    }
    while !jobs.is_empty() {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(10)); // the last job is summed
    cancel.cancel();
    let mut total = 0;
    for w in workers {
        let (sum, err) = w.join().unwrap();
        assert_eq!(err, Some(Error::Canceled));
        total += sum;
    }
    assert_eq!(total, 5050);
}

#[test]
fn into_receiver_keeps_the_link_and_a_dropped_channel_lets_go() {
    let (ctx, cancel) = Context::background().with_cancel();
    let kept = ctx.done_channel().into_receiver();
    let dropped = ctx.done_channel();
    let stale = dropped.receiver().clone();
    drop(dropped);
    // Documented: the link ended with the DoneChannel, so a stale clone is
    // disconnected although the context is still running.
    assert_eq!(
        stale.try_recv(),
        Err(crossbeam_channel::TryRecvError::Disconnected)
    );
    assert!(!ctx.is_done());
    assert_eq!(
        kept.recv_timeout(Duration::from_millis(10)),
        Err(RecvTimeoutError::Timeout)
    );
    cancel.cancel();
    assert_eq!(kept.recv(), Err(RecvError));
}

//! The timer thread stays responsive (T9, src/time/driver.rs): a storm of
//! deadlines due at one instant, or a compaction of many canceled ones,
//! is handled in slices of bounded work, and a deadline that falls due
//! meanwhile fires between slices instead of after the whole backlog.
//!
//! The bound asserted is on work (entries handled per step of the timer
//! thread, counted by the library), not on wall time; the ordering test
//! relies only on the storm being much longer than one slice.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskContext, Wake, Waker};
use std::time::{Duration, Instant};

use ctxtree::Context;

/// A waker that, when the timer thread's fire wakes it, counts the storm's
/// contexts already done.
struct CountAtWake {
    storm: Vec<Context>,
    fired: OnceLock<usize>,
}

impl Wake for CountAtWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let fired = self.storm.iter().filter(|ctx| ctx.is_done()).count();
        let _ = self.fired.set(fired);
    }
}

/// Seven slices of 1,024: ingest, fire arrivals, fire the rest, and a
/// split's slice (four) or a pour, a backlog slice and a merge (T9).
const MAX_STEP: usize = 7 * 1024;

fn n() -> usize {
    if cfg!(debug_assertions) {
        100_000
    } else {
        1_000_000
    }
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn a_deadline_due_during_a_storm_fires_before_the_backlog_ends() {
    let _serial = serial();
    assert_later_deadline_beats_the_storm(Later::ArmedAtTheStorm);
}

/// Storms of `n()` deadlines with a later one armed as `later` says: the
/// later one must fire before the whole storm has, and no timer step may
/// exceed its bound. The premise — the later deadline armed (or polled)
/// while the storm is still firing — fails if this thread wakes too late
/// (then retry at once). A machine loaded enough to starve the timer
/// thread while it takes in the storm can also delay the later deadline
/// behind it, so this fails only if that happens in each of three storms.
fn assert_later_deadline_beats_the_storm(later: Later) {
    let n = n();
    let mut attempts = Vec::new();
    for _ in 0..3 {
        let fired = (0..5)
            .find_map(|_| storm_then_later_deadline(n, later))
            .expect("this thread never woke before the whole storm had fired");
        eprintln!("{fired} of {n} storm deadlines had fired when the later one did");
        attempts.push(fired);
        if fired < n {
            break;
        }
    }
    assert!(
        attempts.iter().any(|&fired| fired < n),
        "the later deadline waited for the whole storm of {n}, {} times",
        attempts.len()
    );
    let step = ctxtree::__diagnostics::timer_max_step_work();
    assert!(step <= MAX_STEP, "a timer step handled {step} entries");
}

/// When the later deadline of [`storm_then_later_deadline`] is armed.
#[derive(Clone, Copy, PartialEq)]
enum Later {
    /// Once the storm is due, 1 ms later than now.
    ArmedAtTheStorm,
    /// With the storm, before it is due: due 5 ms after it, so it sits in
    /// the heap with the storm's entries when the storm begins.
    ArmedBefore,
}

/// Arms `n` deadlines due at one instant and a later one (`later`); returns
/// how many of the storm had fired when the later one fired, or `None` if
/// the premise failed (the storm had all fired before the later one was
/// armed or polled).
fn storm_then_later_deadline(n: usize, later: Later) -> Option<usize> {
    let root = Context::background();
    // Due after the arming has finished: 10^6 arms take about half a second
    // on a loaded 2-core machine. If the arming overran the instant (a
    // machine busier still), the premise failed: retry, further out.
    let mut margin = Duration::from_millis(if cfg!(debug_assertions) { 800 } else { 2000 });
    let (at, storm) = loop {
        let at = Instant::now() + margin;
        let storm: Vec<_> = (0..n).map(|_| root.with_deadline(at)).collect();
        if Instant::now() + Duration::from_millis(50) < at {
            break (at, storm);
        }
        eprintln!("arming overran {margin:?}; retrying");
        drop(storm);
        margin *= 2;
    };
    // What had fired when the later deadline fired is counted by its
    // waker, which the fire's cancel calls on the timer thread: exact
    // whatever the scheduler does to this thread.
    let counter = Arc::new(CountAtWake {
        storm: storm.iter().map(|(ctx, _)| ctx.clone()).collect(),
        fired: OnceLock::new(),
    });
    let armed_before = root.with_deadline(at + Duration::from_millis(5));
    std::thread::sleep(at.saturating_duration_since(Instant::now()));
    let (short, _short_handle) = match later {
        Later::ArmedAtTheStorm => root.with_timeout(Duration::from_millis(1)),
        Later::ArmedBefore => armed_before,
    };
    let mut done = Box::pin(short.done());
    let waker = Waker::from(counter.clone());
    let first = done.as_mut().poll(&mut TaskContext::from_waker(&waker));
    assert!(
        first.is_pending(),
        "the later deadline was due before it was polled"
    );
    if storm.iter().all(|(ctx, _)| ctx.is_done()) {
        eprintln!("the whole storm fired before this thread woke; retrying");
        return None;
    }
    short.wait();
    // The fire wakes the waiters in some order: the waker may come just
    // after this thread.
    let until = Instant::now() + Duration::from_secs(10);
    let fired = loop {
        match counter.fired.get() {
            Some(&fired) => break fired,
            None if Instant::now() < until => std::thread::sleep(Duration::from_millis(1)),
            None => panic!("the fire never woke the waker"),
        }
    };
    for (ctx, _) in &storm {
        ctx.wait();
    }
    Some(fired)
}

/// T9's split: a deadline armed before a storm's instant and due 5 ms
/// after it sits in the heap with the storm; it fires while the split
/// sorts the storm out, not after the backlog.
#[test]
fn a_deadline_armed_before_a_storm_does_not_wait_for_its_backlog() {
    let _serial = serial();
    assert_later_deadline_beats_the_storm(Later::ArmedBefore);
}

#[test]
fn a_compaction_of_canceled_deadlines_is_done_in_slices() {
    let _serial = serial();
    let root = Context::background();
    let n = n();
    let canceled: Vec<_> = (0..n)
        .map(|_| root.with_timeout(Duration::from_secs(3600)))
        .collect();
    drop(canceled); // every entry disarmed, left to the timer thread
    let (short, _handle) = root.with_timeout(Duration::from_millis(1));
    assert_eq!(short.wait(), ctxtree::Error::DeadlineExceeded);
    // Let the timer thread tidy what is left (T3: 100 ms after activity,
    // longer for large heaps), then check no step did more than its slices.
    std::thread::sleep(Duration::from_millis(300));
    let step = ctxtree::__diagnostics::timer_max_step_work();
    assert!(step <= MAX_STEP, "a timer step handled {step} entries");
}

/// The holds one arm's collection of its shard may look at (T5): its
/// `SELF_COLLECT` (64) batch, with the other threads' arms in the shard,
/// cut at `4 × 64`; the rest of a longer stack goes to the timer thread.
const MAX_SELF_COLLECT: usize = 256;

/// T5: a crowd of threads arming live timeouts faster than the timer
/// thread takes them in (two cores, more threads than shards) never makes
/// one arm collect a long stack: every 64th arm of a thread looks at its
/// shard's stack, and one that finds it long looks at a bounded part and
/// hands the rest to the timer thread.
#[test]
fn a_crowd_of_arming_threads_keeps_each_arms_collection_bounded() {
    let _serial = serial();
    let per_thread = 10_000;
    let threads: Vec<_> = (0..32)
        .map(|_| {
            std::thread::spawn(move || {
                let (parent, _handle) = Context::background().with_cancel();
                let live: Vec<_> = (0..per_thread)
                    .map(|_| parent.with_timeout(Duration::from_secs(60)))
                    .collect();
                assert!(live.iter().all(|(ctx, _)| !ctx.is_done()));
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let most = ctxtree::__diagnostics::timer_max_self_collect();
    eprintln!("the longest collection of a shard by an arm looked at {most} holds");
    assert!(
        most <= MAX_SELF_COLLECT,
        "one arm's collection looked at {most} holds (bound {MAX_SELF_COLLECT})"
    );
}

/// Released when the test no longer needs [`SlowToDrop`]'s drop to block.
static GATE: (std::sync::Mutex<bool>, std::sync::Condvar) =
    (std::sync::Mutex::new(false), std::sync::Condvar::new());
/// The name of the thread that ran [`SlowToDrop`]'s drop.
static DROPPED_ON: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// A custom cause whose drop blocks until [`GATE`] opens (10 s at most):
/// foreign code that the timer thread must not run (K3).
#[derive(Debug)]
struct SlowToDrop;

impl std::fmt::Display for SlowToDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("slow to drop")
    }
}

impl std::error::Error for SlowToDrop {}

impl Drop for SlowToDrop {
    fn drop(&mut self) {
        let name = std::thread::current().name().map(str::to_owned);
        *DROPPED_ON.lock().unwrap() = Some(name.unwrap_or_default());
        let (open, opened) = &GATE;
        let guard = open.lock().unwrap();
        let _ = opened.wait_timeout_while(guard, Duration::from_secs(10), |open| !*open);
    }
}

/// K3: the timer thread frees a deadline context whose only user left was
/// the timer (its handle disarmed and dropped); the context's custom cause
/// goes with it, and its drop blocks. Another deadline, due just after,
/// still fires on time: the drop ran on the collector thread.
#[test]
fn a_cause_whose_drop_blocks_delays_no_deadline() {
    let _serial = serial();
    let (ctx, handle) =
        Context::background().with_timeout_cause(Duration::from_millis(5), SlowToDrop);
    drop(handle.disarm()); // the timer's user is the last one
    drop(ctx);
    let start = Instant::now();
    let (later, _later_handle) = Context::background().with_timeout(Duration::from_millis(50));
    assert!(later.wait_timeout(Duration::from_secs(8)).is_some());
    let took = start.elapsed();
    {
        let (open, opened) = &GATE;
        *open.lock().unwrap() = true;
        opened.notify_all();
    }
    assert!(
        took < Duration::from_secs(5),
        "a 50 ms deadline fired after {took:?}: the timer thread ran a blocking drop"
    );
    // The drop has run (the first deadline fired before the later one).
    let deadline = Instant::now() + Duration::from_secs(5);
    while DROPPED_ON.lock().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let on = DROPPED_ON.lock().unwrap().clone();
    assert_eq!(
        on.as_deref(),
        Some("ctxtree-collector"),
        "the cause was dropped on {on:?}"
    );
}

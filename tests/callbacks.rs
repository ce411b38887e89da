//! Where `after_func` callbacks run, as an outside user sees it (issue 19):
//! a deadline's callbacks never run on the timer thread, so one that blocks
//! delays no other deadline; chains of callbacks that cancel the next
//! context run without recursion, in order, and are finished when the first
//! `cancel()` returns.
//!
//! The tests of this file run one at a time (`serial()`): the timing checks
//! must not compete for the machine's cores with the million-link chain, and
//! the idle-exit test counts the process's runner threads.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::threads::thread_names;
use ctxtree::{AfterFunc, CancelHandle, Context, Error};

/// How late a deadline may fire while a callback blocks elsewhere: generous,
/// for a loaded CI machine; without the hand-off it never fires at all.
const LATE: Duration = Duration::from_millis(200);
const RUNNER: &str = "ctxtree-callbacks";

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runner threads alive now (`None` without `/proc`). Linux cuts a
/// thread's `comm` to 15 bytes: `ctxtree-callbac`.
fn runner_threads() -> Option<usize> {
    let comm = &RUNNER[..15];
    thread_names().map(|names| names.iter().filter(|n| n.starts_with(comm)).count())
}

// ------------------------------------------------------------- defect 3

#[test]
fn a_callback_blocked_on_a_later_deadline_delays_no_other_deadline() {
    let _serial = serial();
    let (a, _ha) = Context::background().with_timeout(ms(10));
    let (b, _hb) = Context::background().with_timeout(ms(50));
    let waited = Arc::new(Mutex::new(None));
    let out = waited.clone();
    let _registration = a.after_func(move || {
        // Blocks its thread until b's deadline: on the timer thread, b
        // could never fire.
        *out.lock().unwrap() = Some(b.wait());
    });
    let start = Instant::now();
    let (c, _hc) = Context::background().with_timeout(ms(20));
    assert_eq!(
        c.wait_timeout(Duration::from_secs(5)),
        Some(Error::DeadlineExceeded)
    );
    let elapsed = start.elapsed();
    assert!(elapsed < ms(20) + LATE, "c fired after {elapsed:?}");
    let give_up = Instant::now() + Duration::from_secs(5);
    while waited.lock().unwrap().is_none() && Instant::now() < give_up {
        thread::sleep(ms(1));
    }
    assert_eq!(*waited.lock().unwrap(), Some(Error::DeadlineExceeded));
}

/// A gate that blocks callbacks until the test releases it (so the process
/// can exit), even if an assertion fails first.
struct Gate {
    ctx: Context,
    handle: Option<CancelHandle>,
}

impl Gate {
    fn new() -> Gate {
        let (ctx, handle) = Context::background().with_cancel();
        Gate {
            ctx,
            handle: Some(handle),
        }
    }

    /// A callback that blocks until the gate opens, then reports.
    fn blocker(&self, entered: &Arc<AtomicUsize>) -> impl FnOnce() + Send + 'static {
        let (gate, entered) = (self.ctx.clone(), entered.clone());
        move || {
            entered.fetch_add(1, Ordering::SeqCst);
            gate.wait();
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        drop(self.handle.take());
    }
}

#[test]
fn a_callback_blocked_forever_delays_no_other_deadline() {
    let _serial = serial();
    let gate = Gate::new();
    let entered = Arc::new(AtomicUsize::new(0));
    let (a, _ha) = Context::background().with_timeout(ms(10));
    let _blocked = a.after_func(gate.blocker(&entered));
    let start = Instant::now();
    let (c, _hc) = Context::background().with_timeout(ms(20));
    assert_eq!(
        c.wait_timeout(Duration::from_secs(5)),
        Some(Error::DeadlineExceeded)
    );
    assert!(start.elapsed() < ms(20) + LATE, "{:?}", start.elapsed());
    // And deadlines keep firing while it stays blocked.
    for _ in 0..5 {
        let start = Instant::now();
        let (d, _hd) = Context::background().with_timeout(ms(5));
        assert_eq!(d.wait(), Error::DeadlineExceeded);
        assert!(start.elapsed() < ms(5) + LATE, "{:?}", start.elapsed());
    }
    assert_eq!(entered.load(Ordering::SeqCst), 1);
    drop(gate); // releases the blocked runner
}

#[test]
fn blocked_callbacks_delay_no_other_deadlines_callback() {
    let _serial = serial();
    let gate = Gate::new();
    let entered = Arc::new(AtomicUsize::new(0));
    // Three fired contexts whose callbacks block: three busy runners.
    let blocked: Vec<(Context, CancelHandle, AfterFunc)> = (0..3)
        .map(|i| {
            let (ctx, h) = Context::background().with_timeout(ms(5 + i));
            let r = ctx.after_func(gate.blocker(&entered));
            (ctx, h, r)
        })
        .collect();
    let give_up = Instant::now() + Duration::from_secs(5);
    while entered.load(Ordering::SeqCst) < 3 && Instant::now() < give_up {
        thread::sleep(ms(1));
    }
    assert_eq!(
        entered.load(Ordering::SeqCst),
        3,
        "each ran on its own runner"
    );
    // A fourth deadline's callback still runs on time.
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    let (d, _hd) = Context::background().with_timeout(ms(20));
    let _r = d.after_func(move || tx.send(Instant::now()).unwrap());
    let ran_at = rx.recv_timeout(Duration::from_secs(5)).expect("ran");
    let late = ran_at - start;
    assert!(late < ms(20) + LATE, "the callback ran after {late:?}");
    drop(gate);
    drop(blocked);
}

#[test]
fn a_panicking_deadline_callback_kills_nothing() {
    let _serial = serial();
    let (ctx, _h) = Context::background().with_timeout(ms(5));
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let _after = ctx.after_func(move || {
        r.fetch_add(1, Ordering::SeqCst);
    });
    let _panics = ctx.after_func(|| panic!("a deadline callback failed"));
    assert_eq!(ctx.wait(), Error::DeadlineExceeded);
    let give_up = Instant::now() + Duration::from_secs(5);
    while runs.load(Ordering::SeqCst) == 0 && Instant::now() < give_up {
        thread::sleep(ms(1));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the other callback ran");
    // Deadlines, and their callbacks, still work afterwards.
    for _ in 0..3 {
        let (tx, rx) = mpsc::channel();
        let (d, _hd) = Context::background().with_timeout(ms(5));
        let _r = d.after_func(move || tx.send(()).unwrap());
        rx.recv_timeout(Duration::from_secs(5)).expect("ran");
    }
}

// ------------------------------------------------------------- which thread

#[test]
fn a_deadline_runs_callbacks_on_a_runner_thread() {
    let _serial = serial();
    let (ctx, _h) = Context::background().with_timeout(ms(5));
    let (tx, rx) = mpsc::channel();
    let _r = ctx.after_func(move || {
        tx.send(thread::current().name().map(str::to_owned))
            .unwrap();
    });
    let name = rx.recv_timeout(Duration::from_secs(5)).expect("ran");
    assert_eq!(name.as_deref(), Some(RUNNER));
}

#[test]
fn a_manual_cancel_runs_callbacks_on_the_canceling_thread_before_returning() {
    let _serial = serial();
    let (ctx, handle) = Context::background().with_timeout(Duration::from_secs(3600));
    let ran_on = Arc::new(Mutex::new(None));
    let out = ran_on.clone();
    let _r = ctx.after_func(move || *out.lock().unwrap() = Some(thread::current().id()));
    let canceler = thread::spawn(move || {
        handle.cancel();
        thread::current().id()
    });
    let canceler_id = canceler.join().unwrap();
    assert_eq!(*ran_on.lock().unwrap(), Some(canceler_id));
}

#[test]
fn an_already_canceled_context_runs_the_callback_on_the_registering_thread() {
    let _serial = serial();
    let (ctx, handle) = Context::background().with_cancel();
    handle.cancel();
    let ran_on = Arc::new(Mutex::new(None));
    let out = ran_on.clone();
    let r = ctx.after_func(move || *out.lock().unwrap() = Some(thread::current().id()));
    assert_eq!(*ran_on.lock().unwrap(), Some(thread::current().id()));
    assert!(!r.stop_wait());
}

// ------------------------------------------------------------- defect 4

/// `n` contexts linked Go's way: context `i`'s callback drops the handle of
/// context `i + 1` (a `CancelHandle` cancels on drop) and checks it runs
/// `i`th. Returns the contexts, the first handle and the count of callbacks
/// that ran in order.
fn chain(n: usize) -> (Vec<Context>, CancelHandle, Arc<AtomicUsize>) {
    let in_order = Arc::new(AtomicUsize::new(0));
    let (ctxs, mut handles): (Vec<Context>, Vec<CancelHandle>) =
        (0..n).map(|_| Context::background().with_cancel()).unzip();
    // Handle 0 is the caller's; handle i + 1 goes to callback i.
    let mut next = handles.split_off(1).into_iter();
    for (i, ctx) in ctxs.iter().enumerate() {
        let (link, counter) = (next.next(), in_order.clone());
        // Not stopped: dropping the AfterFunc keeps the registration.
        drop(ctx.after_func(move || {
            let _ = counter.compare_exchange(i, i + 1, Ordering::Relaxed, Ordering::Relaxed);
            drop(link);
        }));
    }
    (ctxs, handles.pop().unwrap(), in_order)
}

#[test]
fn a_million_chained_callbacks_run_in_order_on_a_small_stack() {
    let _serial = serial();
    const LINKS: usize = 1_000_000;
    let start = Instant::now();
    let (ctxs, first, in_order) = chain(LINKS);
    let built = start.elapsed();
    let small = thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let start = Instant::now();
            first.cancel();
            let canceled = start.elapsed();
            // Every link is canceled, and its callback ran, once the first
            // cancel() returns.
            let open = ctxs.iter().filter(|c| !c.is_done()).count();
            (canceled, open, in_order.load(Ordering::Relaxed))
        })
        .unwrap();
    let (canceled, open, ran) = small.join().expect("no stack overflow");
    eprintln!("{LINKS} links: built in {built:?}, canceled in {canceled:?}");
    assert_eq!(open, 0, "links still open after the first cancel returned");
    assert_eq!(ran, LINKS, "callbacks ran in chain order");
}

#[test]
fn a_callback_runs_after_the_callback_whose_cancel_took_it() {
    let _serial = serial();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (a, ha) = Context::background().with_cancel();
    let (b, hb) = Context::background().with_cancel();
    let (l1, l2) = (log.clone(), log.clone());
    let probe = b.clone();
    let _rb = b.after_func(move || l2.lock().unwrap().push("b's callback"));
    let _ra = a.after_func(move || {
        hb.cancel();
        assert!(
            probe.is_done(),
            "the nested cancel returns once b is canceled"
        );
        l1.lock().unwrap().push("a's callback returns");
    });
    ha.cancel();
    assert_eq!(
        *log.lock().unwrap(),
        ["a's callback returns", "b's callback"]
    );
}

#[test]
fn stop_wait_inside_a_chained_callback_on_the_next_link_does_not_deadlock() {
    let _serial = serial();
    let (a, ha) = Context::background().with_cancel();
    let (b, hb) = Context::background().with_cancel();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let rb = Arc::new(b.after_func(move || {
        r.fetch_add(1, Ordering::SeqCst);
    }));
    let next = rb.clone();
    let seen = Arc::new(Mutex::new(None));
    let out = seen.clone();
    let _ra = a.after_func(move || {
        drop(hb); // b's callback is now pending on this thread
        *out.lock().unwrap() = Some(next.stop_wait());
    });
    ha.cancel();
    assert_eq!(*seen.lock().unwrap(), Some(false), "not prevented, no wait");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "it ran after a's callback");
    assert!(!rb.stop());
}

#[test]
fn stop_wait_from_another_thread_on_a_chained_callback() {
    let _serial = serial();
    for _ in 0..200 {
        let (ctxs, first, _) = chain(8);
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let last = ctxs[7].after_func(move || {
            thread::yield_now();
            flag.store(true, Ordering::SeqCst);
        });
        let canceler = thread::spawn(move || first.cancel());
        let prevented = last.stop_wait();
        assert_eq!(
            done.load(Ordering::SeqCst),
            !prevented,
            "prevented or finished"
        );
        canceler.join().unwrap();
        assert!(ctxs.iter().all(Context::is_done));
    }
}

#[test]
fn a_panic_in_a_chained_callback_resumes_from_the_first_cancel() {
    let _serial = serial();
    let (ctxs, first, in_order) = chain(4);
    let _boom = ctxs[2].after_func(|| panic!("link 2 failed"));
    let result = catch_unwind(AssertUnwindSafe(|| first.cancel()));
    let payload = result.expect_err("the panic resumes from the outermost cancel");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"link 2 failed"));
    assert!(ctxs.iter().all(Context::is_done));
    assert_eq!(in_order.load(Ordering::Relaxed), 4, "every link still ran");
}

// ------------------------------------------------------------- runner threads

#[test]
fn runner_threads_exit_when_idle() {
    let _serial = serial();
    if runner_threads().is_none() {
        eprintln!("skipped: no /proc/self/task here");
        return;
    }
    let gate = Gate::new();
    let entered = Arc::new(AtomicUsize::new(0));
    let fired: Vec<_> = (0..4)
        .map(|_| {
            let (ctx, h) = Context::background().with_timeout(ms(5));
            (ctx.after_func(gate.blocker(&entered)), ctx, h)
        })
        .collect();
    let give_up = Instant::now() + Duration::from_secs(5);
    while entered.load(Ordering::SeqCst) < 4 && Instant::now() < give_up {
        thread::sleep(ms(1));
    }
    let busy = runner_threads().unwrap();
    assert!(busy >= 4, "{busy} runner threads for 4 blocked callbacks");
    drop(gate);
    drop(fired);
    // Runners exit after about a second without work.
    let give_up = Instant::now() + Duration::from_secs(10);
    while runner_threads().unwrap() > 0 && Instant::now() < give_up {
        thread::sleep(ms(20));
    }
    assert_eq!(runner_threads(), Some(0), "{:?}", thread_names());
}

/// A cancel made by a thread-local's destructor, after the thread's own
/// panic holder is gone, whose callback panics: the payload is dropped, the
/// cancel completes, the thread exits normally (no abort, no lost cancel).
#[test]
fn a_panicking_callback_of_a_cancel_during_thread_exit_does_not_abort() {
    use std::cell::RefCell;
    struct CancelOnExit(RefCell<Option<CancelHandle>>);
    impl Drop for CancelOnExit {
        fn drop(&mut self) {
            if let Some(handle) = self.0.borrow_mut().take() {
                handle.cancel();
            }
        }
    }
    thread_local! {
        static ON_EXIT: CancelOnExit = const { CancelOnExit(RefCell::new(None)) };
    }
    let (ctx, handle) = Context::background().with_cancel();
    let ran = Arc::new(AtomicUsize::new(0));
    let ran2 = ran.clone();
    let _stop = ctx.after_func(move || {
        ran2.fetch_add(1, Ordering::SeqCst);
        panic!("a callback that panics during thread exit");
    });
    let watched = ctx.clone();
    std::thread::spawn(move || {
        // Registered first, so destroyed last: after the panic holder,
        // which the first held panic below registers.
        ON_EXIT.with(|slot| *slot.0.borrow_mut() = Some(handle));
        let (other, other_handle) = Context::background().with_cancel();
        let _other_stop = other.after_func(|| panic!("held, then resumed"));
        let resumed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| other_handle.cancel()));
        assert!(resumed.is_err(), "a callback's panic reaches the canceler");
    })
    .join()
    .expect("the thread exits normally");
    assert!(watched.is_done());
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

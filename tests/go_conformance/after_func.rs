//! `AfterFunc` and the err/done race: the `afterfunc_test.go` tests and `TestContextErrDoneRace`.

use super::*;

// ----------------------------------------------------------- AfterFunc tests

/// Records whether and on which thread an after_func function ran.
#[derive(Clone, Default)]
struct Probe {
    ran_on: Arc<Mutex<Option<ThreadId>>>,
    runs: Arc<AtomicUsize>,
}

impl Probe {
    fn func(&self) -> impl FnOnce() + Send + 'static {
        let probe = self.clone();
        move || {
            *probe.ran_on.lock().unwrap() = Some(thread::current().id());
            probe.runs.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    fn thread(&self) -> Option<ThreadId> {
        *self.ran_on.lock().unwrap()
    }

    fn wait_ran(&self, within: Duration) -> bool {
        let give_up = Instant::now() + within;
        while self.runs() == 0 {
            if Instant::now() >= give_up {
                return false;
            }
            thread::sleep(Duration::from_millis(1));
        }
        true
    }
}

// Ports Go's TestAfterFuncCalledAfterCancel (x_test.go). ctxtree runs the
// function on the canceling thread before `cancel` returns, so "called after
// cancel" is checked at once, and on which thread.
#[test]
fn go_test_after_func_called_after_cancel() {
    let (ctx, cancel) = Context::background().with_cancel();
    let probe = Probe::default();
    let stop = ctx.after_func(probe.func());
    thread::sleep(SHORT);
    assert_eq!(probe.runs(), 0, "AfterFunc called before context is done");
    cancel.cancel();
    assert_eq!(
        probe.runs(),
        1,
        "AfterFunc not called after context is canceled"
    );
    assert_eq!(probe.thread(), Some(thread::current().id()));
    assert!(!stop.stop(), "stop() = true, want false");
}

// Ports Go's TestAfterFuncCalledAfterTimeout (x_test.go). The function runs
// on a `ctxtree-callbacks` runner thread (never the timer thread).
#[test]
fn go_test_after_func_called_after_timeout() {
    let (ctx, _cancel) = Context::background().with_timeout(SHORT);
    let probe = Probe::default();
    let _registration = ctx.after_func(probe.func()); // Go ignores stop
    assert!(
        probe.wait_ran(QUIESCENT),
        "AfterFunc not called after context is canceled"
    );
    assert_eq!(probe.runs(), 1);
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

// Ports Go's TestAfterFuncCalledImmediately (x_test.go). In Go the function
// runs "immediately" in a new goroutine; in ctxtree it runs on this thread
// before after_func returns.
#[test]
fn go_test_after_func_called_immediately() {
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    let probe = Probe::default();
    let stop = ctx.after_func(probe.func());
    assert_eq!(
        probe.runs(),
        1,
        "AfterFunc not called for already-canceled context"
    );
    assert_eq!(probe.thread(), Some(thread::current().id()));
    assert!(!stop.stop());
}

// Ports Go's TestAfterFuncNotCalledAfterStop (x_test.go).
#[test]
fn go_test_after_func_not_called_after_stop() {
    let (ctx, cancel) = Context::background().with_cancel();
    let probe = Probe::default();
    let stop = ctx.after_func(probe.func());
    assert!(stop.stop(), "stop() = false, want true");
    cancel.cancel();
    thread::sleep(SHORT);
    assert_eq!(
        probe.runs(),
        0,
        "AfterFunc called for already-canceled context"
    );
    assert!(!stop.stop(), "stop() = true, want false");
}

// Not a Go test: replaces Go's TestAfterFuncCalledAsynchronously (which
// cannot hold) with ctxtree's documented behaviour: when cancel returns, the
// function has run, on the canceling thread, after the subtree was canceled.
#[test]
fn ctxtree_after_func_runs_before_cancel_returns() {
    let (ctx, cancel) = Context::background().with_cancel();
    let (child, _child_handle) = ctx.with_cancel();
    let (donec_tx, donec_rx) = mpsc::channel();
    let c = child.clone();
    let stop = ctx.after_func(move || {
        // The subtree is already canceled when the function runs.
        let child_done = c.is_done();
        donec_tx.send((thread::current().id(), child_done)).unwrap();
    });
    let canceler = thread::spawn(move || {
        cancel.cancel();
        thread::current().id()
    });
    let canceler_id = canceler.join().unwrap();
    // cancel() has returned: the function has already run, on its thread.
    let (ran_on, child_done) = donec_rx
        .try_recv()
        .expect("AfterFunc had not run when cancel returned");
    assert_eq!(ran_on, canceler_id, "AfterFunc ran on another thread");
    assert!(child_done, "AfterFunc ran before the subtree was canceled");
    assert!(!stop.stop());
}

// ------------------------------------------------------ TestContextErrDoneRace

// Ports Go's TestContextErrDoneRace (x_test.go, Go 1.27.3; issue go#75533):
// Err must never be non-nil while Done is not yet closed. As in Go, 10
// rounds: the done future is taken before the cancel (Go: `donec :=
// ctx.Done()`, which creates the channel; here polled once, which registers
// its waiter), another thread cancels (`go cancel()`), this thread spins
// until err() is Some, and then that same done future must be ready.
#[test]
fn go_test_context_err_done_race() {
    // 4 iterations reliably reproduced #75533 (in Go).
    for _ in 0..10 {
        let (ctx, cancel) = Context::background().with_cancel();
        let mut donec = ctx.done();
        assert_eq!((&mut donec).now_or_never(), None, "done before cancel");
        let t = thread::spawn(move || cancel.cancel());
        let give_up = Instant::now() + QUIESCENT;
        while ctx.err().is_none() {
            assert!(Instant::now() < give_up, "never canceled");
            std::hint::spin_loop();
        }
        assert_eq!(
            (&mut donec).now_or_never(),
            Some(Error::Canceled),
            "ctx.Err is non-nil, but ctx.Done is not closed"
        );
        assert!(ctx.is_done());
        t.join().unwrap();
    }

    // Beyond Go's test: more rounds, a fresh done future, a child reached by
    // the parent's cancel, and a firing timer as the canceler.
    fn observe(ctx: &Context) {
        let give_up = Instant::now() + QUIESCENT;
        loop {
            if let Some(err) = ctx.err() {
                assert_eq!(
                    done_now(ctx),
                    Some(err),
                    "Err is {err:?} but Done is not closed"
                );
                assert!(ctx.is_done());
                return;
            }
            assert!(Instant::now() < give_up, "never canceled");
            thread::yield_now();
        }
    }
    for _ in 0..300 {
        let (ctx, cancel) = Context::background().with_cancel();
        let (child, _h) = ctx.with_cancel();
        let t = thread::spawn(move || cancel.cancel());
        observe(&child);
        observe(&ctx);
        t.join().unwrap();
    }
    for _ in 0..20 {
        let (ctx, _h) = Context::background().with_timeout(SHORT);
        let (child, _h2) = ctx.with_cancel();
        observe(&child);
        observe(&ctx);
    }
}

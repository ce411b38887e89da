//! Go's `Example*` functions.

use super::*;

// ----------------------------------------------------------------- Examples

// Ports Go's ExampleWithCancel (example_test.go): a generator task stops
// when its context is canceled, so it does not leak. Go's `select` between
// `ctx.Done()` and a channel send becomes `futures::select!` over `done()`
// and a send on a futures channel.
#[test]
fn go_example_with_cancel() {
    use futures::SinkExt;

    // gen generates integers on its own thread and sends them to the
    // returned channel; it returns once ctx is canceled.
    fn gen(ctx: Context) -> (futures::channel::mpsc::Receiver<i32>, mpsc::Receiver<Error>) {
        let (mut dst, rx) = futures::channel::mpsc::channel(0);
        let (exit_tx, exit_rx) = mpsc::channel();
        thread::spawn(move || {
            let err = futures::executor::block_on(async {
                let mut n = 1;
                loop {
                    let done = ctx.done().fuse();
                    let send = dst.send(n).fuse();
                    futures::pin_mut!(done, send);
                    futures::select! {
                        err = done => return err, // returning not to leak the thread
                        sent = send => {
                            sent.expect("receiver kept alive");
                            n += 1;
                        }
                    }
                }
            });
            let _ = exit_tx.send(err);
        });
        (rx, exit_rx)
    }

    let (ctx, cancel) = Context::background().with_cancel();
    let (ints, exited) = gen(ctx);
    let mut ints = futures::executor::block_on_stream(ints);
    let mut out = Vec::new();
    for n in ints.by_ref() {
        out.push(n.to_string());
        if n == 5 {
            break;
        }
    }
    assert_eq!(out, ["1", "2", "3", "4", "5"]);

    drop(cancel); // Go: defer cancel()
    assert_eq!(
        exited.recv_timeout(QUIESCENT),
        Ok(Error::Canceled),
        "the generator leaked"
    );
    drop(ints);
}

// Ports Go's ExampleWithDeadline (example_test.go).
#[test]
fn go_example_with_deadline() {
    let d = Instant::now() + SHORT;
    let (ctx, cancel) = Context::background().with_deadline(d);
    // Go: select { case <-neverReady: "ready"; case <-ctx.Done(): ctx.Err() }
    let out = match ctx.wait_timeout(QUIESCENT) {
        None => "ready".to_string(),
        Some(_) => ctx.err().unwrap().to_string(),
    };
    drop(cancel); // Go: defer cancel()
    assert_eq!(out, "context deadline exceeded");
}

// Ports Go's ExampleWithTimeout (example_test.go).
#[test]
fn go_example_with_timeout() {
    let (ctx, cancel) = Context::background().with_timeout(SHORT);
    // Go: select { case <-neverReady: "ready"; case <-ctx.Done(): ctx.Err() },
    // awaiting the done future on a thread so that a missed wake-up fails
    // the test instead of hanging it.
    let (out_tx, out_rx) = mpsc::channel();
    let waiter = ctx.clone();
    thread::spawn(move || {
        futures::executor::block_on(waiter.done());
        let _ = out_tx.send(waiter.err().unwrap().to_string());
    });
    let out = out_rx
        .recv_timeout(QUIESCENT)
        .unwrap_or_else(|_| "ready".to_string());
    drop(cancel); // Go: defer cancel()
    assert_eq!(out, "context deadline exceeded");
}

// Go's `type favContextKey string` with keys "language" and "color": here one
// key type per key.
struct Language(&'static str);
#[allow(dead_code)] // only ever used as a key that is not bound
struct Color(&'static str);

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Display for Color {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

// Ports Go's ExampleWithValue (example_test.go).
#[test]
fn go_example_with_value() {
    fn f<K: fmt::Display + 'static>(ctx: &Context, k: &str, out: &mut Vec<String>) {
        if let Some(v) = ctx.value::<K>() {
            out.push(format!("found value: {v}"));
            return;
        }
        out.push(format!("key not found: {k}"));
    }

    let ctx = Context::background().with_value(Language("Go"));
    let mut out = Vec::new();
    f::<Language>(&ctx, "language", &mut out);
    f::<Color>(&ctx, "color", &mut out);
    assert_eq!(out, ["found value: Go", "key not found: color"]);
}

type CondPair = Arc<(Mutex<()>, Condvar)>;

// Ports Go's ExampleAfterFunc_cond (example_test.go): wait on a condition
// variable, stopping the wait when the context is canceled.
//
// One change from Go: Go registers the AfterFunc while holding cond.L, which
// is safe there because f runs in a new goroutine. ctxtree runs f on the
// registering thread when the context is already done (a 1 ms timeout may
// have fired by then), and f takes the same non-reentrant lock, so the port
// registers before locking and checks ctx.err() before each wait instead.
// The second half of the test shows why.
#[test]
fn go_example_after_func_cond() {
    fn wait_on_cond(
        ctx: &Context,
        pair: &CondPair,
        condition_met: impl Fn() -> bool,
    ) -> Option<Error> {
        let p = pair.clone();
        let stopf: AfterFunc = ctx.after_func(move || {
            // Taking the lock makes sure the notify below cannot happen
            // between the waiter's err() check and its wait.
            let _guard = p.0.lock().unwrap();
            p.1.notify_all();
        });
        let (lock, cond) = &**pair;
        let mut guard = lock.lock().unwrap();
        let result = loop {
            if condition_met() {
                break None;
            }
            if let Some(err) = ctx.err() {
                break Some(err);
            }
            guard = cond.wait(guard).unwrap();
        };
        drop(guard);
        stopf.stop(); // Go: defer stopf()
        result
    }

    let pair: CondPair = Arc::new((Mutex::new(()), Condvar::new()));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let pair = pair.clone();
            thread::spawn(move || {
                let (ctx, _cancel) = Context::background().with_timeout(SHORT);
                let err = wait_on_cond(&ctx, &pair, || false);
                err.map_or_else(|| "<nil>".to_string(), |e| e.to_string())
            })
        })
        .collect();
    let out: Vec<String> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    assert_eq!(out, ["context deadline exceeded"; 4]);

    // Why the order changed: registering on a context that is already done
    // while holding the lock runs f here and now, with the lock held. Go's
    // order (lock, then AfterFunc) would deadlock on f's lock(); try_lock
    // shows the lock is unavailable to f.
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    let (lock, _) = &*pair;
    let held = lock.lock().unwrap();
    let p = pair.clone();
    let (seen_tx, seen_rx) = mpsc::channel();
    let _stop = ctx.after_func(move || {
        let _ = seen_tx.send((thread::current().id(), p.0.try_lock().is_err()));
    });
    drop(held);
    let (ran_on, lock_unavailable) = seen_rx.try_recv().expect("f ran inline");
    assert_eq!(ran_on, thread::current().id());
    assert!(
        lock_unavailable,
        "f ran while the registering thread held the lock"
    );
}

// Ports Go's ExampleAfterFunc_connection (example_test.go): stop a blocking
// read when the context is canceled. Go sets the read deadline to now; std's
// TcpStream cannot interrupt a read already blocked, so f shuts the read half
// down instead (a blocked read then returns 0), and cannot be undone the way
// Go resets the deadline.
#[test]
fn go_example_after_func_connection() {
    fn read_from_conn(
        ctx: &Context,
        conn: &TcpStream,
        b: &mut [u8],
    ) -> Result<usize, Box<dyn std::error::Error>> {
        let (stopc_tx, stopc_rx) = mpsc::channel();
        let interrupt = conn.try_clone()?;
        let stop = ctx.after_func(move || {
            let _ = interrupt.shutdown(Shutdown::Read);
            let _ = stopc_tx.send(());
        });
        let n = (&*conn).read(b);
        if !stop.stop() {
            // The AfterFunc was started. Wait for it to complete.
            stopc_rx.recv()?;
            return Err(Box::new(ctx.err().expect("canceled")));
        }
        Ok(n?)
    }

    let listener = match TcpListener::bind("127.0.0.1:0") {
        Ok(l) => l,
        Err(err) => {
            eprintln!("skipped: {err}"); // Go prints the error and returns
            return;
        }
    };
    let conn = TcpStream::connect(listener.local_addr().unwrap()).unwrap();

    let (ctx, _cancel) = Context::background().with_timeout(SHORT);
    let mut b = [0u8; 1024];
    let err = read_from_conn(&ctx, &conn, &mut b).expect_err("read returned data");
    assert_eq!(err.to_string(), "context deadline exceeded");
    drop(listener);
}

/// Go's merged cancel func: stops the registration, then cancels.
struct MergedCancel {
    stop: AfterFunc,
    cancel: Arc<CancelHandle>,
}

impl MergedCancel {
    fn cancel(&self) {
        self.stop.stop();
        self.cancel.cancel_with_cause(Error::Canceled);
    }
}

impl Drop for MergedCancel {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Go's `mergeCancel`: a context with ctx's values, canceled when either ctx
/// or cancel_ctx is canceled, carrying cancel_ctx's cause in the latter case.
fn merge_cancel(ctx: &Context, cancel_ctx: &Context) -> (Context, MergedCancel) {
    let (ctx, cancel) = ctx.with_cancel();
    let cancel = Arc::new(cancel);
    let c = cancel.clone();
    let cc = cancel_ctx.clone();
    let stop = cancel_ctx.after_func(move || {
        if let Some(cause) = cc.cause() {
            c.cancel_with_cause(cause); // Go: cancel(context.Cause(cancelCtx))
        }
    });
    (ctx, MergedCancel { stop, cancel })
}

#[derive(Debug, PartialEq)]
struct MergeKey(&'static str);

// Ports Go's ExampleAfterFunc_merge (example_test.go): the merged context is
// canceled by the second context, with the second context's cause.
#[test]
fn go_example_after_func_merge() {
    let (ctx1, cancel1) = Context::background().with_cancel();
    let ctx1 = ctx1.with_value(MergeKey("from ctx1"));
    let (ctx2, cancel2) = Context::background().with_cancel();

    let (merged_ctx, merged_cancel) = merge_cancel(&ctx1, &ctx2);
    assert_eq!(merged_ctx.value::<MergeKey>(), Some(&MergeKey("from ctx1")));

    let ctx2_cause = errorf("ctx2 canceled");
    cancel2.cancel_with_cause(ctx2_cause.clone());
    assert_eq!(merged_ctx.wait_timeout(QUIESCENT), Some(Error::Canceled));
    assert_eq!(
        futures::executor::block_on(merged_ctx.done()),
        Error::Canceled
    );
    let cause = merged_ctx.cause().expect("merged context has a cause");
    assert_eq!(cause.to_string(), "ctx2 canceled"); // Go's output
    assert_eq!(cause, ctx2_cause, "the second context's cause itself");
    assert!(!ctx1.is_done());

    drop(merged_cancel); // Go: defer mergedCancel()
    cancel1.cancel_with_cause(errorf("ctx1 canceled")); // Go: defer cancel1(...)
    assert_eq!(merged_ctx.cause(), Some(ctx2_cause), "first cause wins");

    // The other way round: ctx1 canceled first, through the parent link.
    let (ctx1, cancel1) = Context::background().with_cancel();
    let (ctx2, _cancel2) = Context::background().with_cancel();
    let (merged_ctx, merged_cancel) = merge_cancel(&ctx1, &ctx2);
    let ctx1_cause = errorf("ctx1 canceled");
    cancel1.cancel_with_cause(ctx1_cause.clone());
    assert_eq!(merged_ctx.cause(), Some(ctx1_cause));
    drop(merged_cancel);
    assert!(!ctx2.is_done());

    // The merged cancel itself: Canceled, and the registration is stopped.
    let (ctx1, _cancel1) = Context::background().with_cancel();
    let (ctx2, cancel2) = Context::background().with_cancel();
    let (merged_ctx, merged_cancel) = merge_cancel(&ctx1, &ctx2);
    merged_cancel.cancel();
    assert_eq!(merged_ctx.err(), Some(Error::Canceled));
    assert_eq!(merged_ctx.cause(), canceled());
    assert!(!merged_cancel.stop.stop(), "already stopped");
    cancel2.cancel_with_cause(errorf("late"));
    assert_eq!(merged_ctx.cause(), canceled());
}

//! Allocations, simultaneous and interlocked cancels, layers, removal of canceled children: `TestAllocs` to `TestDeadlineExceededSupportsTimeout`.

use super::*;

// ----------------------------------------------------------------- TestAllocs

/// Counts heap allocations per thread, so that tests running in parallel do
/// not disturb each other's counts (Go's `testing.AllocsPerRun` counts the
/// whole process; work done on ctxtree's timer thread is not counted here).
struct CountingAlloc;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note_alloc() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards every call to `System` unchanged; only counts calls in a
// const-initialized thread-local (no allocation, no destructor).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc();
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Go's `testing.AllocsPerRun`: one warm-up call, then the average number of
/// allocations (on this thread) per call over `runs` calls.
fn allocs_per_run(runs: u64, mut f: impl FnMut()) -> f64 {
    f();
    let before = ALLOCS.with(Cell::get);
    for _ in 0..runs {
        f();
    }
    let after = ALLOCS.with(Cell::get);
    (after - before) as f64 / runs as f64
}

#[derive(Debug)]
struct AllocKey(Option<&'static str>); // Go: k1 with a nil value

// Ports Go's TestAllocs (x_test.go): each row must allocate no more than
// Go's limit. Go counts `WithTimeout`'s runtime timer; ctxtree's timer lives
// on its driver thread, whose allocations this per-thread count leaves out.
#[test]
fn go_test_allocs() {
    let bg = Context::background();
    type Row<'a> = (&'a str, Box<dyn FnMut() + 'a>, f64);
    let rows: Vec<Row<'_>> = vec![
        (
            "Background()",
            Box::new(|| {
                std::hint::black_box(Context::background());
            }),
            0.0,
        ),
        (
            "WithValue(bg, k1, nil)",
            Box::new(|| {
                let c = bg.with_value(AllocKey(None));
                std::hint::black_box(c.value::<AllocKey>().map(|k| k.0));
            }),
            3.0,
        ),
        (
            "WithTimeout(bg, 1*time.Nanosecond)",
            Box::new(|| {
                let (c, _h) = bg.with_timeout(Duration::from_nanos(1));
                assert_eq!(c.wait(), Error::DeadlineExceeded);
            }),
            12.0,
        ),
        (
            "WithCancel(bg)",
            Box::new(|| {
                let (c, cancel) = bg.with_cancel();
                cancel.cancel();
                assert_eq!(c.wait(), Error::Canceled);
            }),
            5.0,
        ),
        (
            "WithTimeout(bg, 5*time.Millisecond)",
            Box::new(|| {
                let (c, cancel) = bg.with_timeout(Duration::from_millis(5));
                cancel.cancel();
                assert_eq!(c.wait(), Error::Canceled);
            }),
            8.0,
        ),
    ];
    let mut failures = Vec::new();
    for (desc, mut f, limit) in rows {
        let n = allocs_per_run(100, &mut f);
        eprintln!("{desc}: {n} allocs per run (Go's limit {limit})");
        if n > limit {
            failures.push(format!("{desc} allocs = {n} want {limit}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

// ---------------------------------------------------- TestSimultaneousCancels

// Ports Go's TestSimultaneousCancels (x_test.go).
#[test]
fn go_test_simultaneous_cancels() {
    let mut rng = Rng::from_clock();
    let seed = rng.0;
    let (root, cancel) = Context::background().with_cancel();
    let mut m: Vec<(Context, CancelHandle)> = vec![(root.clone(), cancel)];
    let mut q = VecDeque::from([root]);
    // Create a tree of contexts.
    while let Some(parent) = q.pop_front() {
        if m.len() >= 100 {
            break;
        }
        for _ in 0..4 {
            let (ctx, cancel) = parent.with_cancel();
            m.push((ctx.clone(), cancel));
            q.push_back(ctx);
        }
    }
    drop(q);
    // Start all the cancels in a random order.
    rng.shuffle(&mut m);
    let (finished_tx, finished_rx) = mpsc::channel();
    let mut contexts = Vec::with_capacity(m.len());
    let mut threads = Vec::with_capacity(m.len());
    for (ctx, cancel) in m {
        contexts.push(ctx);
        let finished = finished_tx.clone();
        threads.push(thread::spawn(move || {
            cancel.cancel();
            let _ = finished.send(());
        }));
    }
    drop(finished_tx);

    // Wait on all the contexts in a random order.
    let stuck = Instant::now() + QUIESCENT;
    rng.shuffle(&mut contexts);
    for ctx in &contexts {
        let left = stuck.saturating_duration_since(Instant::now());
        assert_eq!(
            ctx.wait_timeout(left),
            Some(Error::Canceled),
            "seed={seed}: timed out after {QUIESCENT:?} waiting for <-ctx.Done()"
        );
    }
    // Wait for all the cancel functions to return.
    for _ in 0..threads.len() {
        let left = stuck.saturating_duration_since(Instant::now());
        assert!(
            finished_rx.recv_timeout(left).is_ok(),
            "seed={seed}: timed out after {QUIESCENT:?} waiting for cancel functions"
        );
    }
    for t in threads {
        t.join().unwrap();
    }
}

// ----------------------------------------------------- TestInterlockedCancels

// Ports Go's TestInterlockedCancels (x_test.go).
#[test]
fn go_test_interlocked_cancels() {
    let (parent, cancel_parent) = Context::background().with_cancel();
    let (child, cancel_child) = parent.with_cancel();
    let p = parent.clone();
    let t = thread::spawn(move || {
        p.wait();
        cancel_child.cancel();
    });
    cancel_parent.cancel();
    assert_eq!(
        child.wait_timeout(QUIESCENT),
        Some(Error::Canceled),
        "timed out after {QUIESCENT:?} waiting for child.Done()"
    );
    t.join().unwrap();
}

// ------------------------------------------ TestLayersCancel, TestLayersTimeout

/// Go's `type value int` keyed by a fresh `*value` per layer: here one type
/// per layer (`LayerKey<N>`), holding a unique id.
#[derive(Debug, PartialEq)]
struct LayerKey<const N: usize>(u64);

fn bind_layer<const N: usize>(ctx: &Context, id: u64) -> Context {
    ctx.with_value(LayerKey::<N>(id))
}

fn lookup_layer<const N: usize>(ctx: &Context) -> Option<u64> {
    ctx.value::<LayerKey<N>>().map(|k| k.0)
}

macro_rules! layer_keys {
    ($($n:literal)*) => {
        const BIND_LAYER: &[fn(&Context, u64) -> Context] = &[$(bind_layer::<$n>),*];
        const LOOKUP_LAYER: &[fn(&Context) -> Option<u64>] = &[$(lookup_layer::<$n>),*];
    };
}

layer_keys!(
    0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23
    24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47
);

/// Go's `testLayers(t, seed, testTimeout)`.
fn test_layers(seed: u64, test_timeout: bool) {
    const MIN_LAYERS: usize = 30;
    let mut rng = Rng(seed | 1);
    let mut vals: Vec<u64> = Vec::new(); // vals[i] is bound under LayerKey<i>
    let mut cancels: Vec<CancelHandle> = Vec::new();
    let mut num_timers = 0;
    let mut ctx = Context::background();
    let mut i = 0;
    while i < MIN_LAYERS || num_timers == 0 || cancels.is_empty() || vals.is_empty() {
        let mut kind = rng.below(3);
        if kind == 0 && vals.len() == BIND_LAYER.len() {
            kind = 1; // out of key types (never reached in practice)
        }
        match kind {
            0 => {
                let id = rng.next();
                ctx = BIND_LAYER[vals.len()](&ctx, id);
                vals.push(id);
            }
            1 => {
                let (c, cancel) = ctx.with_cancel();
                ctx = c;
                cancels.push(cancel);
            }
            _ => {
                let d = if test_timeout { SHORT } else { VERY_LONG };
                let (c, cancel) = ctx.with_timeout(d);
                ctx = c;
                cancels.push(cancel);
                num_timers += 1;
            }
        }
        i += 1;
    }
    let check_values = |when: &str| {
        for (n, &id) in vals.iter().enumerate() {
            assert_eq!(
                LOOKUP_LAYER[n](&ctx),
                Some(id),
                "seed={seed}: {when}: ctx.Value(LayerKey<{n}>)"
            );
        }
    };
    if !test_timeout {
        assert!(
            !ctx.is_done(),
            "seed={seed}: ctx should not be canceled yet"
        );
        assert_eq!(
            done_now(&ctx),
            None,
            "seed={seed}: ctx should not be canceled yet"
        );
    }
    let s = ctx.to_string();
    assert!(
        s.starts_with("context.Background."),
        "seed={seed}: ctx.String() = {s:?}"
    );
    check_values("before cancel");
    if test_timeout {
        assert_eq!(
            ctx.wait_timeout(QUIESCENT),
            Some(Error::DeadlineExceeded),
            "seed={seed}: ctx should have timed out after {QUIESCENT:?}"
        );
        check_values("after timeout");
    } else {
        let cancel = &cancels[rng.below(cancels.len())];
        cancel.cancel();
        assert_eq!(
            done_now(&ctx),
            Some(Error::Canceled),
            "seed={seed}: ctx should be canceled"
        );
        check_values("after cancel");
    }
}

// Ports Go's TestLayersCancel (x_test.go).
#[test]
fn go_test_layers_cancel() {
    test_layers(Rng::from_clock().0, false);
}

// Ports Go's TestLayersTimeout (x_test.go).
#[test]
fn go_test_layers_timeout() {
    test_layers(Rng::from_clock().0, true);
}

// ------------------------------------------- TestCancelRemoves (context_test.go)

// Ports Go's TestCancelRemoves (context_test.go, XTestCancelRemoves) as far
// as it is observable: Go counts `len(ctx.(*cancelCtx).children)`, which has
// no public counterpart (the memory side, "a canceled or stopped child stops
// costing memory in its parent", is tests/memory.rs
// children_canceled_individually_are_freed_while_parent_lives). Kept: a
// canceled child or stopped after_func leaves its parent untouched, and a
// stop on a live registration reports that it prevented the function.
#[test]
fn go_test_cancel_removes() {
    let (ctx, _h) = Context::background().with_cancel();
    let (child, cancel) = ctx.with_cancel();
    cancel.cancel();
    assert_finished(&child, "WithCancel child", Error::Canceled);
    assert_blocks(&ctx, "ctx after canceling WithCancel child");

    let (ctx, _h) = Context::background().with_cancel();
    let (child, cancel) = ctx.with_timeout(Duration::from_secs(60 * 60));
    cancel.cancel();
    assert_finished(&child, "WithTimeout child", Error::Canceled);
    assert_blocks(&ctx, "ctx after canceling WithTimeout child");

    let (ctx, cancel_ctx) = Context::background().with_cancel();
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    let stop = ctx.after_func(move || flag.store(true, Ordering::SeqCst));
    assert!(stop.stop(), "stopping a live AfterFunc child");
    assert_blocks(&ctx, "ctx after stopping AfterFunc child");
    cancel_ctx.cancel();
    assert!(!ran.load(Ordering::SeqCst), "stopped AfterFunc ran");
}

// ---------------------------------------------- TestWithCancelCanceledParent

// Ports Go's TestWithCancelCanceledParent (x_test.go).
#[test]
fn go_test_with_cancel_canceled_parent() {
    let (parent, pcancel) = Context::background().with_cancel();
    let cause = errorf("Because!");
    pcancel.cancel_with_cause(cause.clone());

    let (c, _h) = parent.with_cancel();
    assert_eq!(
        done_now(&c),
        Some(Error::Canceled),
        "child not done immediately upon construction"
    );
    assert_eq!(c.err(), Some(Error::Canceled), "child not canceled");
    assert_eq!(c.cause(), Some(cause), "child has wrong cause");
}

// Ports Go's TestWithCancelSimultaneouslyCanceledParent (x_test.go).
#[test]
fn go_test_with_cancel_simultaneously_canceled_parent() {
    // Cancel the parent concurrently with creating a child.
    for _ in 0..100 {
        let (parent, pcancel) = Context::background().with_cancel();
        let cause = errorf("Because!");
        let sent = cause.clone();
        let t = thread::spawn(move || pcancel.cancel_with_cause(sent));

        let (c, _h) = parent.with_cancel();
        assert_eq!(c.wait_timeout(QUIESCENT), Some(Error::Canceled));
        assert_eq!(c.err(), Some(Error::Canceled), "child not canceled");
        assert_eq!(c.cause(), Some(cause), "child has wrong cause");
        t.join().unwrap();
    }
}

// ---------------------------------------------------- TestWithValueChecksKey

// Ports Go's TestWithValueChecksKey (x_test.go), adapted. Go panics on a
// non-comparable key (`[]byte("foo")`) and on a nil key. Here the key is the
// value's type: every `'static` type is a valid key, checked at compile
// time, and there is no nil key, so nothing can panic. Kept: a value whose
// type Go could not use as a key works, and an unbound type finds nothing.
#[test]
fn go_test_with_value_checks_key() {
    let ctx = Context::background().with_value(b"foo".to_vec()); // Go's []byte key
    assert_eq!(ctx.value::<Vec<u8>>(), Some(&b"foo".to_vec()));
    assert_eq!(ctx.value::<()>(), None);
    assert_eq!(Context::background().value::<Vec<u8>>(), None);
}

// TestInvalidDerivedFail (x_test.go) is not ported: it checks that deriving
// from a nil parent panics, and a Rust `Context` cannot be nil.

// ------------------------------------------ TestDeadlineExceededSupportsTimeout

// Ports Go's TestDeadlineExceededSupportsTimeout (x_test.go).
#[test]
fn go_test_deadline_exceeded_supports_timeout() {
    fn as_std_error(e: &(dyn std::error::Error + Send + Sync + 'static)) -> String {
        e.to_string()
    }
    assert!(
        Error::DeadlineExceeded.is_timeout(),
        "wrong value for timeout"
    );
    assert!(!Error::Canceled.is_timeout());
    assert_eq!(
        as_std_error(&Error::DeadlineExceeded),
        "context deadline exceeded"
    );
    assert_eq!(as_std_error(&Error::Canceled), "context canceled");
}

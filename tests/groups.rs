//! The thread task group (`ctxtree::group::scope`): Go's `errgroup` tests
//! ported where they apply (`go_*`), then the group's own guarantees: the
//! first error is the siblings' cause, wait ends after every task, the
//! limit bounds concurrency, shutdown reports stragglers, panics cancel and
//! are resumed, and no thread outlives the scope.
//!
//! Go sources: `golang.org/x/sync/errgroup/errgroup_test.go` (TestZeroGroup,
//! TestWithContext, TestTryGo, TestGoLimit, TestCancelCause,
//! ExampleGroup_justErrors, ExampleGroup_parallel). Go has no zero group
//! here: its ports open the scope on `Context::background()`. Go's tests
//! compare errors by identity; `Cause` equality is identity too, so the
//! ports compare the `Cause` a task returned with the one `wait` gives back.
//! Go's panic propagation through `Wait` (golang/go#53757, reverted in
//! 2025) is this group's documented behaviour: `panic_*` tests.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use ctxtree::group::{self, GroupShutdown, TaskPanicked};
use ctxtree::{Cause, Context, Error};

/// Generous bound for "must have happened by now" on a loaded 2-core box.
const QUIESCENT: Duration = Duration::from_secs(10);

/// Counts live tasks: one per guard, decremented when the guard is dropped
/// (also when its thread unwinds).
#[derive(Clone, Default)]
struct Live(Arc<AtomicUsize>);

struct LiveGuard(Arc<AtomicUsize>);

impl Live {
    fn enter(&self) -> LiveGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        LiveGuard(self.0.clone())
    }
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Tracks the number of tasks inside a section at once, and the maximum.
#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Concurrency {
    fn section(&self, work: impl FnOnce()) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        work();
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

fn ok() -> Result<(), Cause> {
    Ok(())
}

#[test]
fn group_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn scope_is_send_sync<'scope, 'env: 'scope>() {
        send_sync::<group::Scope<'scope, 'env>>();
    }
    scope_is_send_sync();
    send_sync::<group::TaskId>();
    send_sync::<group::ShutdownReport>();
    send_sync::<GroupShutdown>();
    send_sync::<TaskPanicked>();
}

// ------------------------------------------------------------ Go's tests

/// TestZeroGroup: `wait` after each spawn returns the first error so far.
#[test]
fn go_test_zero_group() {
    let err1 = Cause::msg("errgroup_test: 1");
    let err2 = Cause::msg("errgroup_test: 2");
    let cases: Vec<Vec<Option<Cause>>> = vec![
        vec![],
        vec![None],
        vec![Some(err1.clone())],
        vec![Some(err1.clone()), None],
        vec![Some(err1.clone()), None, Some(err2.clone())],
    ];
    for errs in cases {
        group::scope(&Context::background(), |g| {
            let mut first: Option<Cause> = None;
            for err in errs {
                if first.is_none() {
                    first.clone_from(&err);
                }
                g.spawn(move |_ctx| err.map_or(Ok(()), Err));
                assert_eq!(g.wait().err(), first);
            }
        })
        .ok();
    }
}

/// TestWithContext: `wait` returns the first error, and the group's context
/// is done once `wait` returned.
#[test]
fn go_test_with_context() {
    let doom = Cause::msg("group_test: doomed");
    let cases: Vec<(Vec<Option<Cause>>, Option<Cause>)> = vec![
        (vec![], None),
        (vec![None], None),
        (vec![Some(doom.clone())], Some(doom.clone())),
        (vec![Some(doom.clone()), None], Some(doom.clone())),
    ];
    for (errs, want) in cases {
        let mut group_ctx = None;
        let result = group::scope(&Context::background(), |g| {
            group_ctx = Some(g.context().clone());
            for err in errs {
                g.spawn(move |_ctx| err.map_or(Ok(()), Err));
            }
            assert_eq!(g.wait().err(), want);
            assert!(g.context().is_done(), "ctx.Done() was not closed");
        });
        assert_eq!(result.err(), want);
        assert!(group_ctx.unwrap().is_done());
    }
}

/// TestTryGo: `try_spawn` fails exactly when the limit is reached, also
/// after the limit changes; a limit of 0 blocks every call.
#[test]
fn go_test_try_go() {
    group::scope(&Context::background(), |g| {
        const N: usize = 42;
        g.set_limit(N);
        let (ch, rx) = mpsc::sync_channel::<()>(0);
        let task = |ch: mpsc::SyncSender<()>| {
            move |_ctx: Context| {
                ch.send(()).unwrap();
                ok()
            }
        };
        for i in 0..N {
            assert!(
                g.try_spawn(task(ch.clone())).is_some(),
                "try_spawn should succeed but failed at call {i}"
            );
        }
        assert!(g.try_spawn(task(ch.clone())).is_none());
        for _ in 0..N {
            rx.recv().unwrap();
        }
        g.wait().unwrap();

        assert!(g.try_spawn(task(ch.clone())).is_some());
        rx.recv().unwrap();
        g.wait().unwrap();

        // Switch limit.
        g.set_limit(1);
        assert!(g.try_spawn(task(ch.clone())).is_some());
        assert!(g.try_spawn(task(ch.clone())).is_none());
        rx.recv().unwrap();
        g.wait().unwrap();

        // Block all calls.
        g.set_limit(0);
        for _ in 0..1 << 10 {
            assert!(g.try_spawn(task(ch.clone())).is_none());
        }
        g.wait().unwrap();
    })
    .unwrap();
}

/// TestGoLimit: with a limit of 10, no more than 10 tasks are ever active.
#[test]
fn go_test_go_limit() {
    const LIMIT: usize = 10;
    let active = AtomicUsize::new(0);
    let result = group::scope(&Context::background(), |g| {
        g.set_limit(LIMIT);
        for _ in 0..=1 << 10 {
            let active = &active;
            g.spawn(move |_ctx| {
                let n = active.fetch_add(1, Ordering::SeqCst) + 1;
                if n > LIMIT {
                    return Err(Cause::msg(format!("saw {n} active tasks; want <= {LIMIT}")));
                }
                thread::sleep(Duration::from_micros(1)); // let others increment
                active.fetch_sub(1, Ordering::SeqCst);
                ok()
            });
        }
    });
    result.unwrap();
}

/// TestCancelCause: after `wait`, the group context's cause is the first
/// error, or `Canceled` when there was none.
#[test]
fn go_test_cancel_cause() {
    let doom = Cause::msg("group_test: doomed");
    let cases: Vec<(Vec<Option<Cause>>, Option<Cause>)> = vec![
        (vec![], None),
        (vec![None], None),
        (vec![Some(doom.clone())], Some(doom.clone())),
        (vec![Some(doom.clone()), None], Some(doom.clone())),
    ];
    for (errs, want) in cases {
        group::scope(&Context::background(), |g| {
            for err in errs {
                let started = g.try_spawn(move |_ctx| err.map_or(Ok(()), Err));
                assert!(started.is_some());
            }
            assert_eq!(g.wait().err(), want);
            let want_cause = want.clone().unwrap_or(Cause::from(Error::Canceled));
            assert_eq!(g.context().cause(), Some(want_cause));
        })
        .ok();
    }
}

/// ExampleGroup_justErrors, with a fake fetch: the group as a WaitGroup
/// that also collects the first error.
#[test]
fn go_example_just_errors() {
    fn fetch(url: &str) -> Result<(), std::io::Error> {
        if url.contains("somestupidname") {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such host",
            ));
        }
        Ok(())
    }
    let urls = [
        "http://www.golang.org/",
        "http://www.google.com/",
        "http://www.somestupidname.com/",
    ];
    let result = group::scope(&Context::background(), |g| {
        for url in urls {
            g.spawn(move |_ctx| fetch(url));
        }
    });
    let err = result.unwrap_err();
    assert_eq!(
        err.downcast_ref::<std::io::Error>().unwrap().kind(),
        std::io::ErrorKind::NotFound
    );
}

/// ExampleGroup_parallel: results written into borrowed slots (scoped
/// threads need no channel).
#[test]
fn go_example_parallel() {
    type Search = fn(&Context, &str) -> Result<String, Cause>;
    fn fake_search(kind: &'static str) -> impl Fn(&Context, &str) -> Result<String, Cause> {
        move |_ctx, query| Ok(format!("{kind} result for {query:?}"))
    }
    fn web(ctx: &Context, q: &str) -> Result<String, Cause> {
        fake_search("web")(ctx, q)
    }
    fn image(ctx: &Context, q: &str) -> Result<String, Cause> {
        fake_search("image")(ctx, q)
    }
    fn video(ctx: &Context, q: &str) -> Result<String, Cause> {
        fake_search("video")(ctx, q)
    }
    fn google(ctx: &Context, query: &str) -> Result<Vec<String>, Cause> {
        let searches: [Search; 3] = [web, image, video];
        let mut results = vec![String::new(); searches.len()];
        group::scope(ctx, |g| {
            for (search, slot) in searches.into_iter().zip(&mut results) {
                g.spawn(move |ctx| {
                    *slot = search(&ctx, query)?;
                    ok()
                });
            }
        })?;
        Ok(results)
    }
    let results = google(&Context::background(), "golang").unwrap();
    assert_eq!(
        results,
        [
            "web result for \"golang\"",
            "image result for \"golang\"",
            "video result for \"golang\"",
        ]
    );
}

// ------------------------------------------------------ first error, cause

#[test]
fn first_error_is_the_cause_seen_by_siblings() {
    let failure = Cause::msg("disk full");
    let (causes_tx, causes) = mpsc::channel();
    let result = group::scope(&Context::background(), |g| {
        for _ in 0..4 {
            let causes_tx = causes_tx.clone();
            g.spawn(move |ctx| {
                assert_eq!(ctx.wait(), Error::Canceled);
                causes_tx.send(ctx.cause().unwrap()).unwrap();
                ok()
            });
        }
        let sent = failure.clone();
        g.spawn(move |_ctx| Err(sent));
    });
    assert_eq!(result, Err(failure.clone()));
    drop(causes_tx);
    let seen: Vec<Cause> = causes.iter().collect();
    assert_eq!(seen.len(), 4);
    assert!(
        seen.iter().all(|c| *c == failure),
        "the same cause, by identity"
    );
}

#[test]
fn only_the_first_of_racing_errors_wins() {
    for _ in 0..20 {
        let barrier = Barrier::new(8);
        let result = group::scope(&Context::background(), |g| {
            for i in 0..8 {
                let barrier = &barrier;
                g.spawn(move |_ctx| {
                    barrier.wait();
                    Err(Cause::msg(format!("error {i}")))
                });
            }
            let first = g.wait().unwrap_err();
            assert_eq!(g.context().cause(), Some(first.clone()));
            assert_eq!(
                g.wait().unwrap_err(),
                first,
                "wait keeps the same first error"
            );
            first
        });
        let first = result.unwrap_err();
        assert!(first.to_string().starts_with("error "));
    }
}

#[test]
fn tasks_may_fail_with_different_error_types() {
    let result = group::scope(&Context::background(), |g| {
        g.spawn(|_ctx| "x".parse::<u32>().map(drop));
        g.spawn(|ctx| {
            ctx.wait();
            Err(std::io::Error::other("late"))
        });
    });
    let err = result.unwrap_err();
    assert!(err.downcast_ref::<std::num::ParseIntError>().is_some());
}

#[test]
fn the_group_failure_does_not_cancel_the_parent() {
    let (parent, _cancel) = Context::background().with_cancel();
    let result = group::scope(&parent, |g| {
        g.spawn(|_ctx| Err(Cause::msg("task failed")));
    });
    assert!(result.is_err());
    assert!(!parent.is_done());
}

#[test]
fn a_parent_cancel_reaches_every_task_with_its_cause() {
    let (parent, cancel) = Context::background().with_cancel();
    let cancel = &cancel;
    let result = group::scope(&parent, |g| {
        for _ in 0..3 {
            g.spawn(|ctx| {
                ctx.wait();
                assert_eq!(ctx.cause().unwrap().to_string(), "server stopping");
                ok()
            });
        }
        cancel.cancel_with_cause(Cause::msg("server stopping"));
    });
    result.unwrap();
}

// ------------------------------------------------ cancellation and waiting

#[test]
fn siblings_observe_cancellation() {
    let observed = AtomicUsize::new(0);
    let result = group::scope(&Context::background(), |g| {
        for _ in 0..8 {
            let observed = &observed;
            g.spawn(move |ctx| {
                // Work in slices, checking the context between them.
                while !ctx.is_done() {
                    thread::sleep(Duration::from_millis(1));
                }
                observed.fetch_add(1, Ordering::SeqCst);
                ok()
            });
        }
        g.spawn(|_ctx| Err(Cause::msg("stop")));
    });
    assert!(result.is_err());
    assert_eq!(observed.load(Ordering::SeqCst), 8);
}

#[test]
fn wait_returns_only_after_every_task_ended() {
    let ended = AtomicUsize::new(0);
    group::scope(&Context::background(), |g| {
        for i in 0..16u64 {
            let ended = &ended;
            g.spawn(move |_ctx| {
                thread::sleep(Duration::from_millis(i % 4 * 5));
                ended.fetch_add(1, Ordering::SeqCst);
                ok()
            });
        }
        g.wait().unwrap();
        assert_eq!(ended.load(Ordering::SeqCst), 16);
    })
    .unwrap();
}

#[test]
fn task_contexts_are_done_when_wait_returns() {
    let (contexts_tx, contexts) = mpsc::channel();
    group::scope(&Context::background(), |g| {
        for _ in 0..4 {
            let contexts_tx = contexts_tx.clone();
            g.spawn(move |ctx| {
                contexts_tx.send(ctx.clone()).unwrap();
                ok()
            });
        }
        g.wait().unwrap();
        drop(contexts_tx);
        assert!(contexts.iter().all(|ctx| ctx.is_done()));
    })
    .unwrap();
}

#[test]
fn the_scope_returns_the_bodys_value_and_cancels_the_group() {
    let mut group_ctx = None;
    let value = group::scope(&Context::background(), |g| {
        group_ctx = Some(g.context().clone());
        g.spawn(|_ctx| ok());
        7
    });
    assert_eq!(value, Ok(7));
    let group_ctx = group_ctx.unwrap();
    assert_eq!(group_ctx.err(), Some(Error::Canceled));
}

#[test]
fn a_task_can_spawn_siblings() {
    let leaves = AtomicUsize::new(0);
    group::scope(&Context::background(), |g| {
        fn walk<'scope>(g: group::Scope<'scope, '_>, depth: u32, leaves: &'scope AtomicUsize) {
            if depth == 0 {
                leaves.fetch_add(1, Ordering::SeqCst);
                return;
            }
            for _ in 0..2 {
                let child = g.clone();
                g.spawn(move |_ctx| {
                    walk(child, depth - 1, leaves);
                    ok()
                });
            }
        }
        walk(g.clone(), 4, &leaves);
    })
    .unwrap();
    assert_eq!(leaves.load(Ordering::SeqCst), 16);
}

// ------------------------------------------------------------------ limit

#[test]
fn limit_bounds_concurrency() {
    for limit in [1, 3] {
        let concurrency = Concurrency::default();
        group::scope(&Context::background(), |g| {
            g.set_limit(limit);
            for _ in 0..24 {
                let concurrency = &concurrency;
                g.spawn(move |_ctx| {
                    concurrency.section(|| thread::sleep(Duration::from_millis(2)));
                    ok()
                });
            }
        })
        .unwrap();
        let max = concurrency.max.load(Ordering::SeqCst);
        assert!(
            max <= limit,
            "{max} tasks ran at once with a limit of {limit}"
        );
        assert!(max >= 1);
    }
}

#[test]
fn spawn_waits_for_a_slot() {
    group::scope(&Context::background(), |g| {
        g.set_limit(1);
        let (release, released) = mpsc::channel::<()>();
        let first_ended = Arc::new(AtomicBool::new(false));
        let flag = first_ended.clone();
        g.spawn(move |_ctx| {
            released.recv().unwrap();
            flag.store(true, Ordering::SeqCst);
            ok()
        });
        let releaser = thread::spawn(move || {
            thread::sleep(Duration::from_millis(30));
            release.send(()).unwrap();
        });
        let started = Instant::now();
        g.spawn(|_ctx| ok()); // blocks until the first task ended
        assert!(first_ended.load(Ordering::SeqCst));
        assert!(started.elapsed() >= Duration::from_millis(20));
        releaser.join().unwrap();
    })
    .unwrap();
}

#[test]
fn raising_the_limit_unblocks_a_waiting_spawn() {
    group::scope(&Context::background(), |g| {
        g.set_limit(0);
        let raiser = g.clone();
        let waited = thread::scope(|s| {
            s.spawn(move || {
                thread::sleep(Duration::from_millis(20));
                raiser.set_limit(1);
            });
            let started = Instant::now();
            g.spawn(|_ctx| ok());
            started.elapsed()
        });
        assert!(waited >= Duration::from_millis(10));
    })
    .unwrap();
}

// --------------------------------------------------------------- shutdown

#[test]
fn shutdown_reports_stragglers_and_the_scope_joins_them() {
    let live = Live::default();
    let (release, released) = mpsc::channel::<()>();
    let result = group::scope(&Context::background(), |g| {
        let mut polite = Vec::new();
        for _ in 0..3 {
            let live = live.clone();
            polite.push(g.spawn(move |ctx| {
                let _live = live.enter();
                ctx.wait();
                assert!(ctx
                    .cause()
                    .unwrap()
                    .downcast_ref::<GroupShutdown>()
                    .is_some());
                ok()
            }));
        }
        let live_stubborn = live.clone();
        let stubborn = g.spawn(move |_ctx| {
            let _live = live_stubborn.enter();
            released.recv().unwrap(); // ignores its context
            ok()
        });
        let deadline = Instant::now() + QUIESCENT;
        while live.count() < 4 && Instant::now() < deadline {
            thread::yield_now();
        }
        let started = Instant::now();
        let report = g.shutdown(Duration::from_millis(50));
        assert!(started.elapsed() >= Duration::from_millis(40));
        assert_eq!(report.stragglers, [stubborn]);
        assert_eq!(report.first_error, None);
        assert!(!polite.contains(&stubborn));
        assert_eq!(live.count(), 1, "only the straggler still runs");
        release.send(()).unwrap();
    });
    result.unwrap();
    assert_eq!(live.count(), 0, "the scope joined the straggler");
}

#[test]
fn shutdown_of_a_quick_group_returns_before_the_grace_and_keeps_the_error() {
    group::scope(&Context::background(), |g| {
        let sent = Cause::msg("bad row");
        let want = sent.clone();
        g.spawn(move |_ctx| Err(sent));
        g.spawn(|ctx| {
            ctx.wait();
            ok()
        });
        assert_eq!(g.context().wait_timeout(QUIESCENT), Some(Error::Canceled));
        let started = Instant::now();
        let report = g.shutdown(QUIESCENT);
        assert!(started.elapsed() < QUIESCENT);
        assert!(report.stragglers.is_empty());
        assert_eq!(report.first_error, Some(want.clone()));
        // The error came first: the shutdown did not replace the cause.
        assert_eq!(g.context().cause(), Some(want));
    })
    .unwrap_err();
}

// ---------------------------------------------------------------- panics

#[test]
fn panic_cancels_siblings_and_is_resumed_by_wait() {
    let (causes_tx, causes) = mpsc::channel();
    let result = group::scope(&Context::background(), |g| {
        for _ in 0..3 {
            let causes_tx = causes_tx.clone();
            g.spawn(move |ctx| {
                ctx.wait();
                causes_tx.send(ctx.cause().unwrap()).unwrap();
                ok()
            });
        }
        let boom = g.spawn(|_ctx| -> Result<(), Cause> { panic!("boom") });
        let resumed = catch_unwind(AssertUnwindSafe(|| g.wait())).unwrap_err();
        assert_eq!(*resumed.downcast::<&str>().unwrap(), "boom");
        // Resumed once: a second wait has nothing left to resume.
        assert_eq!(g.wait(), Ok(()));
        boom
    });
    let boom = result.unwrap();
    drop(causes_tx);
    for cause in causes.iter() {
        let panicked = cause.downcast_ref::<TaskPanicked>().unwrap();
        assert_eq!(panicked.task(), Some(boom));
        assert_eq!(panicked.message(), Some("boom"));
    }
}

#[test]
fn panic_is_resumed_by_the_scope_end_after_every_task_ended() {
    let live = Live::default();
    let resumed = catch_unwind(AssertUnwindSafe(|| {
        group::scope(&Context::background(), |g| {
            for _ in 0..3 {
                let live = live.clone();
                g.spawn(move |ctx| {
                    let _live = live.enter();
                    ctx.wait();
                    thread::sleep(Duration::from_millis(10)); // cleanup
                    ok()
                });
            }
            g.spawn(|_ctx| -> Result<(), Cause> {
                std::panic::panic_any(String::from("owned payload"))
            });
        })
    }));
    assert_eq!(live.count(), 0);
    let payload = resumed.unwrap_err();
    assert_eq!(*payload.downcast::<String>().unwrap(), "owned payload");
}

#[test]
fn a_panic_is_resumed_even_after_an_earlier_error() {
    let resumed = catch_unwind(AssertUnwindSafe(|| {
        group::scope(&Context::background(), |g| {
            g.spawn(|_ctx| Err(Cause::msg("first")));
            g.wait().unwrap_err();
            g.spawn(|_ctx| -> Result<(), Cause> { panic!("second") });
        })
    }));
    assert_eq!(*resumed.unwrap_err().downcast::<&str>().unwrap(), "second");
}

#[test]
fn body_panic_cancels_the_tasks_and_joins_them() {
    let live = Live::default();
    let (causes_tx, causes) = mpsc::channel();
    let resumed = catch_unwind(AssertUnwindSafe(|| {
        group::scope(&Context::background(), |g| {
            for _ in 0..3 {
                let live = live.clone();
                let causes_tx = causes_tx.clone();
                g.spawn(move |ctx| {
                    let _live = live.enter();
                    ctx.wait(); // would block forever without the cancel
                    causes_tx.send(ctx.cause().unwrap()).unwrap();
                    ok()
                });
            }
            panic!("body failed");
        })
    }));
    assert_eq!(
        *resumed.unwrap_err().downcast::<&str>().unwrap(),
        "body failed"
    );
    assert_eq!(live.count(), 0);
    drop(causes_tx);
    for cause in causes.iter() {
        let panicked = cause.downcast_ref::<TaskPanicked>().unwrap();
        assert_eq!(panicked.task(), None);
    }
}

#[test]
fn a_panicking_after_func_of_the_group_is_held_and_resumed() {
    let resumed = catch_unwind(AssertUnwindSafe(|| {
        group::scope(&Context::background(), |g| {
            drop(g.context().after_func(|| panic!("callback")));
            g.spawn(|_ctx| Err(Cause::msg("trigger"))); // its cancel runs the callback
            let err = catch_unwind(AssertUnwindSafe(|| g.wait()));
            assert_eq!(*err.unwrap_err().downcast::<&str>().unwrap(), "callback");
        })
    }));
    // The panic was resumed by `wait` (and caught there): the scope returns
    // the task's error.
    assert_eq!(resumed.unwrap().unwrap_err().to_string(), "trigger");
}

// ------------------------------------------------------------ no leaks

#[test]
fn the_scope_end_joins_every_thread() {
    let live = Live::default();
    let result = group::scope(&Context::background(), |g| {
        for i in 0..32u64 {
            let live = live.clone();
            g.spawn(move |ctx| {
                let _live = live.enter();
                if i == 7 {
                    return Err(Cause::msg("task 7 failed"));
                }
                ctx.wait_timeout(QUIESCENT);
                ok()
            });
        }
    });
    assert_eq!(result.unwrap_err().to_string(), "task 7 failed");
    assert_eq!(live.count(), 0);
}

#[test]
fn many_tasks_first_error_then_wait() {
    const TASKS: usize = 256;
    let live = Live::default();
    let observed = AtomicUsize::new(0);
    let result = group::scope(&Context::background(), |g| {
        for i in 0..TASKS {
            let live = live.clone();
            let observed = &observed;
            g.spawn(move |ctx| {
                let _live = live.enter();
                if i == TASKS / 2 {
                    return Err(Cause::msg("the middle one failed"));
                }
                if ctx.wait_timeout(QUIESCENT).is_some() {
                    observed.fetch_add(1, Ordering::SeqCst);
                }
                ok()
            });
        }
        let err = g.wait().unwrap_err();
        assert_eq!(live.count(), 0);
        assert_eq!(err.to_string(), "the middle one failed");
    });
    assert_eq!(result.unwrap_err().to_string(), "the middle one failed");
    assert_eq!(observed.load(Ordering::SeqCst), TASKS - 1);
}

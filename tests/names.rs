//! Named contexts: the name in `Display`, `Debug`, origins and `name()`,
//! and the side table that holds names giving them back.

mod common;

use std::thread;
use std::time::Duration;

use common::alloc::{live, settled};
use ctxtree::{Context, Error};

#[global_allocator]
static GLOBAL: common::alloc::Counting = common::alloc::Counting;

/// The tests of this file run one at a time: the memory test reads the
/// process-wide count (a failing test's backtrace alone holds megabytes).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn names_show_in_display_debug_and_origin() {
    let _serial = serial();
    let (server, shutdown) = Context::background().named("server").with_cancel();
    let (request, _r) = server
        .named(format!("GET /items/{}", 3))
        .with_timeout(Duration::from_secs(3600));
    let (step, _s) = request.with_cancel();
    let shown = step.to_string();
    assert!(
        shown.starts_with(
            "context.Background.WithCancel(\"server\").WithDeadline(\"GET /items/3\", ["
        ),
        "{shown}"
    );
    assert!(shown.ends_with("]).WithCancel"), "{shown}");
    shutdown.cancel();
    let origin = step.origin().unwrap();
    assert_eq!(
        origin.to_string(),
        "context.Background.WithCancel(\"server\") was canceled by its handle"
    );
    assert!(format!("{step:?}").contains("WithCancel(\\\"server\\\") was canceled"));
    assert_eq!(server.name().as_deref(), Some("server"));
    assert_eq!(step.name(), None);
    assert_eq!(Context::background().name(), None);
}

#[test]
fn names_on_every_kind_of_derivation() {
    let _serial = serial();
    // A later deadline than the parent's: a plain child, still named.
    let (parent, _p) = Context::background().with_timeout(Duration::from_secs(1));
    let (late, _l) = parent.named("late").with_timeout(Duration::from_secs(60));
    assert_eq!(late.deadline(), parent.deadline());
    assert_eq!(late.name().as_deref(), Some("late"));
    // Born expired, and born under a canceled parent.
    let (expired, _e) = parent.named("expired").with_timeout(Duration::ZERO);
    assert_eq!(expired.err(), Some(Error::DeadlineExceeded));
    assert_eq!(expired.name().as_deref(), Some("expired"));
    let (gone, cancel) = Context::todo().with_cancel();
    cancel.cancel();
    let (born, _b) = gone.named("born canceled").with_cancel();
    assert!(born.is_done());
    assert_eq!(born.name().as_deref(), Some("born canceled"));
    assert_eq!(
        born.to_string(),
        "context.TODO.WithCancel.WithCancel(\"born canceled\")"
    );
}

/// Named contexts of many threads, derived and dropped: every entry goes
/// with its node, so the table does not grow (and a freed node's block,
/// reused unnamed, shows no stale name).
#[test]
fn names_are_given_back_with_their_contexts() {
    let _serial = serial();
    let (root, _r) = Context::background().with_cancel();
    let churn = |root: &Context| {
        for i in 0..20_000 {
            let (ctx, handle) = root.named(format!("task {i}")).with_cancel();
            assert_eq!(ctx.name().unwrap(), format!("task {i}"));
            drop((ctx, handle));
            let (plain, _h) = root.with_cancel();
            assert_eq!(plain.name(), None, "a reused block kept a name");
        }
    };
    churn(&root); // warm the table's shards and the node caches
    let before = live();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let root = root.clone();
            thread::spawn(move || churn(&root))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Children the threads' drops left linked are swept by the drops, the
    // long sweeps' rests by the collector thread (L10): wait for it.
    let grown = settled(before, 512 * 1024 - 1, std::time::Duration::from_secs(10));
    assert!(
        grown < 512 * 1024,
        "{grown} bytes kept after 80,000 named contexts"
    );
}

/// A burst of named contexts alive at once, then all dropped: the names
/// table gives back the room it grew to, not only its entries (a quiet
/// server after a spike keeps no table sized for the spike).
#[test]
fn a_burst_of_named_contexts_gives_its_memory_back() {
    let _serial = serial();
    let (root, _r) = Context::background().with_cancel();
    let n = if cfg!(debug_assertions) {
        20_000
    } else {
        100_000
    };
    let before = live();
    let burst: Vec<_> = (0..n)
        .map(|i| root.named(format!("request {i}")).with_cancel())
        .collect();
    let peak = live() - before;
    drop(burst);
    let left = settled(before, 256 * 1024 - 1, std::time::Duration::from_secs(10));
    assert!(
        left < 256 * 1024,
        "{left} bytes of {peak} kept after a burst of {n} named contexts was dropped"
    );
}

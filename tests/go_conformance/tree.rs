//! Background, cancel and deadline propagation, values: `TestBackground` to `TestValues`.

use super::*;

// ------------------------------------------------ TestBackground, TestTODO

// Ports Go's TestBackground (x_test.go).
#[test]
fn go_test_background() {
    let c = Context::background();
    assert_blocks(&c, "c");
    assert_eq!(c.to_string(), "context.Background");
    assert_eq!(c.deadline(), None);
    assert_eq!(c.cause(), None);
}

// Ports Go's TestTODO (x_test.go).
#[test]
fn go_test_todo() {
    let c = Context::todo();
    assert_blocks(&c, "c");
    assert_eq!(c.to_string(), "context.TODO");
    assert_eq!(c.deadline(), None);
    assert_eq!(c.cause(), None);
}

// ----------------------------------------------------------- TestWithCancel

// Ports Go's TestWithCancel (x_test.go).
#[test]
fn go_test_with_cancel() {
    let (c1, cancel) = Context::background().with_cancel();
    assert_eq!(c1.to_string(), "context.Background.WithCancel");

    let o = c1.clone(); // Go: otherContext{c1}
    let (c2, _h2) = o.with_cancel();
    let contexts = [("c1", &c1), ("o", &o), ("c2", &c2)];
    for (name, c) in contexts {
        assert_blocks(c, name);
    }

    cancel.cancel(); // Should propagate synchronously.
    for (name, c) in contexts {
        assert_finished(c, name, Error::Canceled);
    }
}

// ---------------------------------- TestParentFinishesChild (context_test.go)

#[derive(Debug, PartialEq)]
struct ParentKey(&'static str); // Go: WithValue(parent, "key", "value")

// Ports Go's TestParentFinishesChild (context_test.go, XTestParentFinishesChild).
// The linkage checks (pc.children has exactly the three cancelable children;
// parentCancelCtx) read Go's unexported fields and have no public
// counterpart; the derivation path printed by Display stands in for them.
#[test]
fn go_test_parent_finishes_child() {
    // Context tree:
    // parent -> cancelChild
    // parent -> valueChild -> timerChild
    // parent -> afterChild
    let (parent, cancel) = Context::background().with_cancel();
    let (cancel_child, _stop1) = parent.with_cancel();
    let value_child = parent.with_value(ParentKey("value"));
    let (timer_child, _stop2) = value_child.with_timeout(VERY_LONG);
    let after_ran = Arc::new(AtomicBool::new(false));
    let flag = after_ran.clone();
    let after_stop = parent.after_func(move || flag.store(true, Ordering::SeqCst));

    assert_blocks(&parent, "parent");
    assert_blocks(&cancel_child, "cancelChild");
    assert_blocks(&timer_child, "timerChild");
    assert_blocks(&value_child, "valueChild");
    assert!(!after_ran.load(Ordering::SeqCst));

    // Linkage, as far as it is observable: the printed derivation paths.
    assert_eq!(
        cancel_child.to_string(),
        "context.Background.WithCancel.WithCancel"
    );
    let timer_path = timer_child.to_string();
    assert!(
        timer_path.starts_with(&format!(
            "context.Background.WithCancel.WithValue({}).WithDeadline(",
            std::any::type_name::<ParentKey>()
        )),
        "timerChild path = {timer_path}"
    );

    cancel.cancel();

    // parent and children should all be finished.
    assert_finished(&parent, "parent", Error::Canceled);
    assert_finished(&cancel_child, "cancelChild", Error::Canceled);
    assert_finished(&value_child, "valueChild", Error::Canceled);
    assert_finished(&timer_child, "timerChild", Error::Canceled);
    assert!(after_ran.load(Ordering::SeqCst), "afterChild did not run");
    assert!(!after_stop.stop(), "afterStop() after the function ran");

    // WithCancel should return a canceled context on a canceled parent.
    let precanceled_child = parent.with_value(ParentKey("value"));
    assert_finished(&precanceled_child, "precanceledChild", Error::Canceled);
}

// ---------------------------------- TestChildFinishesFirst (context_test.go)

// Ports Go's TestChildFinishesFirst (context_test.go, XTestChildFinishesFirst).
// The linkage checks on pc.children are unobservable (see
// go_test_parent_finishes_child); the behaviour is kept.
#[test]
fn go_test_child_finishes_first() {
    let (cancelable, _stop) = Context::background().with_cancel();
    for parent in [Context::background(), cancelable] {
        let (child, cancel) = parent.with_cancel();
        assert_blocks(&parent, "parent");
        assert_blocks(&child, "child");

        cancel.cancel();

        // child should be finished.
        assert_finished(&child, "child", Error::Canceled);
        // parent should not be finished.
        assert_blocks(&parent, "parent");
    }
}

// -------------------------------------------------------------- TestDeadline

// Ports Go's TestDeadline (x_test.go).
#[test]
fn go_test_deadline() {
    let bg = Context::background();

    let (c, _h) = bg.with_deadline(Instant::now() + SHORT);
    let s = c.to_string();
    assert!(
        s.starts_with("context.Background.WithDeadline("),
        "c.String() = {s:?} want prefix \"context.Background.WithDeadline(\""
    );
    test_deadline(&c, "WithDeadline");

    let (c, _h) = bg.with_deadline(Instant::now() + SHORT);
    let o = c.clone(); // Go: otherContext{c}
    test_deadline(&o, "WithDeadline+otherContext");

    let (c, _h1) = bg.with_deadline(Instant::now() + SHORT);
    let o = c.clone();
    let (c, _h2) = o.with_deadline(Instant::now() + VERY_LONG);
    // Go's rule: the parent's earlier deadline is the child's.
    assert_eq!(c.deadline(), o.deadline());
    test_deadline(&c, "WithDeadline+otherContext+WithDeadline");

    let past = Instant::now()
        .checked_sub(SHORT)
        .unwrap_or_else(Instant::now);
    let (c, _h) = bg.with_deadline(past);
    test_deadline(&c, "WithDeadline+inthepast");

    let (c, _h) = bg.with_deadline(Instant::now());
    test_deadline(&c, "WithDeadline+now");
}

// --------------------------------------------------------------- TestTimeout

// Ports Go's TestTimeout (x_test.go).
#[test]
fn go_test_timeout() {
    let bg = Context::background();

    let (c, _h) = bg.with_timeout(SHORT);
    let s = c.to_string();
    assert!(
        s.starts_with("context.Background.WithDeadline("),
        "c.String() = {s:?} want prefix \"context.Background.WithDeadline(\""
    );
    test_deadline(&c, "WithTimeout");

    let (c, _h) = bg.with_timeout(SHORT);
    let o = c.clone(); // Go: otherContext{c}
    test_deadline(&o, "WithTimeout+otherContext");

    let (c, _h1) = bg.with_timeout(SHORT);
    let o = c.clone();
    let (c, _h2) = o.with_timeout(VERY_LONG);
    test_deadline(&c, "WithTimeout+otherContext+WithTimeout");
}

// ------------------------------------------------------- TestCanceledTimeout

// Ports Go's TestCanceledTimeout (x_test.go).
#[test]
fn go_test_canceled_timeout() {
    let (c, _h) = Context::background().with_timeout(Duration::from_secs(1));
    let o = c.clone(); // Go: otherContext{c}
    let (c, cancel) = o.with_timeout(VERY_LONG);
    cancel.cancel(); // Should propagate synchronously.
    assert_finished(&c, "c", Error::Canceled);
}

// ---------------------------------------------------------------- TestValues

// Go's keys: k1 = key1(1), k2 = key2(1) (same int, different type), k3 =
// key2(3) (same type as k2, different int). Here the key is the type, so
// each Go key becomes its own newtype; `None` is Go's nil value.
#[derive(Debug)]
struct K1(Option<&'static str>);
#[derive(Debug)]
struct K2(Option<&'static str>);
#[derive(Debug)]
struct K3(Option<&'static str>);

/// Go's `check` closure: `""` means "no string value for this key".
fn check_values(c: &Context, nm: &str, v1: &str, v2: &str, v3: &str) {
    let got1 = c.value::<K1>().and_then(|k| k.0).unwrap_or("");
    let got2 = c.value::<K2>().and_then(|k| k.0).unwrap_or("");
    let got3 = c.value::<K3>().and_then(|k| k.0).unwrap_or("");
    assert_eq!(got1, v1, "{nm}.Value(k1)");
    assert_eq!(got2, v2, "{nm}.Value(k2)");
    assert_eq!(got3, v3, "{nm}.Value(k3)");
}

// Ports Go's TestValues (x_test.go). Go prints the key and the value
// (`WithValue(context_test.key1, c1k1)`); ctxtree prints only the key type
// (values need not implement Display) — see docs/go-mapping.md.
#[test]
fn go_test_values() {
    let k1 = std::any::type_name::<K1>();
    let k2 = std::any::type_name::<K2>();
    let k3 = std::any::type_name::<K3>();

    let c0 = Context::background();
    check_values(&c0, "c0", "", "", "");

    let c1 = Context::background().with_value(K1(Some("c1k1")));
    check_values(&c1, "c1", "c1k1", "", "");
    assert_eq!(
        c1.to_string(),
        format!("context.Background.WithValue({k1})")
    );

    let c2 = c1.with_value(K2(Some("c2k2")));
    check_values(&c2, "c2", "c1k1", "c2k2", "");
    assert_eq!(
        c2.to_string(),
        format!("context.Background.WithValue({k1}).WithValue({k2})")
    );

    let c3 = c2.with_value(K3(Some("c3k3")));
    check_values(&c3, "c3", "c1k1", "c2k2", "c3k3");

    let c4 = c3.with_value(K1(None));
    check_values(&c4, "c4", "", "c2k2", "c3k3");
    assert_eq!(
        c4.to_string(),
        format!(
            "context.Background.WithValue({k1}).WithValue({k2}).WithValue({k3}).WithValue({k1})"
        )
    );

    let o0 = Context::background(); // Go: otherContext{Background()}
    check_values(&o0, "o0", "", "", "");

    let o1 = Context::background().with_value(K1(Some("c1k1"))); // otherContext{...}
    check_values(&o1, "o1", "c1k1", "", "");

    let o2 = o1.with_value(K2(Some("o2k2")));
    check_values(&o2, "o2", "c1k1", "o2k2", "");

    let o3 = c4.clone(); // Go: otherContext{c4}
    check_values(&o3, "o3", "", "c2k2", "c3k3");

    let o4 = o3.with_value(K3(None));
    check_values(&o4, "o4", "", "c2k2", "");
}

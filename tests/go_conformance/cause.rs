//! Cancel causes, `WithoutCancel` and custom contexts: `TestCause` to `TestCustomContextCause`.

use super::*;

// ------------------------------------------------------------------ TestCause

/// The variables of Go's TestCause.
struct CauseVars {
    forever: Duration,
    parent_cause: Cause,
    child_cause: Cause,
    too_slow: Cause,
    finished_early: Cause,
}

fn cause_vars() -> CauseVars {
    CauseVars {
        forever: Duration::from_secs(1_000_000),
        parent_cause: errorf("parentCause"),
        child_cause: errorf("childCause"),
        too_slow: errorf("tooSlow"),
        finished_early: errorf("finishedEarly"),
    }
}

/// One row's check: Go compares `ctx.Err()` and `Cause(ctx)` with `!=`,
/// which for errors is identity; `Cause`'s `==` is identity too.
fn check_cause(name: &str, ctx: &Context, err: Option<Error>, cause: Option<Cause>) {
    assert_eq!(ctx.err(), err, "{name}: ctx.Err()");
    assert_eq!(ctx.cause(), cause, "{name}: Cause(ctx)");
    assert_eq!(done_now(ctx), err, "{name}: <-ctx.Done()");
}

fn deadline_exceeded() -> Option<Cause> {
    Some(Cause::from(Error::DeadlineExceeded))
}

// Ports Go's TestCause row "Background" (x_test.go).
#[test]
fn go_test_cause_background() {
    check_cause("Background", &Context::background(), None, None);
}

// Ports Go's TestCause row "TODO" (x_test.go).
#[test]
fn go_test_cause_todo() {
    check_cause("TODO", &Context::todo(), None, None);
}

// Ports Go's TestCause row "WithCancel" (x_test.go).
#[test]
fn go_test_cause_with_cancel() {
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    check_cause("WithCancel", &ctx, Some(Error::Canceled), canceled());
}

// Ports Go's TestCause row "WithCancelCause" (x_test.go).
#[test]
fn go_test_cause_with_cancel_cause() {
    let v = cause_vars();
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel_with_cause(v.parent_cause.clone());
    check_cause(
        "WithCancelCause",
        &ctx,
        Some(Error::Canceled),
        Some(v.parent_cause),
    );
}

// Ports Go's TestCause row "WithCancelCause nil" (x_test.go): Go's
// `cancel(nil)` records Canceled as the cause; here that is `cancel()` (there
// is no nil cause), and `cancel_with_cause(Error::Canceled)` is the same.
#[test]
fn go_test_cause_with_cancel_cause_nil() {
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    check_cause(
        "WithCancelCause nil",
        &ctx,
        Some(Error::Canceled),
        canceled(),
    );

    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel_with_cause(Error::Canceled);
    check_cause(
        "WithCancelCause(Canceled)",
        &ctx,
        Some(Error::Canceled),
        canceled(),
    );
}

// Ports Go's TestCause row "WithCancelCause: parent cause before child" (x_test.go).
#[test]
fn go_test_cause_parent_cause_before_child() {
    let v = cause_vars();
    let (ctx, cancel_parent) = Context::background().with_cancel();
    let (ctx, cancel_child) = ctx.with_cancel();
    cancel_parent.cancel_with_cause(v.parent_cause.clone());
    cancel_child.cancel_with_cause(v.child_cause.clone());
    check_cause(
        "WithCancelCause: parent cause before child",
        &ctx,
        Some(Error::Canceled),
        Some(v.parent_cause),
    );
}

// Ports Go's TestCause row "WithCancelCause: parent cause after child" (x_test.go).
#[test]
fn go_test_cause_parent_cause_after_child() {
    let v = cause_vars();
    let (ctx, cancel_parent) = Context::background().with_cancel();
    let (ctx, cancel_child) = ctx.with_cancel();
    cancel_child.cancel_with_cause(v.child_cause.clone());
    cancel_parent.cancel_with_cause(v.parent_cause.clone());
    check_cause(
        "WithCancelCause: parent cause after child",
        &ctx,
        Some(Error::Canceled),
        Some(v.child_cause),
    );
}

// Ports Go's TestCause row "WithCancelCause: parent cause before nil" (x_test.go).
#[test]
fn go_test_cause_parent_cause_before_nil() {
    let v = cause_vars();
    let (ctx, cancel_parent) = Context::background().with_cancel();
    let (ctx, cancel_child) = ctx.with_cancel();
    cancel_parent.cancel_with_cause(v.parent_cause.clone());
    cancel_child.cancel();
    check_cause(
        "WithCancelCause: parent cause before nil",
        &ctx,
        Some(Error::Canceled),
        Some(v.parent_cause),
    );
}

// Ports Go's TestCause row "WithCancelCause: parent cause after nil" (x_test.go).
#[test]
fn go_test_cause_parent_cause_after_nil() {
    let v = cause_vars();
    let (ctx, cancel_parent) = Context::background().with_cancel();
    let (ctx, cancel_child) = ctx.with_cancel();
    cancel_child.cancel();
    cancel_parent.cancel_with_cause(v.parent_cause.clone());
    check_cause(
        "WithCancelCause: parent cause after nil",
        &ctx,
        Some(Error::Canceled),
        canceled(),
    );
}

// Ports Go's TestCause row "WithCancelCause: child cause after nil" (x_test.go).
#[test]
fn go_test_cause_child_cause_after_nil() {
    let v = cause_vars();
    let (ctx, cancel_parent) = Context::background().with_cancel();
    let (ctx, cancel_child) = ctx.with_cancel();
    cancel_parent.cancel();
    cancel_child.cancel_with_cause(v.child_cause.clone());
    check_cause(
        "WithCancelCause: child cause after nil",
        &ctx,
        Some(Error::Canceled),
        canceled(),
    );
}

// Ports Go's TestCause row "WithCancelCause: child cause before nil" (x_test.go).
#[test]
fn go_test_cause_child_cause_before_nil() {
    let v = cause_vars();
    let (ctx, cancel_parent) = Context::background().with_cancel();
    let (ctx, cancel_child) = ctx.with_cancel();
    cancel_child.cancel_with_cause(v.child_cause.clone());
    cancel_parent.cancel();
    check_cause(
        "WithCancelCause: child cause before nil",
        &ctx,
        Some(Error::Canceled),
        Some(v.child_cause),
    );
}

// Ports Go's TestCause row "WithTimeout" (x_test.go).
#[test]
fn go_test_cause_with_timeout() {
    let (ctx, cancel) = Context::background().with_timeout(Duration::ZERO);
    cancel.cancel();
    check_cause(
        "WithTimeout",
        &ctx,
        Some(Error::DeadlineExceeded),
        deadline_exceeded(),
    );
}

// Ports Go's TestCause row "WithTimeout canceled" (x_test.go).
#[test]
fn go_test_cause_with_timeout_canceled() {
    let v = cause_vars();
    let (ctx, cancel) = Context::background().with_timeout(v.forever);
    cancel.cancel();
    check_cause(
        "WithTimeout canceled",
        &ctx,
        Some(Error::Canceled),
        canceled(),
    );
}

// Ports Go's TestCause row "WithTimeoutCause" (x_test.go).
#[test]
fn go_test_cause_with_timeout_cause() {
    let v = cause_vars();
    let (ctx, cancel) =
        Context::background().with_timeout_cause(Duration::ZERO, v.too_slow.clone());
    cancel.cancel();
    check_cause(
        "WithTimeoutCause",
        &ctx,
        Some(Error::DeadlineExceeded),
        Some(v.too_slow),
    );
}

// Ports Go's TestCause row "WithTimeoutCause canceled" (x_test.go).
#[test]
fn go_test_cause_with_timeout_cause_canceled() {
    let v = cause_vars();
    let (ctx, cancel) = Context::background().with_timeout_cause(v.forever, v.too_slow.clone());
    cancel.cancel();
    check_cause(
        "WithTimeoutCause canceled",
        &ctx,
        Some(Error::Canceled),
        canceled(),
    );
}

// Ports Go's TestCause row "WithTimeoutCause stacked" (x_test.go).
#[test]
fn go_test_cause_with_timeout_cause_stacked() {
    let v = cause_vars();
    let (ctx, cancel) = Context::background().with_cancel();
    let (ctx, _h) = ctx.with_timeout_cause(Duration::ZERO, v.too_slow.clone());
    cancel.cancel_with_cause(v.finished_early.clone());
    check_cause(
        "WithTimeoutCause stacked",
        &ctx,
        Some(Error::DeadlineExceeded),
        Some(v.too_slow),
    );
}

// Ports Go's TestCause row "WithTimeoutCause stacked canceled" (x_test.go).
#[test]
fn go_test_cause_with_timeout_cause_stacked_canceled() {
    let v = cause_vars();
    let (ctx, cancel) = Context::background().with_cancel();
    let (ctx, _h) = ctx.with_timeout_cause(v.forever, v.too_slow.clone());
    cancel.cancel_with_cause(v.finished_early.clone());
    check_cause(
        "WithTimeoutCause stacked canceled",
        &ctx,
        Some(Error::Canceled),
        Some(v.finished_early),
    );
}

// Ports Go's TestCause row "WithoutCancel" (x_test.go).
#[test]
fn go_test_cause_without_cancel() {
    let ctx = Context::background().without_cancel();
    check_cause("WithoutCancel", &ctx, None, None);
}

// Ports Go's TestCause row "WithoutCancel canceled" (x_test.go).
#[test]
fn go_test_cause_without_cancel_canceled() {
    let v = cause_vars();
    let (ctx, cancel) = Context::background().with_cancel();
    let ctx = ctx.without_cancel();
    cancel.cancel_with_cause(v.finished_early.clone());
    check_cause("WithoutCancel canceled", &ctx, None, None);
}

// Ports Go's TestCause row "WithoutCancel timeout" (x_test.go).
#[test]
fn go_test_cause_without_cancel_timeout() {
    let v = cause_vars();
    let (ctx, cancel) =
        Context::background().with_timeout_cause(Duration::ZERO, v.too_slow.clone());
    let ctx = ctx.without_cancel();
    cancel.cancel();
    check_cause("WithoutCancel timeout", &ctx, None, None);
}

/// Marks the value layer that stands in for Go's `customContext` wrapper.
#[derive(Debug)]
struct CustomContext;

/// Go's `newCustomContext(parent)` in TestCause (x_test.go), as close as
/// ctxtree allows. Go's `customContext` is a foreign Context: it delegates
/// `Value` and `Deadline` to its parent (so `Cause` finds the parent's
/// cancelCtx through it), follows the parent's cancel through `AfterFunc`,
/// and has its own done channel, err and CancelFunc (`cancel2`). ctxtree has
/// no Context trait, so the wrapper is its closest transparent layer, a
/// `with_value` layer (value layers are transparent to cancellation), over a
/// cancel child whose handle is `cancel2`. A bare value layer would have no
/// `cancel2`: the "not canceled" row would then report no err instead of
/// Go's Canceled.
fn new_custom_context(parent: &Context) -> (Context, CancelHandle) {
    let (ctx, cancel2) = parent.with_cancel();
    (ctx.with_value(CustomContext), cancel2)
}

// Ports Go's TestCause row "parent of custom context not canceled" (x_test.go).
// The custom context is a with_value layer over its own cancel child (see
// new_custom_context).
#[test]
fn go_test_cause_parent_of_custom_context_not_canceled() {
    let (ctx, _cancel1) = Context::background().with_cancel(); // Go: ctx, _ := WithCancelCause(...)
    let (ctx, cancel2) = new_custom_context(&ctx);
    cancel2.cancel();
    check_cause(
        "parent of custom context not canceled",
        &ctx,
        Some(Error::Canceled),
        canceled(),
    );
}

// Ports Go's TestCause row "parent of custom context is canceled before"
// (x_test.go). The custom context is a with_value layer over its own cancel
// child (see new_custom_context).
#[test]
fn go_test_cause_parent_of_custom_context_is_canceled_before() {
    let v = cause_vars();
    let (ctx, cancel1) = Context::background().with_cancel();
    let (ctx, cancel2) = new_custom_context(&ctx);
    cancel1.cancel_with_cause(v.parent_cause.clone());
    cancel2.cancel();
    check_cause(
        "parent of custom context is canceled before",
        &ctx,
        Some(Error::Canceled),
        Some(v.parent_cause),
    );
}

// Not a Go test: ctxtree's behaviour for the sequence of Go's TestCause row
// "parent of custom context is canceled after" (Go's expectation cannot hold):
// the child canceled first keeps its own cause.
#[test]
fn ctxtree_cause_custom_context_canceled_before_its_parent() {
    let v = cause_vars();
    let (ctx, cancel1) = Context::background().with_cancel();
    let (ctx, cancel2) = new_custom_context(&ctx);
    cancel2.cancel();
    cancel1.cancel_with_cause(v.parent_cause.clone());
    check_cause(
        "custom context canceled before its parent",
        &ctx,
        Some(Error::Canceled),
        canceled(),
    );
    assert!(ctx.value::<CustomContext>().is_some());
}

// -------------------------------------------------------------- TestCauseRace

// Ports Go's TestCauseRace (x_test.go), repeated to give the race a chance.
#[test]
fn go_test_cause_race() {
    for _ in 0..200 {
        let cause = errorf("TestCauseRace");
        let (ctx, cancel) = Context::background().with_cancel();
        let sent = cause.clone();
        let t = thread::spawn(move || cancel.cancel_with_cause(sent));
        let give_up = Instant::now() + QUIESCENT;
        loop {
            // Poll the cause, rather than waiting for done, to test that
            // access to the underlying cause is synchronized properly.
            if let Some(got) = ctx.cause() {
                assert_eq!(got, cause, "Cause returned {got}, want {cause}");
                break;
            }
            assert!(Instant::now() < give_up, "cause never appeared");
            thread::yield_now();
        }
        t.join().unwrap();
    }
}

// ---------------------------------------------------------- TestWithoutCancel

#[derive(Debug, PartialEq)]
struct WithoutCancelKey(&'static str); // Go: WithValue(Background(), "key", "value")

// Ports Go's TestWithoutCancel (x_test.go). Go's `Done() == nil` is a done
// future that never resolves.
#[test]
fn go_test_without_cancel() {
    let ctx = Context::background().with_value(WithoutCancelKey("value"));
    let ctx = ctx.without_cancel();
    assert_eq!(ctx.deadline(), None, "ctx.Deadline()");
    assert_eq!(done_now(&ctx), None, "ctx.Done()");
    assert_eq!(ctx.wait_timeout(SHORT), None, "ctx.Done()");
    assert_eq!(ctx.err(), None, "ctx.Err()");
    assert_eq!(
        ctx.value::<WithoutCancelKey>(),
        Some(&WithoutCancelKey("value"))
    );
}

// ------------------------- TestCustomContextPropagation, TestCustomContextCause

#[derive(Debug)]
struct CustomDone; // stands in for Go's customDoneContext wrapper

// Ports Go's TestCustomContextPropagation (x_test.go) where it applies. Go
// wraps ctx1 in a foreign Context with its own Done channel; Rust has no
// Context interface to implement, so the wrapper is a value layer (a context
// that delegates cancellation to ctx1). The behaviour kept: a child of the
// wrapper sees ctx1's cancel with ctx1's cause.
#[test]
fn go_test_custom_context_propagation() {
    let cause = errorf("TestCustomContextPropagation");
    let (ctx1, cancel1) = Context::background().with_cancel();
    let ctx2 = ctx1.with_value(CustomDone);
    let (ctx3, _cancel3) = ctx2.with_cancel();

    cancel1.cancel_with_cause(cause.clone());

    assert_eq!(ctx3.wait_timeout(QUIESCENT), Some(Error::Canceled));
    assert_eq!(ctx3.err(), Some(Error::Canceled), "child not canceled");
    assert_eq!(ctx3.cause(), Some(cause), "child has wrong cause");
}

// Ports Go's TestCustomContextCause (x_test.go), adapted. Go's
// customCauseContext is a foreign Context (its own done channel and err, no
// cause); here it is a plain ctxtree context, canceled without a cause. Go's
// first part checks that Cause of a foreign context falls back to its Err
// (Canceled); in ctxtree a cancel without a cause records Canceled as the
// cause, which gives the same outcome.
#[test]
fn go_test_custom_context_cause() {
    // If we cancel a custom context, Err and Cause return Canceled.
    let (ccc, ccc_cancel) = Context::background().with_cancel();
    ccc_cancel.cancel();
    assert_eq!(ccc.err(), Some(Error::Canceled), "ccc.Err()");
    assert_eq!(ccc.cause(), canceled(), "Cause(ccc)");

    // A child canceled with a cause; the parent is not canceled.
    let (ccc, ccc_cancel) = Context::background().with_cancel();
    let (ctx, cause_func) = ccc.with_cancel();
    let cause = errorf("TestCustomContextCause");
    cause_func.cancel_with_cause(cause.clone());
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(ctx.cause(), Some(cause.clone()));
    assert_eq!(ccc.err(), None);
    assert_eq!(ccc.cause(), None);

    // Canceling the parent now keeps the child's cause; the parent is
    // canceled without a cause (Canceled).
    ccc_cancel.cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(ctx.cause(), Some(cause));
    assert_eq!(ccc.err(), Some(Error::Canceled));
    assert_eq!(ccc.cause(), canceled());

    // Canceling the parent cancels the child.
    let (ccc, ccc_cancel) = Context::background().with_cancel();
    let (ctx, _cancel_func) = ccc.with_cancel();
    ccc_cancel.cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(ctx.cause(), canceled());
    assert_eq!(ccc.err(), Some(Error::Canceled));
    assert_eq!(ccc.cause(), canceled());
}

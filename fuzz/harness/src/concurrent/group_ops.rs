//! A racing thread's task groups: `group::scope` on a shared node, whose
//! tasks wait on their contexts and may fail, while the other threads
//! cancel, derive and drop around it (G1–G4, `src/group/`).

use std::time::Duration;

use ctxtree::{group, Cause};

use super::state::Shared;

/// `Op::Group`: a scope on shared node `a` with `1 + b % 3` tasks; task
/// `i` fails (with its own message) if bit `i + 2` of `b` is set, else
/// waits up to 50 µs on its context and succeeds. Checks Go's errgroup
/// rules: the scope returns after every task, with an error exactly when a
/// task failed (one of theirs), and its context is done once it returns;
/// the shared node is never canceled by the group.
pub(super) fn group(sh: &Shared, n: usize, a: u8, b: u8) {
    let a = a as usize % n;
    let parent = &sh.ctxs[a];
    let parent_was_done = parent.is_done();
    let tasks = 1 + b as usize % 3;
    let fails = |i: usize| b & (1 << (i + 2)) != 0;
    let mut group_ctx = None;
    let result = group::scope(parent, |g| {
        group_ctx = Some(g.context().clone());
        for i in 0..tasks {
            let fail = fails(i);
            g.spawn(move |ctx| {
                if fail {
                    return Err(Cause::msg(format!("task {i}")));
                }
                let _ = ctx.wait_timeout(Duration::from_micros(50));
                Ok::<(), Cause>(())
            });
        }
    });
    let group_ctx = group_ctx.expect("the body ran");
    assert!(
        group_ctx.is_done(),
        "a scope's context is live after it returned"
    );
    let failed: Vec<String> = (0..tasks)
        .filter(|&i| fails(i))
        .map(|i| format!("task {i}"))
        .collect();
    match result {
        Ok(()) => assert!(
            failed.is_empty(),
            "a scope hid its tasks' errors {failed:?}"
        ),
        Err(cause) => assert!(
            failed.contains(&cause.to_string()),
            "a scope returned {cause}, not one of its tasks' errors {failed:?}"
        ),
    }
    if !parent_was_done && parent.is_done() {
        // Canceled meanwhile: by another thread, never by the group.
        assert!(
            parent
                .cause()
                .is_some_and(|c| !c.to_string().starts_with("task ")),
            "the group's failure reached the shared node"
        );
    }
}

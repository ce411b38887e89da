//! loom models live in `tests/`; this crate holds only what they share.

/// Checks `f` under loom at preemption bound 3 (unless `LOOM_MAX_PREEMPTIONS`
/// says otherwise), asserting after every iteration — once the collector's
/// queued jobs have run — that it freed every ctxtree node it allocated
/// (N1): loom keeps freed nodes, so a leak would otherwise pass unseen.
#[cfg(loom)]
pub fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(move || {
        let before = ctxtree::loom_hooks::live_nodes();
        f();
        // Sweeps handed to the collector (L10) hold a user of their node
        // until they run: run what the iteration queued, as the collector
        // thread would.
        ctxtree::loom_hooks::run_collections();
        assert_eq!(
            ctxtree::loom_hooks::live_nodes(),
            before,
            "a node was leaked"
        );
    });
}

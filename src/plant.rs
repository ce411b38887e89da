//! Planted bugs: the known wrong versions of ctxtree's protocols, kept next
//! to the right ones so that each loom model can be shown to fail when the
//! protocol it checks is wrong (docs/design.md §11).
//!
//! A plant is written `if planted!("name") { wrong } else { right }`. Both
//! branches type-check in every build. Outside loom `planted!` is the
//! constant `false`, so the wrong branch compiles to nothing; under loom it
//! reads the `CTXTREE_PLANT` environment variable once, so one loom build
//! runs every model with any one plant (`scripts/loom-plant-check.sh`).
//! Every name is in [`PLANTS`]; the plant check fails for a name that no
//! model catches, and for a model map entry that names no plant.

/// Every plant, in the order of docs/design.md's loom-model table.
// Used by `planted!`'s compile-time check, which older rustc (the MSRV among
// them) does not count as a use outside loom.
#[allow(dead_code)]
pub(crate) const PLANTS: &[&str] = &[
    "skip_close",
    "skip_close_if_empty",
    "skip_help",
    "sweep_unmarked",
    "relaxed_push",
    "no_rewake",
    "shallow_walk",
    "pin_late",
    "fire_no_propagate",
    "stale_link",
    "callback_in_walk",
    "callback_unclaimed",
    "finish_relaxed",
    "mark_before_walk",
    "help_unannounced",
    "ignore_helped",
    "sweep_release_closed",
    "claim_by_load",
    "grant_after_unlist",
    "unlink_with_users",
    "keep_spare_grant",
    "no_prepay",
    "skip_shard",
    "shard_while_sweeping",
    "sweep_pin_late",
    "timer_keeps_user",
    "retire_ignores_timer",
    "arm_by_store",
    "handoff_keeps_token",
    "trampoline_drops_pending",
    "take_waker_unclaimed",
    "drop_sweep_unheld",
    "merge_unheld_child",
    "inherit_keeps_how",
    "visit_unswept",
    "unlink_ignores_visit",
    "sweep_job_unheld",
    "rest_dropped",
    "busy_drop_forgotten",
    "sweep_stall_ignored",
    "full_sweep_busy_dropped",
];

/// `planted!("name")`: whether the bug `name` is planted in this run (see
/// the module docs). A name missing from [`PLANTS`] fails to compile.
macro_rules! planted {
    ($name:literal) => {{
        const _: () = assert!(
            $crate::plant::is_listed($name),
            concat!("unknown plant ", $name)
        );
        $crate::plant::is_planted($name)
    }};
}
pub(crate) use planted;

/// Whether `name` is in [`PLANTS`] (for `planted!`'s compile-time check).
#[allow(dead_code)] // as `PLANTS`
pub(crate) const fn is_listed(name: &str) -> bool {
    let mut i = 0;
    while i < PLANTS.len() {
        if str_eq(PLANTS[i], name) {
            return true;
        }
        i += 1;
    }
    false
}

#[allow(dead_code)] // as `PLANTS`
const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Outside loom no bug is ever planted.
#[cfg(not(loom))]
#[inline(always)]
pub(crate) const fn is_planted(_name: &str) -> bool {
    false
}

/// Under loom: whether `CTXTREE_PLANT` names `name` (read once).
#[cfg(loom)]
pub(crate) fn is_planted(name: &str) -> bool {
    static PLANT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    PLANT
        .get_or_init(|| {
            let plant = std::env::var("CTXTREE_PLANT").ok()?;
            assert!(is_listed(&plant), "CTXTREE_PLANT={plant} names no plant");
            Some(plant)
        })
        .as_deref()
        == Some(name)
}

#!/usr/bin/env bash
# Plants one known bug at a time and checks that the loom model written to
# catch it now fails. A model that still passes with its bug planted is no
# model. Usage: scripts/loom-plant-check.sh [PLANT...]
#
# Plants are selected at run time (`CTXTREE_PLANT=name`, src/plant.rs), so one
# loom build — the one test.sh's loom step already made — serves them all.
# The map below is cross-checked against src/plant.rs's `PLANTS` and the
# `planted!` uses in src/: a plant without a model, a model entry without a
# plant, or a listed plant that no code plants fails the check.
# The checks run one per core at a time; their results print in order.
# Results are recorded in docs/design.md ("loom models").
set -u
cd "$(dirname "$0")/.."

declare -A MODEL=(
  [skip_close]=cancel_vs_derive
  [skip_close_if_empty]=cancel_vs_derive_no_cause
  [skip_help]=cancel_vs_cancel_with_causes
  [sweep_unmarked]=cancel_vs_child_drop_and_sweep
  [relaxed_push]=cancel_vs_waiter_push
  [no_rewake]=abandoned_cleanup_vs_push_vs_cancel
  [shallow_walk]=grandchild_propagation
  [pin_late]=helper_walk_vs_owner_release
  [fire_no_propagate]=derive_under_firing_deadline
  [stale_link]=collect_repush_vs_push_vs_cancel
  [callback_in_walk]=after_func:after_func_registration_vs_cancel
  [callback_unclaimed]=after_func:after_func_stop_vs_cancel
  [finish_relaxed]=after_func:after_func_stop_wait_vs_cancel
  [mark_before_walk]=self_cancel_and_sweep_vs_parent_cancel
  [help_unannounced]=helper_walk_vs_owner_release
  [ignore_helped]=helper_walk_vs_owner_release
  [sweep_release_closed]=sweep_release_vs_close
  [claim_by_load]=sweep_release_vs_close
  [grant_after_unlist]=last_user_vs_unlist
  [unlink_with_users]=last_user_vs_unlist
  [keep_spare_grant]=last_user_vs_unlist
  [no_prepay]=helper_walk_vs_owner_release
  [skip_shard]=sharded_unlink_first_vs_close
  [shard_while_sweeping]=shard_vs_sweep_vs_close
  [sweep_pin_late]=cursor_sweep_vs_close
  [timer_keeps_user]=timer:canceled_deadline_does_not_pin_its_parent
  [retire_ignores_timer]=timer:drop_disarmed_vs_retire
  [arm_by_store]=timer:arm_vs_parent_cancel
  [handoff_keeps_token]=after_func:after_func_hand_off_vs_stop_wait
  [trampoline_drops_pending]=after_func:after_func_nested_cancel_vs_stop_wait
  [take_waker_unclaimed]=waiter_abandon_vs_cancel
  [drop_sweep_unheld]=drop_sweep:drop_sweep_vs_parent_cancel_and_drop
  [merge_unheld_child]=merge:other_cancel_vs_merged_drop
  [inherit_keeps_how]=origin:origin_of_parent_cancel_vs_child_cancel
  [visit_unswept]=dump:dump_vs_last_user_unlink
  [unlink_ignores_visit]=dump:dump_vs_last_user_unlink
  [sweep_job_unheld]=collector:handed_off_sweep_vs_parent_cancel_and_drop
  [rest_dropped]=collector:split_collection_vs_cancel
  [busy_drop_forgotten]=collector:drop_sweep_vs_insert_sweep_hand_off
  [sweep_stall_ignored]=collector:sweep_stalled_by_a_concurrent_delete
  [full_sweep_busy_dropped]=collector:full_sweep_vs_inline_sweep
)

status=0
# Cross-check: the list in src/plant.rs, the `planted!` uses, this map.
listed=$(sed -n '/^pub(crate) const PLANTS/,/^];/p' src/plant.rs | grep -o '"[a-z_]*"' | tr -d '"' | sort)
used=$(grep -rhoE 'planted!\("[a-z_]+"\)' src | grep -oE '"[a-z_]+"' | tr -d '"' | sort -u)
mapped=$(printf '%s\n' "${!MODEL[@]}" | sort)
for plant in $listed; do
  grep -qx "$plant" <<<"$used" || { echo "UNUSED  $plant: listed in src/plant.rs, planted nowhere"; status=1; }
  grep -qx "$plant" <<<"$mapped" || { echo "NOMODEL $plant: no loom model in this script's map"; status=1; }
done
for plant in $mapped; do
  grep -qx "$plant" <<<"$listed" || { echo "UNKNOWN $plant: mapped here, not in src/plant.rs"; status=1; }
done

plants=("$@")
[ ${#plants[@]} -eq 0 ] && plants=("${!MODEL[@]}")

export CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-3}
export RUSTFLAGS="--cfg loom --cfg crossbeam_loom"
cargo build --release -p loom-tests --tests >/dev/null 2>&1 \
  || { echo "the loom build failed"; exit 1; }
for plant in "${plants[@]}"; do
  [ -n "${MODEL[$plant]:-}" ] || { echo "unknown plant $plant"; exit 1; }
done

# Checks one plant: prints CAUGHT or MISSED (with the log's tail).
check() { # plant
  local plant=$1 model=${MODEL[$1]} test=core log code why
  # "file:model" names a model outside tests/core.rs.
  if [[ $model == *:* ]]; then test=${model%%:*}; model=${model#*:}; fi
  log=$(mktemp)
  CTXTREE_PLANT=$plant cargo test --release -p loom-tests --test "$test" -- --exact "$model" \
    >"$log" 2>&1
  code=$?
  if [ $code -ne 0 ] && grep -q "Running tests/$test.rs" "$log"; then
    why=$(grep -m1 -E "deadlock|Causality|assertion|N4|panicked at" "$log" | head -c 200)
    echo "CAUGHT  $plant by $model: $why"
  else
    echo "MISSED  $plant: $model passed with the bug planted (or did not build)"
    tail -20 "$log"
  fi
  rm -f "$log"
}

# Each check runs one model on one core: one check per core at a time, each
# into its own file, printed in the plants' order.
results=$(mktemp -d)
for plant in "${plants[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$(nproc)" ]; do wait -n; done
  check "$plant" >"$results/$plant" 2>&1 &
done
wait
for plant in "${plants[@]}"; do
  cat "$results/$plant"
  grep -q '^CAUGHT ' "$results/$plant" || status=1
done
rm -rf "$results"
exit $status

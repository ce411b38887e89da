//! Deadlines: their representation, and the timer driver that fires them.
//!
//! A deadline is stored on its node as data: nanoseconds since a process-wide
//! base instant (`Deadline`, 8 bytes; `NEVER` when absent or unrepresentable).
//! Firing is done by one lazily started background thread, `ctxtree-timer`,
//! that owns a binary heap of armed deadlines and cancels each due node
//! through the ordinary cancel path (`node::cancel` with `DeadlineExceeded`).
//!
//! How entries reach the driver and leave it, and the bound on canceled
//! entries, are the driver's (`timer_driver.rs`, T1–T3, T5); how an
//! entry holds its node, `timer_hold.rs` (T6–T8).
//!
//! Invariant:
//! - **T4** A fire is the ordinary cancel (first writer wins, S1), so a
//!   deadline racing a manual or parent cancel needs no extra protocol. A
//!   panic while firing (a waker's) is caught: the driver keeps running.
//!   The fire holds a user of its node (T8) and runs no `after_func`
//!   callback on the timer thread: those are handed to the callback runner.

#[cfg(not(loom))]
pub(crate) mod driver;
pub(crate) mod slot;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::plant::planted;
use crate::time::slot::TimerHold;
use crate::tree::node;

/// A point in time as nanoseconds since `base()`; `NEVER` means no deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Deadline(u64);

/// The instant all deadlines count from: 20 years before their first use (or
/// as far back as the clock allows), so deadlines in the past are reported as
/// given; only instants before the base saturate (to the base, already past).
/// Deadlines keep 62 bits of nanoseconds ([`DEADLINE_BITS`]), which reach
/// about 146 years past the base, 126 years ahead.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(|| {
        let now = Instant::now();
        [20 * 365 * 86_400, 86_400, 3_600, 1]
            .iter()
            .find_map(|&secs| now.checked_sub(Duration::from_secs(secs)))
            .unwrap_or(now)
    })
}

/// Bits of a deadline: two fewer than a `u64`, so a node packs its root and
/// kind beside its deadline in one word (`node::PackedShape`) and stays at 56
/// bytes, one 64-byte chunk of glibc's allocator.
pub(crate) const DEADLINE_BITS: u32 = 62;
/// The largest deadline value, which is `NEVER`.
const MAX_NANOS: u64 = (1 << DEADLINE_BITS) - 1;

impl Deadline {
    pub(crate) const NEVER: Deadline = Deadline(MAX_NANOS);

    pub(crate) fn now() -> Deadline {
        Deadline::from_instant(Instant::now())
    }

    /// The deadline at `instant`; `NEVER` if too far to represent (more than
    /// ≈146 years past the base).
    pub(crate) fn from_instant(instant: Instant) -> Deadline {
        let since = instant.saturating_duration_since(base());
        // Seconds and nanoseconds separately: cheaper than `as_nanos` (u128).
        match since
            .as_secs()
            .checked_mul(1_000_000_000)
            .and_then(|n| n.checked_add(u64::from(since.subsec_nanos())))
        {
            Some(nanos) if nanos < MAX_NANOS => Deadline(nanos),
            _ => Deadline::NEVER,
        }
    }

    /// `now + timeout`, or `NEVER` if that overflows (`Duration::MAX`).
    pub(crate) fn after(now: Deadline, timeout: Duration) -> Deadline {
        let nanos = timeout
            .as_secs()
            .checked_mul(1_000_000_000)
            .and_then(|n| n.checked_add(u64::from(timeout.subsec_nanos())))
            .unwrap_or(u64::MAX);
        match now.0.checked_add(nanos) {
            Some(at) if at < MAX_NANOS => Deadline(at),
            _ => Deadline::NEVER,
        }
    }

    pub(crate) fn is_never(self) -> bool {
        self == Deadline::NEVER
    }

    pub(crate) fn to_instant(self) -> Option<Instant> {
        if self.is_never() {
            None
        } else {
            base().checked_add(Duration::from_nanos(self.0))
        }
    }

    /// Signed time from `now` to this deadline, for `Display`.
    pub(crate) fn remaining(self, now: Deadline) -> (bool, Duration) {
        if self.0 >= now.0 {
            (false, Duration::from_nanos(self.0 - now.0))
        } else {
            (true, Duration::from_nanos(now.0 - self.0))
        }
    }

    /// The nanoseconds since the base: below 2^[`DEADLINE_BITS`].
    pub(crate) fn raw(self) -> u64 {
        self.0
    }

    /// The deadline whose [`raw`](Deadline::raw) value is `raw`.
    pub(crate) fn from_raw(raw: u64) -> Deadline {
        debug_assert!(raw <= MAX_NANOS, "a deadline has {DEADLINE_BITS} bits");
        Deadline(raw)
    }
}

/// One armed deadline: the node's own (effective) deadline and the timer's
/// hold on it (T6).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) struct Entry {
    pub(crate) deadline: Deadline,
    pub(crate) hold: TimerHold,
}

/// Fires `entry` if its node is still active (T4). A disarmed entry is
/// dropped: its node was canceled and only its block is held (T7).
pub(crate) fn fire(entry: Entry) {
    let Some(node) = entry.hold.take() else {
        return;
    };
    if node.err().is_some() {
        return;
    }
    let cause = node.timer_slot().cause.clone();
    // A panicking waker must not take the driver down with it (T4).
    // The node's last user may be this one: its free (a cause's `drop`) is
    // inside the guard too.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        if planted!("fire_no_propagate") {
            node::cancel_without_propagation(&node, Error::DeadlineExceeded, cause);
        } else {
            node::cancel(&node, Error::DeadlineExceeded, cause);
        }
    }));
}

#[cfg(not(loom))]
pub(crate) use crate::time::driver::{arm, note_disarmed};

/// Under loom there is no driver thread: armed entries wait in a list that a
/// model fires explicitly with [`fire_armed`], or compacts with
/// [`drop_disarmed`], through the same `fire` and holds as the driver.
#[cfg(loom)]
mod model {
    use super::{fire, Entry};
    use crate::time::slot::TimerHold;
    use crate::tree::node::NodeRef;

    loom::lazy_static! {
        static ref ARMED: loom::sync::Mutex<Vec<Entry>> = loom::sync::Mutex::new(Vec::new());
    }

    pub(crate) fn arm(node: NodeRef) {
        if let Some(hold) = TimerHold::arm(node) {
            let deadline = hold.deadline();
            ARMED.lock().unwrap().push(Entry { deadline, hold });
        }
    }

    pub(crate) fn note_disarmed() {}

    /// Fires every armed deadline as if it were due, handing callbacks off
    /// like the driver (F6; `loom_hooks::run_handed_off` runs them).
    pub fn fire_armed() {
        let armed = std::mem::take(&mut *ARMED.lock().unwrap());
        crate::tree::callback_pool::with_hand_off(|| {
            for entry in armed {
                fire(entry);
            }
        });
    }

    /// What the driver's compaction does (T3): drops the entries whose node
    /// was disarmed, keeping the others armed.
    pub fn drop_disarmed() {
        let armed = std::mem::take(&mut *ARMED.lock().unwrap());
        let kept: Vec<Entry> = armed
            .into_iter()
            .filter(|entry| !entry.hold.is_disarmed())
            .collect();
        ARMED.lock().unwrap().extend(kept);
    }
}

#[cfg(loom)]
pub(crate) use model::{arm, note_disarmed};
#[cfg(loom)]
pub use model::{drop_disarmed, fire_armed};

//! A deadline as data: nanoseconds since a process-wide base instant
//! (`Deadline`, 8 bytes; `NEVER` when absent or unrepresentable), stored
//! in a node's immutable shape word (`DEADLINE_BITS` of it).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A point in time as nanoseconds since `base()`; `NEVER` means no deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Deadline(u64);

/// The instant all deadlines count from: 20 years before their first use (or
/// as far back as the clock allows), so deadlines in the past are reported as
/// given; only instants before the base saturate (to the base, already past).
/// Deadlines keep 61 bits of nanoseconds ([`DEADLINE_BITS`]), which reach
/// about 73 years past the base, 53 years ahead.
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

/// Bits of a deadline: three fewer than a `u64`, so a node packs its root,
/// kind and clock beside its deadline in one word (`node::PackedShape`) and
/// stays at 56 bytes, one 64-byte chunk of glibc's allocator.
pub(crate) const DEADLINE_BITS: u32 = 61;
/// The largest deadline value, which is `NEVER`.
const MAX_NANOS: u64 = (1 << DEADLINE_BITS) - 1;

impl Deadline {
    pub(crate) const NEVER: Deadline = Deadline(MAX_NANOS);

    pub(crate) fn now() -> Deadline {
        Deadline::from_instant(Instant::now())
    }

    /// The deadline at `instant`; `NEVER` if too far to represent (more than
    /// ≈73 years past the base).
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

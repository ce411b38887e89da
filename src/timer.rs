//! Deadlines: their representation, and the timer driver that fires them.
//!
//! A deadline is stored on its node as data: nanoseconds since a process-wide
//! base instant (`Deadline`, 8 bytes; `NEVER` when absent or unrepresentable).
//! Firing is done by one lazily started background thread, `ctxtree-timer`,
//! that owns a binary heap of armed deadlines and cancels each due node
//! through the ordinary cancel path (`node::cancel` with `DeadlineExceeded`).
//!
//! Arming never takes a lock and touches no word shared by all threads: the
//! arming thread pushes an entry onto one of `SHARDS` cache-padded Treiber
//! stacks (chosen per thread), and the driver drains all shards.
//!
//! Invariants:
//! - **T1** Every armed entry is, at every moment, in exactly one place: its
//!   shard's stack, or the driver's heap, or being fired / dropped by the
//!   driver. Entries own a count of their node, so a node outlives its entry.
//! - **T2** No missed wake-up: an arming thread pushes (a `SeqCst` CAS), then
//!   reads `sleeping_until` (`SeqCst`); the driver stores `sleeping_until`
//!   (`SeqCst`), then checks every shard (`SeqCst` loads) before it parks.
//!   All four are in the single total order of `SeqCst` operations, so this
//!   store-buffering pattern cannot lose both ways: either the driver sees
//!   the entry, or the arming thread sees the driver's deadline and unparks
//!   it if the new deadline is earlier. (On x86 a `SeqCst` CAS is the same
//!   `lock cmpxchg` as an AcqRel one, so arming needs no separate fence.)
//! - **T3** Disarming is lazy but bounded: a canceled node's entry is dropped
//!   when its shard is drained or collected (T5), or at the next compaction of
//!   the driver's heap. Every cancel of a deadline node is counted in the
//!   canceling thread's shard (`disarmed`, in batches of `DISARM_BATCH` from
//!   a thread-local count); the driver compacts when the disarms it has
//!   collected reach half its heap (or the heap doubled since the last
//!   compaction), and a shard whose count crosses `BACKLOG` wakes it. So each
//!   disarm costs O(1) amortized, and canceled entries in the heap never
//!   outnumber about `live + SHARDS × BACKLOG + MIN_COMPACT`.
//! - **T4** A fire is the ordinary cancel (first writer wins, S1), so a
//!   deadline racing a manual or parent cancel needs no extra protocol. A
//!   panic while firing (a waker's) is caught: the driver keeps running.
//! - **T5** Every `SELF_COLLECT` arms, the arming thread takes its own shard's
//!   stack, drops entries already canceled and pushes the rest back, then
//!   fences and checks `sleeping_until` exactly like an arm (T2); if it kept
//!   `SELF_COLLECT` or more live entries it wakes the driver to take them, so
//!   no collection rescans a long run of live entries (O(1) amortized per
//!   arm). Whoever takes a stack owns its entries (T1), so driver and
//!   collectors need no other coordination. Most timeouts are canceled long
//!   before they fire; this frees them on the thread that allocated them.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::{Cause, Error};
use crate::node::{self, NodeRef};

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

/// The part of a deadline node that only the timer uses, allocated with the
/// node (`node::TimedNode`): no allocation of its own per armed deadline.
pub(crate) struct TimerSlot {
    /// The next node in a submission shard's stack (T1). Written by the
    /// arming thread before it publishes the node, read by the driver after
    /// it takes the stack.
    #[cfg_attr(loom, allow(dead_code))]
    next: crate::sync::AtomicUsize,
    /// The cause to record if the deadline fires (`None`: the err itself).
    /// Immutable.
    cause: Option<Cause>,
}

impl TimerSlot {
    pub(crate) fn new(cause: Option<Cause>) -> TimerSlot {
        TimerSlot {
            next: crate::sync::AtomicUsize::new(0),
            cause,
        }
    }
}

/// One armed deadline: the node's own (effective) deadline and a count of it.
#[cfg_attr(loom, allow(dead_code))]
struct Entry {
    deadline: Deadline,
    node: NodeRef,
}

/// Fires `entry` if its node is still active (T4).
fn fire(entry: Entry) {
    let node = entry.node;
    if node.err().is_some() {
        return;
    }
    let cause = node.timer_slot().cause.clone();
    // A panicking waker must not take the driver down with it (T4).
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        #[cfg(not(ctxtree_plant = "fire_no_propagate"))]
        node::cancel(&node, Error::DeadlineExceeded, cause);
        #[cfg(ctxtree_plant = "fire_no_propagate")]
        node::cancel_without_propagation(&node, Error::DeadlineExceeded, cause);
    }));
}

#[cfg(not(loom))]
pub(crate) use driver::{arm, note_disarmed};

#[cfg(not(loom))]
mod driver {
    use std::cell::Cell;
    use std::cmp::Ordering as CmpOrdering;
    use std::collections::BinaryHeap;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::OnceLock;
    use std::thread::{self, Thread};
    use std::time::Duration;

    use crossbeam_utils::CachePadded;

    use super::{fire, Deadline, Entry};
    use crate::node::NodeRef;

    /// Submission shards (T1); a power of two.
    const SHARDS: usize = 16;
    /// Disarms a shard may count before it wakes the driver (T3).
    const BACKLOG: usize = 4096;
    /// Disarms a thread counts locally before adding them to its shard.
    const DISARM_BATCH: usize = 64;
    /// Smallest heap size that triggers a compaction (T3).
    const MIN_COMPACT: usize = 1024;
    /// An arming thread collects its shard after this many arms (T5).
    const SELF_COLLECT: usize = 64;

    struct Driver {
        shards: Box<[CachePadded<Shard>]>,
        /// The deadline the driver sleeps until; 0 while it is awake and will
        /// drain before sleeping again (T2).
        sleeping_until: AtomicU64,
        thread: Thread,
    }

    /// A Treiber stack of armed nodes linked through their `TimerSlot`,
    /// pushed by arming threads, taken whole by the driver.
    struct Shard {
        head: AtomicUsize,
        /// Deadline nodes canceled by threads of this shard since the driver
        /// last looked (T3).
        disarmed: AtomicUsize,
    }

    /// Per-thread timer state: one thread-local access per arm or disarm.
    struct Local {
        /// This thread's shard: threads are dealt out round-robin.
        shard: usize,
        /// Arms by this thread; every `SELF_COLLECT`th collects (T5).
        arms: Cell<usize>,
        /// Disarms not yet added to the shard's count (T3).
        disarms: Cell<usize>,
    }

    thread_local! {
        static LOCAL: Local = Local {
            shard: {
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
            },
            arms: Cell::new(0),
            disarms: Cell::new(0),
        };
    }

    impl PartialEq for Entry {
        fn eq(&self, other: &Entry) -> bool {
            self.deadline == other.deadline
        }
    }
    impl Eq for Entry {}
    impl PartialOrd for Entry {
        fn partial_cmp(&self, other: &Entry) -> Option<CmpOrdering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for Entry {
        /// Reversed, so `BinaryHeap` pops the earliest deadline first.
        fn cmp(&self, other: &Entry) -> CmpOrdering {
            other.deadline.cmp(&self.deadline)
        }
    }

    static DRIVER: OnceLock<Driver> = OnceLock::new();

    /// Counts a canceled deadline node (T3). Starts nothing: without a driver
    /// no deadline was ever armed.
    pub(crate) fn note_disarmed() {
        let Some(driver) = DRIVER.get() else {
            return;
        };
        let Ok(Some(shard)) = LOCAL.try_with(|local| {
            let n = local.disarms.get() + 1;
            local.disarms.set(n % DISARM_BATCH);
            (n == DISARM_BATCH).then_some(local.shard)
        }) else {
            return; // not a batch boundary (or the thread is exiting)
        };
        let before = driver.shards[shard]
            .disarmed
            .fetch_add(DISARM_BATCH, Ordering::Relaxed);
        if before < BACKLOG && before + DISARM_BATCH >= BACKLOG {
            driver.thread.unpark();
        }
    }

    fn driver() -> &'static Driver {
        DRIVER.get_or_init(|| {
            let handle = thread::Builder::new()
                .name("ctxtree-timer".into())
                .spawn(|| run(driver()))
                .expect("ctxtree: cannot spawn the timer thread");
            Driver {
                shards: (0..SHARDS)
                    .map(|_| {
                        CachePadded::new(Shard {
                            head: AtomicUsize::new(0),
                            disarmed: AtomicUsize::new(0),
                        })
                    })
                    .collect(),
                sleeping_until: AtomicU64::new(0),
                thread: handle.thread().clone(),
            }
        })
    }

    /// Arms `node`'s own deadline (T1, T2). The shard's stack takes over
    /// the count `node` carries.
    pub(crate) fn arm(node: NodeRef) {
        let driver = driver();
        let (shard, collect_now) = LOCAL.with(|local| {
            let arms = local.arms.get().wrapping_add(1);
            local.arms.set(arms);
            (local.shard, arms % SELF_COLLECT == 0)
        });
        let shard = &driver.shards[shard];
        let deadline = node.deadline();
        let slot_next = &node.timer_slot().next as *const std::sync::atomic::AtomicUsize;
        let raw = node.into_raw() as usize;
        let mut head = shard.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: the node is alive (the stack owns a count of it) and
            // unpublished until the CAS succeeds.
            unsafe { (*slot_next).store(head, Ordering::Relaxed) };
            // SeqCst: T2 (and Release: publishes the node's link).
            match shard
                .head
                .compare_exchange_weak(head, raw, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(actual) => head = actual,
            }
        }
        if deadline.raw() < driver.sleeping_until.load(Ordering::SeqCst) {
            driver.thread.unpark(); // T2
        } else if collect_now {
            collect(driver, shard);
        }
    }

    /// An arming thread's own clean-up of its shard (T3, T5): takes the
    /// stack, drops the entries whose node is already canceled — on this
    /// thread, which usually allocated them, so the allocator's thread cache
    /// stays warm — and pushes the rest back like an arm would (T2).
    fn collect(driver: &Driver, shard: &Shard) {
        let mut next = shard.head.swap(0, Ordering::Acquire);
        let (mut top, mut bottom, mut kept) = (0usize, 0usize, 0usize);
        let mut earliest = Deadline::NEVER;
        while next != 0 {
            // SAFETY: the swap took the whole stack; each count is ours (T1).
            let node = unsafe { NodeRef::from_raw(next as *const crate::node::Node) };
            next = node.timer_slot().next.load(Ordering::Relaxed);
            if node.err().is_some() {
                continue; // dropping `node` gives back the timer's count
            }
            earliest = earliest.min(node.deadline());
            kept += 1;
            node.timer_slot().next.store(0, Ordering::Relaxed);
            let raw = node.into_raw() as usize;
            if top == 0 {
                top = raw;
            } else {
                // SAFETY: `bottom` is a node of our chain; we own its count.
                let prev = unsafe { &*(bottom as *const crate::node::Node) };
                prev.timer_slot().next.store(raw, Ordering::Relaxed);
            }
            bottom = raw;
        }
        if top == 0 {
            return;
        }
        let wake = kept >= SELF_COLLECT;
        // SAFETY: as above.
        let last = unsafe { &*(bottom as *const crate::node::Node) };
        let mut head = shard.head.load(Ordering::Relaxed);
        loop {
            last.timer_slot().next.store(head, Ordering::Relaxed);
            // SeqCst: T2, as for an arm.
            match shard
                .head
                .compare_exchange_weak(head, top, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(actual) => head = actual,
            }
        }
        if wake || earliest.raw() < driver.sleeping_until.load(Ordering::SeqCst) {
            driver.thread.unpark();
        }
    }

    fn run(driver: &'static Driver) {
        crate::callback_pool::hand_off_on_this_thread(); // F6: no user callbacks here
        let mut heap: BinaryHeap<Entry> = BinaryHeap::new();
        let mut compact_at = MIN_COMPACT;
        // Cancels of deadline nodes reported since the last compaction (T3).
        let mut disarmed = 0usize;
        loop {
            driver.sleeping_until.store(0, Ordering::Relaxed);
            drain(driver, &mut heap);
            for shard in driver.shards.iter() {
                disarmed += shard.disarmed.swap(0, Ordering::Relaxed);
            }

            let now = Deadline::now();
            while heap.peek().is_some_and(|top| top.deadline <= now) {
                if let Some(entry) = heap.pop() {
                    fire(entry);
                }
            }

            let many_disarmed = disarmed >= MIN_COMPACT.max(heap.len() / 2);
            if heap.len() >= compact_at || (many_disarmed && !heap.is_empty()) {
                disarmed = 0;
                heap.retain(|e| e.node.err().is_none());
                if heap.capacity() > 4 * heap.len().max(MIN_COMPACT) {
                    heap.shrink_to(2 * heap.len().max(MIN_COMPACT));
                }
                compact_at = (2 * heap.len()).max(MIN_COMPACT);
            }

            let next = heap.peek().map_or(Deadline::NEVER, |top| top.deadline);
            driver.sleeping_until.store(next.raw(), Ordering::SeqCst); // T2
            if driver
                .shards
                .iter()
                .any(|s| s.head.load(Ordering::SeqCst) != 0)
            {
                continue;
            }
            if next.is_never() {
                thread::park();
            } else {
                let (_, wait) = next.remaining(Deadline::now());
                if !wait.is_zero() {
                    thread::park_timeout(wait.max(Duration::from_micros(50)));
                }
            }
        }
    }

    /// Moves every shard's entries into the heap, dropping those whose node
    /// is already canceled (T3).
    fn drain(driver: &Driver, heap: &mut BinaryHeap<Entry>) {
        for shard in driver.shards.iter() {
            if shard.head.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let mut next = shard.head.swap(0, Ordering::Acquire);
            while next != 0 {
                // SAFETY: the swap took the whole stack; each node's count
                // came from `NodeRef::into_raw` in `arm` and is ours now (T1).
                let node = unsafe { NodeRef::from_raw(next as *const crate::node::Node) };
                next = node.timer_slot().next.load(Ordering::Relaxed);
                if node.err().is_none() {
                    heap.push(Entry {
                        deadline: node.deadline(),
                        node,
                    });
                }
            }
        }
    }
}

/// Under loom there is no driver thread: armed entries wait in a list that a
/// model fires explicitly with [`fire_armed`], through the same `fire`.
#[cfg(loom)]
mod model {
    use super::{fire, Entry};
    use crate::node::NodeRef;

    loom::lazy_static! {
        static ref ARMED: loom::sync::Mutex<Vec<Entry>> = loom::sync::Mutex::new(Vec::new());
    }

    // SAFETY: loom runs all modelled threads on one OS thread.
    unsafe impl Send for Entry {}

    pub(crate) fn arm(node: NodeRef) {
        ARMED.lock().unwrap().push(Entry {
            deadline: node.deadline(),
            node,
        });
    }

    pub(crate) fn note_disarmed() {}

    /// Fires every armed deadline as if it were due, handing callbacks off
    /// like the driver (F6; `loom_hooks::run_handed_off` runs them).
    pub fn fire_armed() {
        let armed = std::mem::take(&mut *ARMED.lock().unwrap());
        crate::callback_pool::with_hand_off(|| {
            for entry in armed {
                fire(entry);
            }
        });
    }
}

#[cfg(loom)]
pub use model::fire_armed;
#[cfg(loom)]
pub(crate) use model::{arm, note_disarmed};

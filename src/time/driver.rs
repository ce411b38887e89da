//! The timer driver: one lazily started background thread, `ctxtree-timer`,
//! that owns a binary heap of armed deadlines and fires each when it is due
//! ([`fire`]).
//!
//! Arming never takes a lock and touches no word shared by all threads: the
//! arming thread pushes its entry onto one of `SHARDS` cache-padded Treiber
//! stacks (chosen per thread), and the driver drains all shards.
//!
//! Invariants:
//! - **T1** Every armed entry is, at every moment, in exactly one place: its
//!   shard's stack, or the driver's heap, or being fired / dropped by the
//!   driver or a collecting thread. An entry is a [`TimerHold`], which keeps
//!   its node's block (and, while armed, a user of it, T6).
//! - **T2** No missed wake-up: an arming thread pushes (a `SeqCst` CAS), then
//!   reads `sleeping_until` (`SeqCst`); the driver stores `sleeping_until`
//!   (`SeqCst`), then checks every shard (`SeqCst` loads) before it parks.
//!   All four are in the single total order of `SeqCst` operations, so this
//!   store-buffering pattern cannot lose both ways: either the driver sees
//!   the entry, or the arming thread sees the driver's deadline and unparks
//!   it if the new deadline is earlier. (On x86 a `SeqCst` CAS is the same
//!   `lock cmpxchg` as an AcqRel one, so arming needs no separate fence.)
//! - **T3** Disarming is lazy but bounded, whatever the threads' lifetimes.
//!   A disarm (T6's `ARMED → WEAK`) is counted on the disarming thread and
//!   added to its shard's `disarmed` count every `DISARM_BATCH` disarms and
//!   when the thread exits, so no count is lost. A shard whose count crosses
//!   `BACKLOG` wakes the driver; the driver compacts its heap (drops every
//!   disarmed entry) when the disarms it collected reach half its heap, or
//!   the heap doubled since the last compaction; and whenever it collected
//!   a disarm, or took new entries into a heap of at most `TIDY_HEAP`, it
//!   tidies — drains and compacts in full — `tidy_delay(heap)` later
//!   (`TIDY_AFTER`, 100 ms, up to `TIDY_HEAP` entries, then in proportion,
//!   at most 60 s). So disarmed entries never outnumber `max(live,
//!   MIN_COMPACT) + SHARDS × BACKLOG + (DISARM_BATCH − 1) × (live threads)`,
//!   each holding one deadline block (`node::TimedNode`, 88 bytes) and
//!   nothing else (T6); and a tidy delay after the last arm or disarm that
//!   was counted, none is left but the uncounted remainders of live threads.
//! - **T5** Every `SELF_COLLECT` arms, the arming thread takes its own shard's
//!   stack, drops entries already disarmed and pushes the rest back, then
//!   checks `sleeping_until` exactly like an arm (T2); if it kept
//!   `SELF_COLLECT` or more live entries it wakes the driver to take them, so
//!   no collection rescans a long run of live entries (O(1) amortized per
//!   arm). Whoever takes a stack owns its entries (T1), so driver and
//!   collectors need no other coordination. Most timeouts are canceled long
//!   before they fire; this frees them on the thread that allocated them.
//!
//! Linearization: an entry is armed at its push CAS (and T6's `ARMED`); the
//! driver fires what is due after each wake-up, in deadline order.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use crate::time::deadline::Deadline;
use crate::time::fire::{fire, Entry};
use crate::time::hold::TimerHold;
use crate::time::registry::{self, Driver, Shard, LOCAL, SELF_COLLECT};
use crate::tree::node::{Node, NodeRef};

/// Smallest heap size that triggers a compaction (T3).
const MIN_COMPACT: usize = 1024;
/// A heap this small is tidied after new entries arrive (T3).
const TIDY_HEAP: usize = 4096;
/// How long after counted activity the driver tidies (T3).
const TIDY_AFTER: Duration = Duration::from_millis(100);
/// How long the driver waits to tidy a heap of `len` entries (T3):
/// `TIDY_AFTER`, stretched in proportion above `TIDY_HEAP` entries so that
/// tidying costs the driver thread at most about one entry per 25 µs.
fn tidy_delay(len: usize) -> Duration {
    let factor = (len / TIDY_HEAP).clamp(1, 600) as u32;
    TIDY_AFTER * factor
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

fn driver() -> &'static Driver {
    registry::get_or_start(|| {
        thread::Builder::new()
            .name("ctxtree-timer".into())
            .spawn(|| run(driver()))
            .expect("ctxtree: cannot spawn the timer thread")
            .thread()
            .clone()
    })
}

/// Arms `node`'s own deadline (T1, T2, T6). The entry takes over the user
/// `node` carries; a node already claimed is not armed.
pub(crate) fn arm(node: NodeRef) {
    let driver = driver();
    let deadline = node.deadline();
    let Some(hold) = TimerHold::arm(node) else {
        return;
    };
    let (shard, collect_now) = LOCAL.with(|local| {
        let arms = local.arms.get().wrapping_add(1);
        local.arms.set(arms);
        (local.shard, arms % SELF_COLLECT == 0)
    });
    let shard = &driver.shards[shard];
    let next = hold.next() as *const AtomicUsize;
    let raw = hold.into_raw() as usize;
    // SAFETY: the stack will own the hold, which keeps the block (T1).
    push_chain(shard, raw, unsafe { &*next });
    if deadline.raw() < driver.sleeping_until.load(Ordering::SeqCst) {
        driver.thread.unpark(); // T2
    } else if collect_now {
        collect(driver, shard);
    }
}

/// Pushes the chain of holds from `top` to the one whose link is `last`
/// onto `shard`'s stack. The `SeqCst` CAS is T2's (and Release publishes the
/// links).
fn push_chain(shard: &Shard, top: usize, last: &AtomicUsize) {
    let mut head = shard.head.load(Ordering::Relaxed);
    loop {
        last.store(head, Ordering::Relaxed);
        match shard
            .head
            .compare_exchange_weak(head, top, Ordering::SeqCst, Ordering::Relaxed)
        {
            Ok(_) => return,
            Err(actual) => head = actual,
        }
    }
}

/// Drops a hold on the driver thread: the last drop of a node or of its
/// slot runs foreign code (a cause's `drop`), whose panic must not stop
/// the driver (T4).
fn drop_on_driver(hold: TimerHold) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(hold)));
}

/// Takes `shard`'s whole stack (T1) and calls `each` with every hold in it.
fn take_stack(shard: &Shard, mut each: impl FnMut(TimerHold)) {
    if shard.head.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut next = shard.head.swap(0, Ordering::Acquire);
    while next != 0 {
        // SAFETY: the swap took the whole stack; each hold came from
        // `TimerHold::into_raw` and is ours now (T1).
        let hold = unsafe { TimerHold::from_raw(next as *const Node) };
        next = hold.next().load(Ordering::Relaxed);
        each(hold);
    }
}

/// An arming thread's own clean-up of its shard (T3, T5): takes the
/// stack, drops the disarmed entries — on this thread, which usually
/// allocated them, so the allocator's thread cache stays warm — and pushes
/// the rest back like an arm would (T2).
fn collect(driver: &Driver, shard: &Shard) {
    let mut kept: Vec<TimerHold> = Vec::new();
    let mut earliest = Deadline::NEVER;
    take_stack(shard, |hold| {
        if hold.is_disarmed() {
            // A cause's `drop` may panic: held until the stack is back.
            crate::tree::panics::hold_from(move || drop(hold));
        } else {
            earliest = earliest.min(hold.deadline());
            kept.push(hold);
        }
    });
    let Some(bottom) = kept.first() else {
        crate::tree::panics::resume();
        return;
    };
    let last = bottom.next() as *const AtomicUsize;
    let wake = kept.len() >= SELF_COLLECT;
    // Relink the kept holds (in reverse order): each points at the one
    // below, the first kept at the bottom.
    let mut below = 0usize;
    for hold in kept {
        hold.next().store(below, Ordering::Relaxed);
        below = hold.into_raw() as usize;
    }
    // SAFETY: `last` is the link of the bottom hold of the chain, whose
    // block the chain keeps (T1).
    push_chain(shard, below, unsafe { &*last });
    if wake || earliest.raw() < driver.sleeping_until.load(Ordering::SeqCst) {
        driver.thread.unpark();
    }
    crate::tree::panics::resume();
}

/// The driver's loop state.
struct Heap {
    entries: BinaryHeap<Entry>,
    /// Heap size that triggers the next compaction (T3).
    compact_at: usize,
    /// Disarms reported since the last compaction (T3).
    disarmed: usize,
    /// When to tidy, if anything happened since the last tidy (T3).
    tidy_at: Option<std::time::Instant>,
}

fn run(driver: &'static Driver) {
    crate::tree::callback_pool::hand_off_on_this_thread(); // F6: no user callbacks here
    let mut heap = Heap {
        entries: BinaryHeap::new(),
        compact_at: MIN_COMPACT,
        disarmed: 0,
        tidy_at: None,
    };
    loop {
        driver.sleeping_until.store(0, Ordering::Relaxed);
        heap.take_shards(driver);
        heap.fire_due();
        heap.compact_if_due();
        let next = heap
            .entries
            .peek()
            .map_or(Deadline::NEVER, |top| top.deadline);
        let wake_at = match heap.tidy_at {
            Some(at) => next.min(Deadline::from_instant(at)),
            None => next,
        };
        let untidy = heap.tidy_at.is_none();
        driver.tidy_pending.store(!untidy, Ordering::SeqCst); // T3
        driver.sleeping_until.store(wake_at.raw(), Ordering::SeqCst); // T2
                                                                      // Before parking: T2 for entries, T3 for counts (no tidy pending).
        if driver.shards.iter().any(|s| {
            s.head.load(Ordering::SeqCst) != 0 || untidy && s.disarmed.load(Ordering::SeqCst) != 0
        }) {
            continue;
        }
        if wake_at.is_never() {
            thread::park();
        } else {
            let (_, wait) = wake_at.remaining(Deadline::now());
            if !wait.is_zero() {
                thread::park_timeout(wait.max(Duration::from_micros(50)));
            }
        }
    }
}

impl Heap {
    /// Moves every shard's entries into the heap, dropping the disarmed
    /// ones, and collects the shards' disarm counts (T3).
    fn take_shards(&mut self, driver: &Driver) {
        let mut took = false;
        let mut counted = 0;
        for shard in driver.shards.iter() {
            counted += shard.disarmed.swap(0, Ordering::Relaxed);
            take_stack(shard, |hold| {
                took = true;
                if hold.is_disarmed() {
                    drop_on_driver(hold);
                } else {
                    let deadline = hold.deadline();
                    self.entries.push(Entry { deadline, hold });
                }
            });
        }
        self.disarmed += counted;
        let small = self.entries.len() <= TIDY_HEAP;
        if self.tidy_at.is_none() && (counted > 0 || took && small) {
            self.tidy_at = Some(std::time::Instant::now() + tidy_delay(self.entries.len()));
        }
    }

    /// Fires every entry that is due, in deadline order (T4).
    fn fire_due(&mut self) {
        let now = Deadline::now();
        while self.entries.peek().is_some_and(|top| top.deadline <= now) {
            if let Some(entry) = self.entries.pop() {
                fire(entry);
            }
        }
    }

    /// Drops the disarmed entries when enough were reported, the heap
    /// doubled, or a tidy is due (T3).
    fn compact_if_due(&mut self) {
        let len = self.entries.len();
        let many_disarmed = self.disarmed >= MIN_COMPACT.max(len / 2);
        let tidy = self
            .tidy_at
            .is_some_and(|at| at <= std::time::Instant::now());
        if !(tidy || len >= self.compact_at || many_disarmed && len > 0) {
            return;
        }
        if tidy {
            self.tidy_at = None;
        }
        self.disarmed = 0;
        let (kept, disarmed): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut self.entries)
            .into_vec()
            .into_iter()
            .partition(|entry| !entry.hold.is_disarmed());
        disarmed
            .into_iter()
            .for_each(|entry| drop_on_driver(entry.hold));
        self.entries = BinaryHeap::from(kept);
        let len = self.entries.len();
        if self.entries.capacity() > 4 * len.max(MIN_COMPACT) {
            self.entries.shrink_to(2 * len.max(MIN_COMPACT));
        }
        self.compact_at = (2 * len).max(MIN_COMPACT);
    }
}

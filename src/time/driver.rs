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
//!   shard's stack, a chain an arm's collection handed to the driver
//!   (T5), a stack the driver took and has not ingested yet, one of
//!   the driver's heaps (`main`, `side`, `fresh`) or a split's vectors
//!   (`parting`, `backlog`, T9), or being fired / dropped
//!   by the driver or a collecting thread. An entry is a [`TimerHold`], which keeps
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
//!   disarmed entry, by a pour, T9) when the disarms it collected reach half
//!   its heap, or the heap doubled since the last compaction; and whenever
//!   it collected a disarm, or took new entries into a heap of at most
//!   `TIDY_HEAP`, it tidies — ingests and compacts in full — `tidy_delay(heap)` later
//!   (`TIDY_AFTER`, 100 ms, up to `TIDY_HEAP` entries, then in proportion,
//!   at most 60 s). So disarmed entries never outnumber `max(live,
//!   MIN_COMPACT) + SHARDS × BACKLOG + (DISARM_BATCH − 1) × (live threads)`,
//!   each holding one deadline block (`node::TimedNode`, 88 bytes) and
//!   nothing else (T6); and a tidy delay after the last arm or disarm that
//!   was counted, none is left but the uncounted remainders of live threads.
//! - **T5** Every `SELF_COLLECT` (64) arms, the arming thread takes its own
//!   shard's stack, looks at its first `COLLECT_LIMIT` (256) entries, drops
//!   those already disarmed and pushes the live ones back, then checks
//!   `sleeping_until` exactly like an arm (T2); the rest of a longer stack
//!   (other threads of the shard arming faster than the driver takes their
//!   entries in) is handed to the driver unseen, as a chain it takes in
//!   with the shards' stacks (`Driver::handed`). If it kept `SELF_COLLECT`
//!   or more live entries, or handed a rest, it wakes the driver. So one
//!   arm looks at no more than 256 entries, 4 per arm amortized. Whoever
//!   takes a stack or a chain owns its entries (T1), so driver and
//!   collectors need no other coordination; the driver checks for handed
//!   chains before it parks, as for the shards (T2). Most timeouts are
//!   canceled long before they fire; this frees them on the thread that
//!   allocated them.
//!
//! - **T9** No step of the driver does more than bounded work, so no burst
//!   delays an unrelated deadline by more than about a step: each step
//!   takes the shards' stacks whole (one swap each), ingests at most
//!   `SLICE` holds (the newest stack first), fires at most `SLICE` due
//!   entries of each of its heaps, moves at most `SLICE` entries of a pour
//!   and of a merge; the driver does not sleep while any of that remains.
//!   A *pour* (every compaction, T3) empties `main` into `side` in deadline
//!   order — firing what is due, dropping what is disarmed — while ingested
//!   entries go to `side`; when `main` is empty the two swap. A *storm* is
//!   more than `SLICE` entries due at once: while one lasts, ingested
//!   entries go to `fresh`, whose due entries are fired first at every
//!   step, and `fresh` is merged back once nothing else is due. So an entry
//!   armed during a storm or a compaction of 10⁶ entries fires within about
//!   a step (well under a millisecond) of its deadline instead of after the
//!   backlog. A storm whose due part is a sizeable share of `main` (at
//!   least 1 in 16 of 64 sampled entries) is *split*: `main`'s array is
//!   taken whole, and `SPLIT_SLICE` entries per step go to a `backlog` if
//!   due at the split's start, else back onto `main`, which fires them as
//!   they fall due; the backlog is fired `SLICE` per step once the split
//!   is done, in no particular order (all are overdue). So an entry that
//!   was in `main` before the storm, due after its instant, fires at most
//!   about a split (a few ms at 10⁶) late, not after the backlog. No pour
//!   starts during a split or its backlog. A step handles at most `3 ×
//!   SLICE` entries plus the larger of a split slice (`4 × SLICE`) or a
//!   pour, a backlog slice and a merge (`3 × SLICE`): `7 × SLICE`. An
//!   arming thread's own collection (T5) takes only what was pushed since
//!   the driver last took its shard.
//!
//! Linearization: an entry is armed at its push CAS (and T6's `ARMED`); the
//! driver fires what is due at each step, in deadline order within each
//! heap (T9).

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::PoisonError;
use std::thread;
use std::time::Duration;

use crate::time::deadline::Deadline;
use crate::time::fire::{fire, Entry};
use crate::time::hold::TimerHold;
use crate::time::registry::{self, Driver, Shard, COLLECT_LIMIT, LOCAL, SELF_COLLECT};
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
    stat!(TimerArmed);
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

/// An arming thread's own clean-up of its shard (T3, T5): takes the
/// stack, drops the disarmed entries among its first `COLLECT_LIMIT` —
/// on this thread, which usually allocated them, so the allocator's
/// thread cache stays warm — pushes the live ones back like an arm would
/// (T2), and hands the rest of a longer stack to the driver unseen.
fn collect(driver: &Driver, shard: &Shard) {
    if shard.head.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut next = shard.head.swap(0, Ordering::Acquire);
    let mut kept: Vec<TimerHold> = Vec::new();
    let mut earliest = Deadline::NEVER;
    let mut walked = 0;
    while next != 0 && walked < COLLECT_LIMIT {
        walked += 1;
        // SAFETY: the swap took the whole stack; each hold came from
        // `TimerHold::into_raw` and is ours now (T1).
        let hold = unsafe { TimerHold::from_raw(next as *const Node) };
        next = hold.next().load(Ordering::Relaxed);
        if hold.is_disarmed() {
            // A cause's `drop` may panic: held until the stack is back.
            crate::tree::panics::hold_from(move || drop(hold));
        } else {
            earliest = earliest.min(hold.deadline());
            kept.push(hold);
        }
    }
    MAX_SELF_COLLECT.fetch_max(walked, Ordering::Relaxed);
    let handed_rest = next != 0;
    if handed_rest {
        hand_to_driver(driver, next);
    }
    let Some(bottom) = kept.first() else {
        if handed_rest {
            driver.thread.unpark();
        }
        crate::tree::panics::resume();
        return;
    };
    let last = bottom.next() as *const AtomicUsize;
    let wake = kept.len() >= SELF_COLLECT || handed_rest;
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

/// Gives the driver a chain of holds (T1, T5): the part of a shard's
/// stack an arm's collection did not look at. The driver takes it in
/// with the shards' stacks; the caller wakes it.
fn hand_to_driver(driver: &Driver, chain: usize) {
    let mut handed = driver.handed.lock().unwrap_or_else(PoisonError::into_inner);
    handed.push(chain);
    driver.handed_off.store(true, Ordering::SeqCst);
}

/// Entries the driver handles per step before it looks at its shards and
/// its due entries again (T9): holds ingested from the taken chains, due
/// entries fired, entries a pour moves. At ~0.1–0.2 µs each, a step is
/// well under a millisecond.
const SLICE: usize = 1024;

/// Entries a split looks at per step (T9): moving one costs a few
/// nanoseconds (a push onto a `Vec`, or onto a heap in about O(1) for
/// entries in no particular order), so a split of 10⁶ takes milliseconds.
const SPLIT_SLICE: usize = 4 * SLICE;
/// Entries sampled to decide whether a storm is worth a split.
const SAMPLES: usize = 64;

/// The driver's loop state.
struct Heap {
    /// The armed entries, earliest deadline on top.
    main: BinaryHeap<Entry>,
    /// While a pour runs (T9): the entries it moved out of `main`, and
    /// what was ingested since it started. Empty otherwise.
    side: BinaryHeap<Entry>,
    /// What was ingested while a storm was fired (T9): fired first, merged
    /// back once the storm is over.
    fresh: BinaryHeap<Entry>,
    /// Whether a pour runs: `main` is being emptied into `side` in
    /// deadline order, firing what is due and dropping what is disarmed.
    pouring: bool,
    /// Whether more entries were due after the last step's slices.
    storm: bool,
    /// While a storm is split (T9): what was `main`, not yet looked at.
    parting: Vec<Entry>,
    /// The due entries the split found, fired `SLICE` per step once it
    /// ended, in no particular order (all are overdue).
    backlog: Vec<Entry>,
    /// The split sends entries due at or before this to `backlog`.
    horizon: Deadline,
    /// Stacks taken from the shards and not yet ingested, newest last: the
    /// newest are ingested first, so an entry armed now is not queued
    /// behind a burst armed before it (T9).
    chains: Vec<usize>,
    /// Heap size that triggers the next compaction (T3).
    compact_at: usize,
    /// Disarms reported since the last compaction (T3).
    disarmed: usize,
    /// When to tidy, if anything happened since the last tidy (T3).
    tidy_at: Option<std::time::Instant>,
}

fn run(driver: &'static Driver) {
    crate::tree::callback_pool::hand_off_on_this_thread(); // F6: no user callbacks here
    crate::tree::collector::defer_drops_on_this_thread(); // K3: nor a cause's drop
    let mut heap = Heap {
        main: BinaryHeap::new(),
        side: BinaryHeap::new(),
        fresh: BinaryHeap::new(),
        pouring: false,
        storm: false,
        parting: Vec::new(),
        backlog: Vec::new(),
        horizon: Deadline::NEVER,
        chains: Vec::new(),
        compact_at: MIN_COMPACT,
        disarmed: 0,
        tidy_at: None,
    };
    loop {
        driver.sleeping_until.store(0, Ordering::Relaxed);
        heap.step(driver);
        if heap.busy() {
            continue; // more work is queued: no sleep until it is done (T9)
        }
        let wake_at = heap.wake_at();
        let untidy = heap.tidy_at.is_none();
        driver.tidy_pending.store(!untidy, Ordering::SeqCst); // T3
        driver.sleeping_until.store(wake_at.raw(), Ordering::SeqCst); // T2
                                                                      // Before parking: T2 for entries, T3 for counts (no tidy pending).
        let handed = driver.handed_off.load(Ordering::SeqCst); // T5
        if handed
            || driver.shards.iter().any(|s| {
                s.head.load(Ordering::SeqCst) != 0
                    || untidy && s.disarmed.load(Ordering::SeqCst) != 0
            })
        {
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
    /// One step of the loop (T9): take the shards, ingest, fire, pour —
    /// each bounded by `SLICE`.
    fn step(&mut self, driver: &Driver) {
        self.take_shards(driver);
        let mut work = self.ingest();
        let now = Deadline::now();
        // Arrivals first: they are not behind a storm's backlog.
        work += fire_due(&mut self.fresh, now).0;
        if self.pouring {
            work += fire_due(&mut self.side, now).0;
        } else {
            let (fired, more) = fire_due(&mut self.main, now);
            work += fired;
            if more && self.parting.is_empty() && self.backlog.is_empty() {
                self.split_if_worth_it(now);
            }
        }
        if !self.parting.is_empty() {
            work += self.split();
        } else {
            work += self.fire_backlog();
        }
        self.start_pour_if_due();
        if self.pouring {
            work += self.pour(now);
        }
        let due = |heap: &BinaryHeap<Entry>| heap.peek().is_some_and(|top| top.deadline <= now);
        self.storm = due(&self.main)
            || due(&self.side)
            || !self.parting.is_empty()
            || !self.backlog.is_empty();
        if !self.storm {
            work += self.merge_fresh();
        }
        MAX_STEP_WORK.fetch_max(work, Ordering::Relaxed);
    }

    /// Starts a split of `main` (T9) if its due part is a sizeable share
    /// of it: at least 1 in 16 of 64 entries sampled across the heap's
    /// array. Then splitting (a few ns per entry) costs less than firing
    /// the due part, and what falls due meanwhile no longer waits for it.
    fn split_if_worth_it(&mut self, now: Deadline) {
        let entries = self.main.as_slice();
        if entries.len() < SPLIT_SLICE {
            return; // fired in order within a few steps
        }
        let stride = entries.len() / SAMPLES;
        let due = (0..SAMPLES)
            .filter(|i| entries[i * stride].deadline <= now)
            .count();
        if due * 16 >= SAMPLES {
            self.horizon = now;
            self.parting = std::mem::take(&mut self.main).into_vec();
        }
    }

    /// One slice of a split (T9): up to `SPLIT_SLICE` entries of what was
    /// `main`, each dropped if disarmed, put in `backlog` if due by the
    /// horizon, else pushed back onto `main` (which fires them in deadline
    /// order as they fall due, split or not). Returns how many.
    fn split(&mut self) -> usize {
        let n = self.parting.len().min(SPLIT_SLICE);
        for entry in self.parting.drain(self.parting.len() - n..) {
            if entry.hold.is_disarmed() {
                drop_on_driver(entry.hold);
            } else if entry.deadline <= self.horizon {
                self.backlog.push(entry);
            } else {
                self.main.push(entry);
            }
        }
        if self.parting.is_empty() {
            self.parting = Vec::new(); // its capacity is the old heap's
        }
        n
    }

    /// Fires up to `SLICE` entries of the split's backlog (T9); returns
    /// how many.
    fn fire_backlog(&mut self) -> usize {
        let n = self.backlog.len().min(SLICE);
        for entry in self.backlog.drain(self.backlog.len() - n..) {
            fire(entry);
        }
        if n > 0 && self.backlog.is_empty() {
            self.backlog = Vec::new();
        }
        n
    }

    /// Whether work is queued that the next step would do at once.
    fn busy(&self) -> bool {
        self.pouring
            || self.storm
            || !self.chains.is_empty()
            || !self.fresh.is_empty()
            || !self.parting.is_empty()
            || !self.backlog.is_empty()
    }

    /// Where ingested entries go: `fresh` during a storm, `side` during a
    /// pour, else `main`.
    fn target(&mut self) -> &mut BinaryHeap<Entry> {
        if self.storm {
            &mut self.fresh
        } else if self.pouring {
            &mut self.side
        } else {
            &mut self.main
        }
    }

    /// Moves up to `SLICE` entries of `fresh` back into the heap once the
    /// storm is over; returns how many.
    fn merge_fresh(&mut self) -> usize {
        let n = self.fresh.len().min(SLICE);
        for _ in 0..n {
            if let Some(entry) = self.fresh.pop() {
                self.target().push(entry);
            }
        }
        n
    }

    /// The earliest deadline armed, or the tidy, whichever comes first.
    fn wake_at(&self) -> Deadline {
        let top = |heap: &BinaryHeap<Entry>| heap.peek().map_or(Deadline::NEVER, |e| e.deadline);
        let next = top(&self.main).min(top(&self.side)).min(top(&self.fresh));
        match self.tidy_at {
            Some(at) => next.min(Deadline::from_instant(at)),
            None => next,
        }
    }

    /// Takes every shard's stack whole (O(1) each, T1) onto `chains`, and
    /// collects the shards' disarm counts (T3).
    fn take_shards(&mut self, driver: &Driver) {
        let mut took = false;
        let mut counted = 0;
        for shard in driver.shards.iter() {
            counted += shard.disarmed.swap(0, Ordering::Relaxed);
            if shard.head.load(Ordering::Relaxed) != 0 {
                let chain = shard.head.swap(0, Ordering::Acquire);
                if chain != 0 {
                    self.chains.push(chain);
                    took = true;
                }
            }
        }
        // Chains handed over by arms' collections (T5): older than the
        // stacks just taken, so ingested after them.
        if driver.handed_off.load(Ordering::Relaxed)
            && driver.handed_off.swap(false, Ordering::Acquire)
        {
            let mut handed = driver.handed.lock().unwrap_or_else(PoisonError::into_inner);
            took |= !handed.is_empty();
            self.chains.splice(0..0, handed.drain(..));
        }
        self.disarmed += counted;
        let len = self.main.len() + self.side.len() + self.fresh.len();
        if self.tidy_at.is_none() && (counted > 0 || took && len <= TIDY_HEAP) {
            self.tidy_at = Some(std::time::Instant::now() + tidy_delay(len));
        }
    }

    /// Moves up to `SLICE` holds from the taken chains, newest chain first,
    /// into the heap (`side` while a pour runs), dropping the disarmed;
    /// returns how many.
    fn ingest(&mut self) -> usize {
        let mut budget = SLICE;
        while budget > 0 {
            let Some(chain) = self.chains.last_mut() else {
                break;
            };
            // SAFETY: the driver took this chain from a shard (T1); each
            // hold in it came from `TimerHold::into_raw` and is ours.
            let hold = unsafe { TimerHold::from_raw(*chain as *const Node) };
            *chain = hold.next().load(Ordering::Relaxed);
            if *chain == 0 {
                self.chains.pop();
            }
            budget -= 1;
            if hold.is_disarmed() {
                drop_on_driver(hold);
            } else {
                let deadline = hold.deadline();
                self.target().push(Entry { deadline, hold });
            }
        }
        SLICE - budget
    }

    /// Starts a pour that drops the disarmed entries when enough were
    /// reported, the heap doubled, or a tidy is due (T3).
    fn start_pour_if_due(&mut self) {
        if self.pouring || !self.parting.is_empty() || !self.backlog.is_empty() {
            return; // after the split and its backlog (T9)
        }
        let len = self.main.len();
        let many_disarmed = self.disarmed >= MIN_COMPACT.max(len / 2);
        let tidy = self
            .tidy_at
            .is_some_and(|at| at <= std::time::Instant::now());
        if tidy {
            self.tidy_at = None;
        }
        if tidy || len >= self.compact_at || many_disarmed && len > 0 {
            self.disarmed = 0;
            self.pouring = true;
        }
    }

    /// One slice of the pour (T9): up to `SLICE` entries from `main` in
    /// deadline order, each fired if due, dropped if disarmed, else moved
    /// to `side`. When `main` is empty, `side` becomes the heap.
    fn pour(&mut self, now: Deadline) -> usize {
        let mut moved = 0;
        while moved < SLICE {
            let Some(entry) = self.main.pop() else {
                break;
            };
            moved += 1;
            if entry.hold.is_disarmed() {
                drop_on_driver(entry.hold);
            } else if entry.deadline <= now {
                fire(entry);
            } else {
                self.side.push(entry);
            }
        }
        if self.main.is_empty() {
            self.pouring = false;
            self.main = std::mem::take(&mut self.side);
            self.compact_at = (2 * self.main.len()).max(MIN_COMPACT);
        }
        moved
    }
}

/// Fires up to `SLICE` entries of `heap` that are due, in deadline order
/// (T4); returns how many, and whether more are due.
fn fire_due(heap: &mut BinaryHeap<Entry>, now: Deadline) -> (usize, bool) {
    for fired in 0..SLICE {
        match heap.peek() {
            Some(top) if top.deadline <= now => {}
            _ => return (fired, false),
        }
        if let Some(entry) = heap.pop() {
            fire(entry);
        }
    }
    (SLICE, heap.peek().is_some_and(|top| top.deadline <= now))
}

/// The most holds one arm's collection has looked at (T5), for the tests.
static MAX_SELF_COLLECT: AtomicUsize = AtomicUsize::new(0);

/// The most holds one arming thread's collection of its shard has looked
/// at so far (T5).
pub(crate) fn max_self_collect() -> usize {
    MAX_SELF_COLLECT.load(Ordering::Relaxed)
}

/// The most entries one step has handled (T9), for the tests.
static MAX_STEP_WORK: AtomicUsize = AtomicUsize::new(0);

/// The most entries (ingested, fired, dropped or moved) the driver has
/// handled in one step so far: at most `7 × SLICE` (T9).
pub(crate) fn max_step_work() -> usize {
    MAX_STEP_WORK.load(Ordering::Relaxed)
}

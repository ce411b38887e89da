//! What arming and disarming threads share with the timer driver
//! ([`driver`](super::driver), T1–T3): the submission shards, the deadline
//! the driver sleeps until, its pending tidy, and the disarm counts, each
//! thread's batch flushed to its shard (T3). The tree side only counts
//! disarms here; it never reaches the driver's heap.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;

use crossbeam_utils::CachePadded;

/// Submission shards (T1); a power of two.
pub(crate) const SHARDS: usize = 16;
/// Disarms a shard may count before it wakes the driver (T3).
pub(crate) const BACKLOG: usize = 1024;
/// Disarms a thread counts locally before adding them to its shard (T3).
pub(crate) const DISARM_BATCH: usize = 16;
/// An arming thread collects its shard after this many arms (T5).
pub(crate) const SELF_COLLECT: usize = 64;
/// Holds one such collection looks at, at most (T5).
pub(crate) const COLLECT_LIMIT: usize = 4 * SELF_COLLECT;

pub(crate) struct Driver {
    pub(crate) shards: Box<[CachePadded<Shard>]>,
    /// The deadline the driver sleeps until; 0 while it is awake and will
    /// drain before sleeping again (T2).
    pub(crate) sleeping_until: AtomicU64,
    /// Whether the driver has a tidy scheduled (T3).
    pub(crate) tidy_pending: AtomicBool,
    /// Chains of holds an arm's collection did not look at (T5), for the
    /// driver to take in; `handed_off` is set while any waits.
    pub(crate) handed: Mutex<Vec<usize>>,
    pub(crate) handed_off: AtomicBool,
    pub(crate) thread: Thread,
}

/// A Treiber stack of armed nodes linked through their `TimerSlot`,
/// pushed by arming threads, taken whole by the driver.
pub(crate) struct Shard {
    pub(crate) head: AtomicUsize,
    /// Disarms counted by threads of this shard since the driver last
    /// looked (T3).
    pub(crate) disarmed: AtomicUsize,
}

/// Per-thread timer state: one thread-local access per arm or disarm.
pub(crate) struct Local {
    /// This thread's shard: threads are dealt out round-robin.
    pub(crate) shard: usize,
    /// Arms by this thread; every `SELF_COLLECT`th collects (T5).
    pub(crate) arms: Cell<usize>,
    /// Disarms not yet added to the shard's count (T3).
    pub(crate) disarms: Cell<usize>,
}

impl Drop for Local {
    /// A thread's last disarms are added to its shard when it exits (T3).
    fn drop(&mut self) {
        if let Some(driver) = DRIVER.get() {
            add_disarms(driver, self.shard, self.disarms.get());
        }
    }
}

thread_local! {
    pub(crate) static LOCAL: Local = Local {
        shard: {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
        },
        arms: Cell::new(0),
        disarms: Cell::new(0),
    };
}

static DRIVER: OnceLock<Driver> = OnceLock::new();

/// Counts a disarm (T3). Starts nothing: without a driver no deadline was
/// ever armed.
pub(crate) fn note_disarmed() {
    let Some(driver) = DRIVER.get() else {
        return;
    };
    let batch = LOCAL.try_with(|local| {
        let n = local.disarms.get() + 1;
        local.disarms.set(n % DISARM_BATCH);
        (n == DISARM_BATCH).then_some(local.shard)
    });
    match batch {
        Ok(Some(shard)) => add_disarms(driver, shard, DISARM_BATCH),
        Ok(None) => {}
        // The thread is exiting and its count is gone: count it directly.
        Err(_) => add_disarms(driver, 0, 1),
    }
}

/// Adds `n` disarms to `shard`'s count, waking the driver when the count
/// crosses `BACKLOG`, or when it is the first since the driver looked and
/// no tidy is pending (T3). The second is T2's store-buffering pattern
/// again: the driver stores `tidy_pending`, then loads every count before it
/// parks; a disarming thread adds to its count, then loads `tidy_pending`.
fn add_disarms(driver: &Driver, shard: usize, n: usize) {
    if n == 0 {
        return;
    }
    let before = driver.shards[shard].disarmed.fetch_add(n, Ordering::SeqCst);
    let crossed = before < BACKLOG && before + n >= BACKLOG;
    if crossed || before == 0 && !driver.tidy_pending.load(Ordering::SeqCst) {
        driver.thread.unpark();
    }
}

/// The driver's shared state, made (with its thread, by `spawn`) on first
/// use.
pub(crate) fn get_or_start(spawn: impl FnOnce() -> Thread) -> &'static Driver {
    DRIVER.get_or_init(|| {
        let thread = spawn();
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
            tidy_pending: AtomicBool::new(false),
            handed: Mutex::new(Vec::new()),
            handed_off: AtomicBool::new(false),
            thread,
        }
    })
}

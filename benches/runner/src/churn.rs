//! Churned trees: what a tree that has seen derive/drop churn costs, next to
//! a fresh one, and the worst single derive after a burst of drops — for
//! each implementation, with the memory-latency floor of the same walk.
//!
//! - `cancel_churned`: root → `MIDS` mids → `LEAVES` leaves each; then one
//!   thread derives `CHURN` children under random mids, `WINDOW` of them
//!   alive at a time and each dropped at a random later moment (so most
//!   leave their list by whatever the implementation does for a child that
//!   is not the newest); then the root is canceled. Nanoseconds per leaf,
//!   with the same tree fresh as the row before it.
//! - `pointer_chase`: the floor for a walk of that many nodes: one load per
//!   node through a linked list of 64-byte nodes in shuffled order, the
//!   layout of a tree built in one order and walked in another.
//! - `derive_after_drops`: a parent with `DROPPED` children, dropped in
//!   random order; then `2 × DROPPED` derives, each timed alone: p99.9 and
//!   max of those (a derive that pays for everyone's garbage shows here).

use std::hint::black_box;
use std::time::Instant;

use crate::measure::{Sampler, Stats};
use crate::ops::live_parent;
use crate::tree::Tree;

pub const MIDS: usize = 1_000;
pub const LEAVES: usize = 1_000;
pub const CHURN: usize = 1_000_000;
/// Churned children alive at once.
pub const WINDOW: usize = 1_024;
pub const DROPPED: usize = 100_000;

/// A reproducible permutation source (a 64-bit LCG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as usize % bound
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.next(i + 1));
        }
    }
}

/// Root, mids and leaves, kept alive until the cancel.
struct Grid<T: Tree> {
    root: (T::Ctx, T::Handle),
    mids: Vec<(T::Ctx, T::Handle)>,
    leaves: Vec<(T::Ctx, T::Handle)>,
}

impl<T: Tree> Grid<T> {
    fn new() -> Self {
        let root = live_parent::<T>();
        let mids: Vec<_> = (0..MIDS).map(|_| T::derive(&root.0)).collect();
        let leaves = mids
            .iter()
            .flat_map(|mid| (0..LEAVES).map(|_| T::derive(&mid.0)))
            .collect();
        Grid { root, mids, leaves }
    }

    /// Derives `CHURN` children under random mids, each dropped at a
    /// random later moment: a window of `WINDOW` live ones, one of which,
    /// at random, is dropped for each new one (out of derive order, as
    /// requests end).
    fn churn(&self, rng: &mut Lcg) {
        let mut window: Vec<(T::Ctx, T::Handle)> = Vec::with_capacity(WINDOW);
        for _ in 0..CHURN {
            let mid = &self.mids[rng.next(MIDS)].0;
            let child = T::derive(mid);
            if window.len() < WINDOW {
                window.push(child);
            } else {
                let i = rng.next(WINDOW);
                drop(black_box(std::mem::replace(&mut window[i], child)));
            }
        }
    }

    /// Cancels the root; returns the time and checks a leaf saw it.
    fn cancel(self) -> std::time::Duration {
        let start = Instant::now();
        T::cancel(&self.root.1);
        let elapsed = start.elapsed();
        assert!(T::is_done(&self.leaves[self.leaves.len() / 2].0));
        drop(self);
        elapsed
    }
}

/// Nanoseconds per leaf to cancel the grid, fresh or after churn.
pub fn cancel_grid<T: Tree>(churned: bool) -> Option<Sampler> {
    let mut rng = Lcg(0x5EED);
    Some(Box::new(move || {
        let grid = Grid::<T>::new();
        if churned {
            grid.churn(&mut rng);
        }
        grid.cancel().as_nanos() as f64 / (MIDS * LEAVES) as f64
    }))
}

/// Nanoseconds per node of a dependent-load walk over `MIDS × LEAVES`
/// 64-byte nodes linked in shuffled order.
pub fn pointer_chase() -> Sampler {
    #[repr(align(64))]
    struct Node {
        next: usize,
    }
    let n = MIDS * LEAVES;
    let mut order: Vec<usize> = (0..n).collect();
    Lcg(0xC4A5E).shuffle(&mut order);
    let mut nodes: Vec<Node> = (0..n).map(|_| Node { next: 0 }).collect();
    for w in order.windows(2) {
        nodes[w[0]].next = w[1];
    }
    let first = order[0];
    Box::new(move || {
        let start = Instant::now();
        let mut at = first;
        for _ in 1..n {
            at = black_box(nodes[at].next);
        }
        black_box(at);
        start.elapsed().as_nanos() as f64 / n as f64
    })
}

/// Per sample: the `pct`-th percentile (0–100; 100 is the max) of single
/// derives under a parent whose `DROPPED` children were dropped in random
/// order, in nanoseconds.
pub fn derive_after_drops<T: Tree>(pct: f64) -> Option<Sampler> {
    let mut rng = Lcg(0xD80F);
    Some(Box::new(move || {
        let (parent, _handle) = live_parent::<T>();
        let mut children: Vec<Option<(T::Ctx, T::Handle)>> =
            (0..DROPPED).map(|_| Some(T::derive(&parent))).collect();
        let mut order: Vec<usize> = (0..DROPPED).collect();
        rng.shuffle(&mut order);
        for i in order {
            children[i] = None;
        }
        let mut times = Vec::with_capacity(2 * DROPPED);
        let mut kept = Vec::with_capacity(2 * DROPPED);
        for _ in 0..2 * DROPPED {
            let start = Instant::now();
            let child = T::derive(black_box(&parent));
            times.push(start.elapsed().as_nanos() as f64);
            kept.push(child);
            if kept.len() == 1024 {
                kept.clear(); // dropped newest-first: cheap for everyone
            }
        }
        percentile(times, pct)
    }))
}

fn percentile(mut v: Vec<f64>, pct: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((pct / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i.min(v.len() - 1)]
}

/// The note under the churned row: each implementation's churned cancel
/// against its fresh one and against the floor of a scattered walk.
pub fn memory_note(fresh: &[Option<Stats>], churned: &[Option<Stats>], floor: f64) -> String {
    let mut parts = Vec::new();
    for ((name, f), c) in crate::report::IMPLS.iter().zip(fresh).zip(churned) {
        if let (Some(f), Some(c)) = (f, c) {
            parts.push(format!(
                "{name} {:.2}× its fresh cancel ({:.0} % of the floor)",
                c.median / f.median,
                100.0 * c.median / floor
            ));
        }
    }
    format!(
        "after {CHURN} children derived under random mids and dropped out of order \
         ({WINDOW} alive at a time). The floor below ({floor:.0} ns per \
         node) is what a walk costs when every node is a cache miss; a walk well under it still \
         visits its nodes in nearly memory order, and what a churned walk adds beyond its fresh \
         one is the structure (nodes the churn left linked, lists out of memory order) or \
         scattered memory, up to that floor: {}",
        parts.join("; ")
    )
}

/// Deadlines in the full run's storm: all due at one instant.
pub const STORM: usize = 1_000_000;

/// When the timeout whose lateness [`storm_lateness`] measures is armed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Later {
    /// At the instant the storm falls due, for 1 ms.
    ArmedAtTheStorm,
    /// With the storm, before its instant, due 5 ms after it: it waits in
    /// the timer's heap with the storm's deadlines.
    ArmedBefore,
}

/// Milliseconds late: a timeout armed as `later` says around the instant
/// `n` deadlines fall due, from its deadline to its cancel being seen.
/// `None` where the implementation has no deadlines.
pub fn storm_lateness<T: Tree>(n: usize, later: Later) -> Option<Sampler> {
    let (parent, handle) = live_parent::<T>();
    T::with_timeout(&parent, std::time::Duration::from_secs(3600))?;
    // How long the arms of the last sample took: the next storm falls due
    // well after its arms are in. The first guess is ten times a tenth of
    // the storm, armed far out and canceled (a fixed guess of seconds was
    // most of a 10^5 storm's time).
    let start = Instant::now();
    drop(black_box(
        (0..n / 10)
            .filter_map(|_| T::with_timeout(&parent, std::time::Duration::from_secs(3600)))
            .collect::<Vec<_>>(),
    ));
    let mut arming = (start.elapsed() * 10).max(std::time::Duration::from_millis(50));
    Some(Box::new(move || {
        let _keep = &handle;
        let start = Instant::now();
        let due = start + 2 * arming + std::time::Duration::from_millis(200);
        let storm: Vec<_> = (0..n)
            .filter_map(|_| T::with_timeout(&parent, due.saturating_duration_since(Instant::now())))
            .collect();
        arming = start.elapsed();
        assert!(
            Instant::now() < due,
            "the storm fell due before its arms were in"
        );
        let after = std::time::Duration::from_millis(5);
        let before = T::with_timeout(
            &parent,
            (due + after).saturating_duration_since(Instant::now()),
        )
        .expect("checked");
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let (short, _short_handle, deadline) = match later {
            Later::ArmedAtTheStorm => {
                let ms = std::time::Duration::from_millis(1);
                let (ctx, handle) = T::with_timeout(&parent, ms).expect("checked");
                (ctx, handle, Instant::now() + ms)
            }
            Later::ArmedBefore => (before.0, before.1, due + after),
        };
        T::wait(&short);
        let late = deadline.elapsed();
        assert!(!T::is_done(&parent), "the storm ran under a live parent");
        for (ctx, _) in &storm {
            T::wait(ctx);
        }
        late.as_secs_f64() * 1e3
    }))
}

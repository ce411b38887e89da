//! What the threads share (the prebuilt tree, its handles, the start) and
//! what each racing thread keeps and hands back: its derived children,
//! pending futures, abandoned wakers and `after_func` registrations.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, PoisonError};
use std::task::Waker;
use std::thread;

use ctxtree::{AfterFunc, CancelHandle, Cause, Context, DoneOwned, Error};

use super::super::common::CountingWaker;

pub(super) const MAX_DERIVED: usize = 16;
pub(super) const MAX_FUTURES: usize = 8;

pub(super) struct Shared {
    pub(super) ctxs: Vec<Context>,
    pub(super) parents: Vec<Option<usize>>,
    /// The handles, each taken out of its slot by the thread that drops it.
    pub(super) handles: Vec<Mutex<Option<Arc<CancelHandle>>>>,
    /// Each node's prebuilt subtree, itself included.
    pub(super) subtree: Vec<Vec<usize>>,
    pub(super) paths: Vec<String>,
    pub(super) msg_a: Cause,
    pub(super) msg_b: Cause,
    pub(super) barrier: Barrier,
    /// Threads past the barrier; see [`Shared::start`].
    pub(super) started: AtomicUsize,
    /// How many threads run (racers and blocking waiters).
    pub(super) threads: usize,
}

/// Where a thread-derived child hangs.
#[derive(Clone, Copy, Debug)]
pub(super) enum Up {
    Shared(usize),
    Local(usize),
}

pub(super) struct Derived {
    pub(super) ctx: Context,
    pub(super) handle: Option<CancelHandle>,
    pub(super) up: Up,
    /// For a merged child: the other shared node it was merged with.
    pub(super) also: Option<usize>,
    /// Causes this thread canceled it with (`Canceled` for a drop).
    pub(super) applied: Vec<Cause>,
}

pub(super) struct Fut {
    pub(super) fut: DoneOwned,
    pub(super) counter: Arc<CountingWaker>,
    pub(super) waker: Waker,
}

/// Where an `after_func` was registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Target {
    Shared(usize),
    Local(usize),
    /// `without_cancel()` of a shared node: never canceled.
    Detached(usize),
}

/// Shared between a registered function and the harness.
#[derive(Default)]
pub(super) struct FuncRec {
    pub(super) runs: AtomicUsize,
    /// Set when the function returns.
    pub(super) finished: AtomicBool,
    /// What the function found wrong (it must not panic on the
    /// canceling thread).
    pub(super) problem: Mutex<Option<String>>,
}

impl FuncRec {
    pub(super) fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

pub(super) struct Reg {
    pub(super) af: AfterFunc,
    pub(super) rec: Arc<FuncRec>,
    pub(super) ctx: Context,
    pub(super) target: Target,
    /// A `stop` or `stop_wait` of this thread returned true.
    pub(super) stopped: bool,
    /// How many times this thread called `stop` or `stop_wait`.
    pub(super) stops: usize,
}

/// What a racing thread hands back.
#[derive(Default)]
pub(super) struct Local {
    /// `(shared node, cause)` for every cancel or drop this thread did.
    pub(super) applied: Vec<(usize, Cause)>,
    pub(super) derived: Vec<Derived>,
    pub(super) futures: Vec<Fut>,
    pub(super) retired: Vec<Arc<CountingWaker>>,
    pub(super) regs: Vec<Reg>,
}

pub(super) fn canceled() -> Cause {
    Cause::from(Error::Canceled)
}

impl Shared {
    /// Starts all threads of an input together: the `Barrier` gathers
    /// them, then a short spin releases them closer together than the
    /// barrier's one-by-one wake-ups would.
    pub(super) fn start(&self) {
        self.barrier.wait();
        self.started.fetch_add(1, Ordering::SeqCst);
        let mut spins = 0u32;
        while self.started.load(Ordering::SeqCst) < self.threads {
            spins += 1;
            if spins == 64 {
                spins = 0;
                thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    pub(super) fn slot(&self, k: usize) -> Option<Arc<CancelHandle>> {
        self.handles[k].lock().unwrap().clone()
    }

    /// The cause of kind `kind % 5` for op `i` of thread `t`.
    pub(super) fn cause(&self, kind: u8, t: usize, i: usize) -> Cause {
        match kind % 5 {
            0 => Cause::from(Error::Canceled),
            1 => Cause::from(Error::DeadlineExceeded),
            2 => self.msg_a.clone(),
            3 => self.msg_b.clone(),
            _ => Cause::msg(format!("thread {t} op {i}")),
        }
    }

    /// After a cancel of `k` returned: its whole subtree is done (N4).
    pub(super) fn assert_subtree_done(&self, k: usize, local: &Local, what: &str) {
        for &d in &self.subtree[k] {
            assert!(
                self.ctxs[d].is_done(),
                "{what} of node {k} returned but descendant node {d} is not done"
            );
        }
        for (j, dv) in local.derived.iter().enumerate() {
            if self.local_under(local, j, k) {
                assert!(
                    dv.ctx.is_done(),
                    "{what} of node {k} returned but a child derived under it \
                     (local #{j}) is not done"
                );
            }
        }
    }

    /// Whether local derived child `j` is below shared node `k`.
    fn local_under(&self, local: &Local, mut j: usize, k: usize) -> bool {
        loop {
            match local.derived[j].up {
                Up::Local(p) => j = p,
                Up::Shared(s) => return self.subtree[k].contains(&s),
            }
        }
    }
}

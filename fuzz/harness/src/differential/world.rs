//! The arena and the checks.
//!
//! This file: the arena's entries and the `World` that holds ctxtree's side
//! and the model's; the operations are in `driver.rs` and the `*_ops`
//! files, the checks in `checks.rs`.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Waker;
use std::time::Instant;

use ctxtree::{CancelHandle, Cause, Context, DoneOwned, Error};

use super::super::common::CountingWaker;
use super::causes::CauseRec;
use super::decode::Op;
use super::model::{At, Model, RootKind};
use super::registrations::{Probe, Reg, RegState};

pub(super) const MAX_CTXS: usize = 48;
pub(super) const MAX_HANDLES: usize = 48;
pub(super) const MAX_FUTURES: usize = 16;
pub(super) const MAX_REGS: usize = 32;

pub(super) struct CtxEntry {
    pub(super) ctx: Context,
    pub(super) at: At,
}

pub(super) struct HandleEntry {
    pub(super) handle: CancelHandle,
    pub(super) node: usize,
}

pub(super) struct Pending {
    pub(super) fut: DoneOwned,
    pub(super) counter: Arc<CountingWaker>,
    pub(super) waker: Waker,
    pub(super) at: At,
}

pub(super) struct World<'a> {
    pub(super) ops: &'a [Op],
    pub(super) step: usize,
    pub(super) model: Model,
    pub(super) ctxs: Vec<CtxEntry>,
    pub(super) handles: Vec<HandleEntry>,
    pub(super) futures: Vec<Pending>,
    /// Wakers whose registration was abandoned while its context was
    /// live: they must never be woken.
    pub(super) retired: Vec<(Arc<CountingWaker>, At)>,
    pub(super) causes: Vec<CauseRec>,
    pub(super) next_fresh: u32,
    pub(super) regs: Vec<Reg>,
    /// Clones of the arena's contexts before the current op, read by the
    /// registered functions (through a `Weak`, so no cycle), and what
    /// they are in the model.
    pub(super) probe: Arc<Probe>,
    pub(super) probe_at: Vec<At>,
    pub(super) next_value: u32,
    /// The instant the run started: deadlines are fixed offsets from it.
    pub(super) t0: Instant,
}

// `fail!(world, "...", args..)`: `World::fail` with a formatted message;
// the files that check import it from here.
macro_rules! fail {
    ($w:expr, $($arg:tt)*) => {
        $w.fail(format_args!($($arg)*))
    };
}
pub(super) use fail;

impl<'a> World<'a> {
    pub(super) fn new(ops: &'a [Op]) -> World<'a> {
        let causes = vec![
            CauseRec::exact(Cause::from(Error::Canceled), Some(Error::Canceled)),
            CauseRec::exact(
                Cause::from(Error::DeadlineExceeded),
                Some(Error::DeadlineExceeded),
            ),
            CauseRec::exact(Cause::msg("cause A"), None),
            CauseRec::exact(Cause::msg("cause B"), None),
        ];
        World {
            ops,
            step: 0,
            model: Model::default(),
            ctxs: vec![
                CtxEntry {
                    ctx: Context::background(),
                    at: At::root(RootKind::Background),
                },
                CtxEntry {
                    ctx: Context::todo(),
                    at: At::root(RootKind::Todo),
                },
            ],
            handles: Vec::new(),
            futures: Vec::new(),
            retired: Vec::new(),
            causes,
            next_fresh: 0,
            regs: Vec::new(),
            probe: Arc::new(Mutex::new(Vec::new())),
            probe_at: Vec::new(),
            next_value: 0,
            t0: Instant::now(),
        }
    }

    #[cold]
    #[track_caller]
    pub(super) fn fail(&self, msg: std::fmt::Arguments<'_>) -> ! {
        let mut trace = String::new();
        for (i, op) in self.ops.iter().enumerate().take(self.step + 1) {
            let _ = writeln!(trace, "  #{i}: {op:?}");
        }
        panic!(
            "ctxtree differs from the reference model after op #{} ({:?}): {}\n\
             contexts: {}, handles: {}, pending futures: {}, registrations: {}\n\
             ops so far:\n{}",
            self.step,
            self.ops.get(self.step),
            msg,
            self.ctxs.len(),
            self.handles.len(),
            self.futures.len(),
            self.regs.len(),
            trace
        );
    }

    pub(super) fn pick(len: usize, b: u8) -> Option<usize> {
        (len > 0).then(|| b as usize % len)
    }

    /// Background (`b % (n+2) == 0`), todo (`1`) or an arena context.
    pub(super) fn parent(&self, b: u8) -> (Context, At) {
        match b as usize % (self.ctxs.len() + 2) {
            0 => (Context::background(), At::root(RootKind::Background)),
            1 => (Context::todo(), At::root(RootKind::Todo)),
            k => (self.ctxs[k - 2].ctx.clone(), self.ctxs[k - 2].at),
        }
    }

    /// Refreshes the probe the registered functions read, when one may
    /// run during the next op (a registration is pending, or `force`).
    pub(super) fn refresh_probe(&mut self, force: bool) {
        let pending = self
            .regs
            .iter()
            .any(|r| matches!(r.state, RegState::Pending(_)));
        if !(force || pending) {
            return;
        }
        let mut p = self.probe.lock().unwrap_or_else(PoisonError::into_inner);
        p.clear();
        p.extend(self.ctxs.iter().map(|e| e.ctx.clone()));
        drop(p);
        self.probe_at.clear();
        self.probe_at.extend(self.ctxs.iter().map(|e| e.at));
    }
}

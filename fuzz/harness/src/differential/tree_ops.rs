//! The operations on the tree: derivations (cancel, value, `without_cancel`
//! and deadline children), clones, cancels and drops of handles, each
//! applied to ctxtree and to the model.

use std::time::Duration;

use ctxtree::{CancelHandle, Cause, Context, Error, OriginKind};

use super::super::common::CustomError;
use super::causes::{CauseArg, CauseRec, Matcher, CANCELED_ID, DEADLINE_ID};
use super::model::{At, CancelPart, NodeKind};
use super::values::{bind, lookup, KEYS};
use super::world::{fail, CtxEntry, HandleEntry, World, MAX_CTXS, MAX_HANDLES};

impl World<'_> {
    /// `Op::Clone`: a clone of an arena context joins the arena.
    pub(super) fn clone_ctx(&mut self, ctx: u8) {
        if let Some(i) = Self::pick(self.ctxs.len(), ctx) {
            if self.ctxs.len() < MAX_CTXS {
                let c = self.ctxs[i].ctx.clone();
                if !c.same(&self.ctxs[i].ctx) {
                    fail!(self, "a clone is not same() as its original");
                }
                let at = self.ctxs[i].at;
                self.ctxs.push(CtxEntry { ctx: c, at });
            }
        }
    }

    /// `Op::DropHandle`: drops a handle (cancels its node).
    pub(super) fn drop_handle(&mut self, handle: u8) {
        if let Some(i) = Self::pick(self.handles.len(), handle) {
            let e = self.handles.swap_remove(i);
            drop(e.handle);
            let dropped = OriginKind::HandleDropped;
            self.model
                .cancel(e.node, Error::Canceled, CANCELED_ID, dropped);
        }
    }

    /// `Op::Cancel`: `cancel()` of a handle.
    pub(super) fn cancel(&mut self, handle: u8) {
        if let Some(i) = Self::pick(self.handles.len(), handle) {
            self.handles[i].handle.cancel();
            let n = self.handles[i].node;
            self.model
                .cancel(n, Error::Canceled, CANCELED_ID, OriginKind::Cancel);
        }
    }

    /// `Op::DeriveChurn`: many children of one arena context.
    pub(super) fn derive_churn(&mut self, ctx: u8, count: u8, pattern: u8) {
        if let Some(i) = Self::pick(self.ctxs.len(), ctx) {
            let pctx = self.ctxs[i].ctx.clone();
            let at = self.ctxs[i].at;
            for n in 0..1 + count as usize % 96 {
                let keep = (pattern >> (2 * (n % 4))) & 3;
                self.derive_from(&pctx, at, keep);
            }
        }
    }

    /// `Op::DeriveValue`: `with_value` with a fresh value.
    pub(super) fn derive_value(&mut self, parent: u8, key: u8) {
        let (pctx, at) = self.parent(parent);
        let key = key as usize % KEYS;
        self.next_value += 1;
        let v = self.next_value;
        let ctx = bind(&pctx, key, v);
        let at = self.model.bind(at, key, v);
        self.keep_ctx(ctx, at);
    }

    /// `Op::WithoutCancel`: `without_cancel()`.
    pub(super) fn without_cancel(&mut self, parent: u8) {
        let (pctx, at) = self.parent(parent);
        let ctx = pctx.without_cancel();
        let at = self.model.detach(at);
        self.keep_ctx(ctx, at);
    }

    /// Keeps a derived context in the arena while it has room; else
    /// checks it once and drops it.
    fn keep_ctx(&mut self, ctx: Context, at: At) {
        if self.ctxs.len() < MAX_CTXS {
            self.ctxs.push(CtxEntry { ctx, at });
            return;
        }
        let want = self.model.state(at).map(|s| s.0);
        if ctx.err() != want {
            fail!(self, "fresh context err {:?}, model {want:?}", ctx.err());
        }
        let values = self.model.values(at);
        if lookup(&ctx) != values {
            fail!(
                self,
                "fresh context values {:?}, model {values:?}",
                lookup(&ctx)
            );
        }
    }

    /// Derives a child of `parent` and keeps its context (`keep & 1`)
    /// and handle (`keep & 2`) while the arena has room.
    pub(super) fn derive_from(&mut self, parent: &Context, at: At, keep: u8) {
        let (ctx, handle) = parent.with_cancel();
        let n = self.model.derive(at, NodeKind::Cancel);
        self.keep_child(
            ctx,
            handle,
            At {
                cancel: CancelPart::Node(n),
                vals: at.vals,
            },
            keep,
        );
    }

    fn keep_child(&mut self, ctx: Context, handle: CancelHandle, at: At, keep: u8) {
        let CancelPart::Node(n) = at.cancel else {
            unreachable!("a derived child is a node")
        };
        if keep & 1 != 0 && self.ctxs.len() < MAX_CTXS {
            self.ctxs.push(CtxEntry { ctx, at });
        } else {
            // Check the dropped one once: born canceled or not, as the model says.
            let want = self.model.state(at).map(|s| s.0);
            if ctx.err() != want {
                fail!(self, "fresh child err {:?}, model {want:?}", ctx.err());
            }
            let want = self.model.deadline(at);
            if ctx.deadline() != want {
                fail!(
                    self,
                    "fresh child deadline {:?}, model {want:?}",
                    ctx.deadline()
                );
            }
            drop(ctx);
        }
        if keep & 2 != 0 && self.handles.len() < MAX_HANDLES {
            self.handles.push(HandleEntry { handle, node: n });
        } else {
            drop(handle);
            let dropped = OriginKind::HandleDropped;
            self.model.cancel(n, Error::Canceled, CANCELED_ID, dropped);
        }
    }

    /// `with_deadline` / `with_deadline_cause` at offset `when` (0..5).
    pub(super) fn derive_deadline(&mut self, parent: &Context, at: At, when: u8, cause: u8) {
        let d = if when == 0 {
            self.t0
        } else {
            self.t0 + Duration::from_secs(3600 + u64::from(when))
        };
        let (ctx, handle, id) = if cause & 0x80 == 0 {
            let (ctx, handle) = parent.with_deadline(d);
            (ctx, handle, DEADLINE_ID)
        } else {
            let (arg, id) = self.new_cause(cause % 7);
            let (ctx, handle) = match arg {
                CauseArg::Error(e) => parent.with_deadline_cause(d, e),
                CauseArg::Cause(c) => parent.with_deadline_cause(d, c),
                CauseArg::Custom(c) => parent.with_deadline_cause(d, c),
            };
            (ctx, handle, id)
        };
        // Go's rule: a parent deadline at or before `d` gives a plain
        // cancel child; else a deadline child, canceled at once with
        // `DeadlineExceeded` (and the cause) if `d` is not after now.
        let n = if self.model.deadline(at).is_some_and(|p| p <= d) {
            self.model.derive(at, NodeKind::Cancel)
        } else {
            let n = self.model.derive(at, NodeKind::Deadline(d));
            if when == 0 {
                self.model
                    .cancel(n, Error::DeadlineExceeded, id, OriginKind::Deadline);
            }
            n
        };
        let at = At {
            cancel: CancelPart::Node(n),
            vals: at.vals,
        };
        self.keep_child(ctx, handle, at, 3);
    }

    /// `Op::Merge`: `primary.merge(&other)`; both halves join the arena.
    pub(super) fn merge(&mut self, primary: u8, other: u8) {
        let (pctx, p_at) = self.parent(primary);
        let (octx, o_at) = self.parent(other);
        let (ctx, handle) = pctx.merge(&octx);
        let n = self.model.merge(p_at, o_at, std::time::Instant::now());
        let at = At {
            cancel: CancelPart::Node(n),
            vals: p_at.vals,
        };
        self.keep_child(ctx, handle, at, 3);
    }

    /// A fresh or shared cause of kind `kind` (0..7) and its id.
    fn new_cause(&mut self, kind: u8) -> (CauseArg, usize) {
        match kind {
            0 => (CauseArg::Error(Error::Canceled), CANCELED_ID),
            1 => (CauseArg::Error(Error::DeadlineExceeded), DEADLINE_ID),
            2 | 3 => {
                let Matcher::Exact(c) = &self.causes[kind as usize].matcher else {
                    unreachable!()
                };
                (CauseArg::Cause(c.clone()), kind as usize)
            }
            4 => {
                self.next_fresh += 1;
                let c = Cause::msg(format!("fresh cause {}", self.next_fresh));
                self.causes.push(CauseRec::exact(c.clone(), None));
                (CauseArg::Cause(c), self.causes.len() - 1)
            }
            5 => {
                let c = Cause::from_boxed(Box::new(Error::DeadlineExceeded));
                self.causes
                    .push(CauseRec::exact(c.clone(), Some(Error::DeadlineExceeded)));
                (CauseArg::Cause(c), self.causes.len() - 1)
            }
            _ => {
                self.next_fresh += 1;
                let n = self.next_fresh;
                self.causes.push(CauseRec {
                    matcher: Matcher::Custom(n),
                    display: CustomError(n).to_string(),
                    context_error: None,
                    seen: None,
                });
                (CauseArg::Custom(CustomError(n)), self.causes.len() - 1)
            }
        }
    }

    /// `cancel_with_cause` on handle `i` with cause kind `kind` (0..7).
    pub(super) fn cancel_with(&mut self, i: usize, kind: u8) {
        let (arg, id) = self.new_cause(kind);
        let h = &self.handles[i].handle;
        match arg {
            CauseArg::Error(e) => h.cancel_with_cause(e),
            CauseArg::Cause(c) => h.cancel_with_cause(c),
            CauseArg::Custom(c) => h.cancel_with_cause(c),
        }
        let node = self.handles[i].node;
        self.model
            .cancel(node, Error::Canceled, id, OriginKind::Cancel);
    }
}

//! Runs an input: every op applied to ctxtree and the model, then the
//! checks.

use super::decode::{decode, Op};
use super::world::{World, MAX_REGS};

/// Runs one input: panics on the first difference between ctxtree and
/// the reference model.
pub fn run(data: &[u8]) {
    let ops = decode(data);
    let mut world = World::new(&ops);
    for (i, op) in ops.iter().enumerate() {
        world.step = i;
        world.refresh_probe(matches!(op, Op::AfterFunc { .. }));
        world.apply(*op);
        world.check(false);
    }
    world.finish();
}

impl World<'_> {
    // -- operations --------------------------------------------------

    fn apply(&mut self, op: Op) {
        match op {
            Op::Derive { parent } => {
                let (pctx, at) = self.parent(parent);
                self.derive_from(&pctx, at, 3);
            }
            Op::Clone { ctx } => self.clone_ctx(ctx),
            Op::DropCtx { ctx } => {
                if let Some(i) = Self::pick(self.ctxs.len(), ctx) {
                    drop(self.ctxs.swap_remove(i));
                }
            }
            Op::DropHandle { handle } => self.drop_handle(handle),
            Op::Cancel { handle } => self.cancel(handle),
            Op::CancelWithCause { handle, cause } => {
                if let Some(i) = Self::pick(self.handles.len(), handle) {
                    self.cancel_with(i, cause % 7);
                }
            }
            Op::NewFuture { ctx } => self.new_future(ctx),
            Op::DropFuture { fut } => self.drop_future(fut),
            Op::PollAll => self.poll_all(),
            Op::Repoll { fut } => self.repoll(fut),
            Op::WaitZero { ctx } => self.wait_zero(ctx),
            Op::ScopedDone { ctx, handle, cause } => {
                if let Some(i) = Self::pick(self.ctxs.len(), ctx) {
                    self.scoped_done(i, handle, cause % 8);
                }
            }
            Op::DoneChurn { ctx, count } => {
                if let Some(i) = Self::pick(self.ctxs.len(), ctx) {
                    self.done_churn(i, 1 + count as usize % 48);
                }
            }
            Op::DeriveChurn {
                ctx,
                count,
                pattern,
            } => self.derive_churn(ctx, count, pattern),
            Op::DeriveValue { parent, key } => self.derive_value(parent, key),
            Op::WithoutCancel { parent } => self.without_cancel(parent),
            Op::DeriveDeadline {
                parent,
                when,
                cause,
            } => {
                let (pctx, at) = self.parent(parent);
                self.derive_deadline(&pctx, at, when % 5, cause);
            }
            Op::AfterFunc { ctx, flags } => {
                if let Some(i) = Self::pick(self.ctxs.len(), ctx) {
                    if self.regs.len() < MAX_REGS {
                        self.after_func(i, flags);
                    }
                }
            }
            Op::Merge { primary, other } => self.merge(primary, other),
            Op::Stop { reg, wait } => {
                if let Some(i) = Self::pick(self.regs.len(), reg) {
                    self.stop(i, wait & 1 != 0);
                }
            }
        }
    }
}

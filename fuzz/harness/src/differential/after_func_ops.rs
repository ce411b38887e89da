//! The `after_func` operations: registering (a function that records what
//! it saw, see `registrations.rs`) and `stop` / `stop_wait`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::model::CancelPart;
use super::registrations::{after_func_body, Reg, RegRec, RegState};
use super::world::{fail, World};

impl World<'_> {
    /// `after_func` on arena context `i`.
    pub(super) fn after_func(&mut self, i: usize, flags: u8) {
        let ctx = self.ctxs[i].ctx.clone();
        let at = self.ctxs[i].at;
        let rec = Arc::new(RegRec::default());
        let token = Arc::new(());
        let f = {
            let rec = Arc::downgrade(&rec);
            let probe = Arc::downgrade(&self.probe);
            let token = token.clone();
            let ctx = ctx.clone();
            move || {
                after_func_body(&rec, &ctx, &probe, flags);
                drop(token);
            }
        };
        let af = ctx.after_func(f);
        let state = match (at.cancel, self.model.state(at)) {
            (CancelPart::Root(_), _) => RegState::Never { stops: 0 },
            (CancelPart::Node(_), Some(_)) => RegState::RanAtOnce,
            (CancelPart::Node(n), None) => RegState::Pending(n),
        };
        if state == RegState::RanAtOnce && !rec.finished.load(Ordering::SeqCst) {
            fail!(
                self,
                "after_func on a canceled context returned before its function finished"
            );
        }
        if rec.own.set(af).is_err() {
            unreachable!("a fresh OnceLock");
        }
        self.regs.push(Reg {
            rec,
            token,
            ctx,
            at,
            state,
            checked: false,
        });
    }

    /// `stop()` / `stop_wait()` of registration `i`.
    pub(super) fn stop(&mut self, i: usize, wait: bool) {
        let r = &self.regs[i];
        let af = r.rec.own.get().expect("registered");
        let got = if wait { af.stop_wait() } else { af.stop() };
        let (want, next) = match r.state {
            RegState::Never { stops } => (stops == 0, RegState::Never { stops: stops + 1 }),
            // Only live nodes are pending between ops (see `check_regs`).
            RegState::Pending(_) => (true, RegState::Stopped),
            s @ (RegState::RanAtOnce | RegState::Ran | RegState::Stopped) => (false, s),
        };
        if got != want {
            fail!(
                self,
                "registration #{i} ({:?} on {}): {}() returned {got}, model {want}",
                r.state,
                self.model.path(r.at),
                if wait { "stop_wait" } else { "stop" }
            );
        }
        let ran = matches!(r.state, RegState::RanAtOnce | RegState::Ran);
        if wait && ran && !r.rec.finished.load(Ordering::SeqCst) {
            fail!(
                self,
                "registration #{i}: stop_wait() returned false before the function finished"
            );
        }
        self.regs[i].state = next;
    }
}

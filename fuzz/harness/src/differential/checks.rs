//! The checks: everything observable of ctxtree (contexts, handles, pending
//! and abandoned futures, registrations, causes) compared with the model
//! after every op, and once more at the end.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::task::Poll;

use ctxtree::{Cause, Error, OriginKind};

use super::super::common::poll_with;
use super::causes::CANCELED_ID;
use super::model::CancelPart;
use super::registrations::{RegState, Seen};
use super::values::lookup;
use super::world::{fail, World};

/// `Display` with the time left of every `.WithDeadline([..])` replaced
/// by `*` (it depends on the clock).
fn normalize(shown: &str) -> String {
    const OPEN: &str = ".WithDeadline([";
    let mut out = String::new();
    let mut rest = shown;
    while let Some(i) = rest.find(OPEN) {
        out.push_str(&rest[..i]);
        out.push_str(".WithDeadline(*)");
        rest = &rest[i + OPEN.len()..];
        match rest.find("])") {
            Some(j) => rest = &rest[j + 2..],
            None => {
                out.push_str("<unterminated>");
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

impl World<'_> {
    // -- checks ------------------------------------------------------

    /// Compares everything observable with the model. The semantic
    /// checks run on every context, handle, future and registration; the
    /// formatting checks (`Display`, `Debug`) on one context, handle and
    /// registration per step, rotating, and on all of them when `full`.
    pub(super) fn check(&mut self, full: bool) {
        for i in 0..self.ctxs.len() {
            let fmt = full || i == self.step % self.ctxs.len();
            self.check_ctx(i, fmt);
        }
        for (i, e) in self.handles.iter().enumerate() {
            let want = self.model.nodes[e.node].canceled.is_some();
            if e.handle.is_canceled() != want {
                fail!(self, "handle #{i}: is_canceled() {}, model {want}", !want);
            }
            if full || i == self.step % self.handles.len() {
                let dbg = format!("{:?}", e.handle);
                if dbg != format!("CancelHandle {{ canceled: {want} }}") {
                    fail!(self, "handle #{i}: Debug {dbg:?}");
                }
            }
        }
        // Pending futures of canceled contexts: woken exactly once, then ready.
        let mut i = 0;
        while i < self.futures.len() {
            let at = self.futures[i].at;
            let Some((want, _)) = self.model.state(at) else {
                let woken = self.futures[i].counter.count();
                if woken != 0 {
                    fail!(
                        self,
                        "pending future #{i} of a live context woken {woken} times"
                    );
                }
                i += 1;
                continue;
            };
            let p = &mut self.futures[i];
            let woken = p.counter.count();
            let got = poll_with(&mut p.fut, &p.waker);
            if woken != 1 {
                fail!(
                    self,
                    "pending future #{i} of a canceled context woken {woken} times (want 1)"
                );
            }
            if got != Poll::Ready(want) {
                fail!(
                    self,
                    "woken future #{i} polled {got:?}, want Ready({want:?})"
                );
            }
            drop(self.futures.swap_remove(i));
        }
        for (counter, at) in &self.retired {
            if counter.count() != 0 {
                fail!(
                    self,
                    "an abandoned waiter (dropped future, replaced waker or timed-out \
                     wait) on {} was woken {} times",
                    self.model.path(*at),
                    counter.count()
                );
            }
        }
        // `same()` on neighbours.
        for i in 1..self.ctxs.len() {
            let (a, b) = (&self.ctxs[i - 1], &self.ctxs[i]);
            if a.ctx.same(&b.ctx) != (a.at == b.at) {
                fail!(
                    self,
                    "same() of contexts #{} and #{i} disagrees with the model",
                    i - 1
                );
            }
        }
        self.check_regs(full);
    }

    fn check_ctx(&mut self, i: usize, fmt: bool) {
        let at = self.ctxs[i].at;
        let want = self.model.state(at);
        let ctx = &self.ctxs[i].ctx;
        let err = ctx.err();
        if err != want.map(|s| s.0) {
            fail!(
                self,
                "context #{i} ({}): err {err:?}, model {want:?}",
                self.model.path(at)
            );
        }
        if ctx.is_done() != want.is_some() {
            fail!(
                self,
                "context #{i}: is_done() {}, model {want:?}",
                ctx.is_done()
            );
        }
        let deadline = ctx.deadline();
        let want_deadline = self.model.deadline(at);
        if deadline != want_deadline {
            fail!(
                self,
                "context #{i} ({}): deadline {deadline:?}, model {want_deadline:?} \
                 (t0 {:?})",
                self.model.path(at),
                self.t0
            );
        }
        let values = lookup(ctx);
        let want_values = self.model.values(at);
        if values != want_values {
            fail!(
                self,
                "context #{i} ({}): values of K0..K3 {values:?}, model {want_values:?}",
                self.model.path(at)
            );
        }
        if ctx.value::<u64>().is_some() || ctx.value::<u32>().is_some() {
            fail!(self, "context #{i}: a value of a type never bound");
        }
        let cause = ctx.cause();
        match (cause, want) {
            (None, None) => {}
            (Some(got), Some((_, id))) => self.check_cause(i, &got, id),
            (got, want) => fail!(self, "context #{i}: cause {got:?}, model {want:?}"),
        }
        let origin = self.ctxs[i].ctx.origin().map(|o| (o.kind(), o.depth()));
        let want_origin = self.model.origin(at);
        if !self.model.origin_matches(at, origin) {
            fail!(
                self,
                "context #{i}: origin {origin:?}, model {want_origin:?}"
            );
        }
        if !fmt {
            return;
        }
        let ctx = &self.ctxs[i].ctx;
        let path = self.model.path(at);
        let shown = ctx.to_string();
        if normalize(&shown) != path {
            fail!(self, "context #{i}: Display {shown:?}, model {path:?}");
        }
        let dbg = format!("{ctx:?}");
        let want_dbg = format!(
            "Context {{ path: {path}, err: {:?}, origin: {:?} }}",
            want.map(|s| s.0),
            ctx.origin().map(|o| normalize(&o.to_string()))
        );
        if normalize(&dbg) != want_dbg {
            fail!(self, "context #{i}: Debug {dbg:?}, want {want_dbg:?}");
        }
    }

    /// The registrations against the model: a pending one whose node is
    /// now canceled has run (once, synchronously, after every probe
    /// context the op canceled was done), the others have not run since.
    fn check_regs(&mut self, full: bool) {
        for i in 0..self.regs.len() {
            if let RegState::Pending(n) = self.regs[i].state {
                if self.model.nodes[n].canceled.is_some() {
                    self.regs[i].state = RegState::Ran;
                }
            }
            let r = &self.regs[i];
            let ran = matches!(r.state, RegState::RanAtOnce | RegState::Ran);
            let runs = r.rec.runs.load(Ordering::SeqCst);
            if runs != usize::from(ran) {
                fail!(
                    self,
                    "registration #{i} ({:?} on {}): its function ran {runs} times",
                    r.state,
                    self.model.path(r.at)
                );
            }
            if r.rec.finished.load(Ordering::SeqCst) != ran {
                fail!(
                    self,
                    "registration #{i}: finished flag disagrees with {runs} runs"
                );
            }
            // The closure holds one count of `token` until it runs or is
            // dropped (stopped, or never registered).
            let alive = Arc::strong_count(&r.token) == 2;
            let want_alive = matches!(r.state, RegState::Pending(_));
            if alive != want_alive {
                fail!(
                    self,
                    "registration #{i} ({:?}): its function is {} (want {})",
                    r.state,
                    if alive { "still alive" } else { "dropped" },
                    if want_alive { "alive" } else { "dropped" }
                );
            }
            if ran && !r.checked {
                self.check_seen(i);
                self.regs[i].checked = true;
            }
            let r = &self.regs[i];
            if full || i == self.step % self.regs.len() {
                let af = r.rec.own.get().expect("registered");
                let state = match r.state {
                    RegState::Never { .. } => "never canceled",
                    RegState::Pending(_) => "registered",
                    RegState::RanAtOnce => "ran at registration",
                    RegState::Ran => "started",
                    RegState::Stopped => "stopped",
                };
                let dbg = format!("{af:?}");
                let want = format!("AfterFunc {{ state: {state:?} }}");
                if dbg != want {
                    fail!(self, "registration #{i}: Debug {dbg:?}, want {want:?}");
                }
            }
        }
    }

    /// What the function of registration `i` saw when it ran.
    fn check_seen(&self, i: usize) {
        let r = &self.regs[i];
        let guard = r.rec.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(seen) = guard.as_ref() else {
            fail!(self, "registration #{i} ran but recorded nothing")
        };
        let want = self.model.state(r.at).map(|s| s.0);
        if seen.err != want {
            fail!(
                self,
                "registration #{i}: its function saw err {:?}, model {want:?}",
                seen.err
            );
        }
        if seen.cause != r.ctx.cause() {
            fail!(
                self,
                "registration #{i}: its function saw cause {:?}, the context has {:?}",
                seen.cause,
                r.ctx.cause()
            );
        }
        if r.state == RegState::Ran {
            if seen.probe_done.len() != self.probe_at.len() {
                fail!(self, "registration #{i}: the probe changed under it");
            }
            for (j, (&done, &at)) in seen.probe_done.iter().zip(&self.probe_at).enumerate() {
                // (A context a merge registration cancels is canceled by a
                // callback of the op, which may run after this one.)
                if !done && self.model.state(at).is_some() && !self.model.via_merge(at) {
                    fail!(
                        self,
                        "registration #{i} on {} ran before context #{j} ({}), canceled \
                         by the same op, was done",
                        self.model.path(r.at),
                        self.model.path(at)
                    );
                }
            }
        }
        self.check_seen_inside(i, seen, want);
    }

    /// What the function of registration `i` did from inside: a nested
    /// `after_func`, a derived child, `stop` of its own registration.
    fn check_seen_inside(&self, i: usize, seen: &Seen, want: Option<Error>) {
        // Inside a function, a nested registration on a canceled context
        // is deferred until the function returns (F5), then runs before
        // the op returns.
        if let Some((nested, runs)) = &seen.nested {
            if *nested != (0, false, false) {
                fail!(
                    self,
                    "registration #{i}: a nested after_func from inside the function gave \
                     (runs, stop, stop_wait) {nested:?}, want (0, false, false)"
                );
            }
            let runs = runs.load(Ordering::SeqCst);
            if runs != 1 {
                fail!(
                    self,
                    "registration #{i}: its nested after_func ran {runs} times by the \
                     end of the op, want 1"
                );
            }
        }
        if let Some((err, same_cause, done)) = seen.child {
            if err != want || !same_cause || !done {
                fail!(
                    self,
                    "registration #{i}: a child derived inside the function: err {err:?}, \
                     same cause {same_cause}, is_done {done}; want {want:?}, true, true"
                );
            }
        }
        if let Some(own) = seen.own_stop {
            if own != (false, false) {
                fail!(
                    self,
                    "registration #{i}: stop/stop_wait from inside its own function gave \
                     {own:?}, want (false, false)"
                );
            }
        }
    }

    /// `got` must be the cause with id `want`: equal to the `Cause`
    /// created for it (or a `CustomError` with its number) and, after the
    /// first sighting, equal to the first `Cause` seen for it (the same
    /// allocation). The first sighting also checks how it formats and
    /// downcasts.
    fn check_cause(&mut self, i: usize, got: &Cause, want: usize) {
        if !self.causes[want].matches(got) {
            let found = self.causes.iter().position(|r| r.matches(got));
            fail!(
                self,
                "context #{i}: cause {got:?} is cause id {found:?}, model says id {want} ({:?})",
                self.causes[want].display
            );
        }
        if let Some(first) = &self.causes[want].seen {
            if first != got {
                fail!(
                    self,
                    "context #{i}: cause id {want} is a different allocation than before"
                );
            }
            return;
        }
        let rec = &self.causes[want];
        if got.to_string() != rec.display {
            fail!(
                self,
                "context #{i}: cause Display {:?}, want {:?}",
                got.to_string(),
                rec.display
            );
        }
        if got.as_context_error() != rec.context_error {
            fail!(
                self,
                "context #{i}: cause as_context_error {:?}, want {:?}",
                got.as_context_error(),
                rec.context_error
            );
        }
        if got.downcast_ref::<Error>().copied() != rec.context_error {
            fail!(
                self,
                "context #{i}: cause downcast_ref::<Error>() disagrees"
            );
        }
        if got.as_error().to_string() != rec.display {
            fail!(self, "context #{i}: cause as_error() Display disagrees");
        }
        self.causes[want].seen = Some(got.clone());
    }

    /// Drops every handle (each cancels, and the registrations are
    /// checked after each), checks that everything is canceled, every
    /// pending future was woken and every registration not stopped ran,
    /// then drops the rest.
    pub(super) fn finish(mut self) {
        self.step = self.ops.len();
        while let Some(e) = self.handles.pop() {
            self.refresh_probe(false);
            drop(e.handle);
            let dropped = OriginKind::HandleDropped;
            self.model
                .cancel(e.node, Error::Canceled, CANCELED_ID, dropped);
            self.check_regs(false);
        }
        self.check(true);
        for (i, e) in self.ctxs.iter().enumerate() {
            if matches!(e.at.cancel, CancelPart::Node(_)) && !e.ctx.is_done() {
                fail!(self, "context #{i} is live after every handle was dropped");
            }
        }
        for p in &self.futures {
            if matches!(p.at.cancel, CancelPart::Node(_)) {
                fail!(self, "a future of a canceled context is still pending");
            }
        }
        for (i, r) in self.regs.iter().enumerate() {
            if matches!(r.state, RegState::Pending(_)) {
                fail!(
                    self,
                    "registration #{i} is pending after every handle was dropped"
                );
            }
        }
        self.futures.clear();
        self.probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.regs.clear();
        self.ctxs.clear();
    }
}

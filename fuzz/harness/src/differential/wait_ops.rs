//! The operations that wait: `done()` and `done_owned()` futures (polled,
//! re-polled, dropped, churned, and across a cancel) and `wait_timeout`.

use std::task::Poll;
use std::time::Duration;

use ctxtree::{Error, OriginKind};

use super::super::common::{counting_waker, poll_with};
use super::causes::CANCELED_ID;
use super::world::{fail, Pending, World, MAX_FUTURES};

impl World<'_> {
    /// `Op::NewFuture`: `done_owned()`, polled once, kept while pending.
    pub(super) fn new_future(&mut self, ctx: u8) {
        if let Some(i) = Self::pick(self.ctxs.len(), ctx) {
            let at = self.ctxs[i].at;
            let mut fut = self.ctxs[i].ctx.done_owned();
            if !fut.context().same(&self.ctxs[i].ctx) {
                fail!(self, "done_owned().context() is another context");
            }
            let (counter, waker) = counting_waker();
            let got = poll_with(&mut fut, &waker);
            match (got, self.model.state(at)) {
                (Poll::Ready(e), Some((want, _))) if e == want => {}
                (Poll::Pending, None) => {
                    let pending = Pending {
                        fut,
                        counter,
                        waker,
                        at,
                    };
                    if self.futures.len() < MAX_FUTURES {
                        self.futures.push(pending);
                    } else {
                        self.retired.push((pending.counter.clone(), at));
                    }
                }
                (got, want) => fail!(
                    self,
                    "first poll of done_owned() gave {got:?}, model state {want:?}"
                ),
            }
        }
    }

    /// `Op::DropFuture`: drops a pending future (abandons its waiter).
    pub(super) fn drop_future(&mut self, fut: u8) {
        if let Some(i) = Self::pick(self.futures.len(), fut) {
            let p = self.futures.swap_remove(i);
            self.retired.push((p.counter.clone(), p.at));
            drop(p);
        }
    }

    /// `Op::PollAll`: polls every pending future with its own waker.
    pub(super) fn poll_all(&mut self) {
        for i in 0..self.futures.len() {
            let p = &mut self.futures[i];
            let got = poll_with(&mut p.fut, &p.waker);
            if got.is_ready() {
                fail!(
                    self,
                    "pending future #{i} became ready without a cancel: {got:?}"
                );
            }
        }
    }

    /// `Op::Repoll`: polls a pending future with a new waker.
    pub(super) fn repoll(&mut self, fut: u8) {
        if let Some(i) = Self::pick(self.futures.len(), fut) {
            let (counter, waker) = counting_waker();
            let p = &mut self.futures[i];
            let got = poll_with(&mut p.fut, &waker);
            let old = std::mem::replace(&mut p.counter, counter);
            p.waker = waker;
            let at = p.at;
            self.retired.push((old, at));
            if got.is_ready() {
                fail!(self, "re-polled pending future #{i} became ready: {got:?}");
            }
        }
    }

    /// `Op::WaitZero`: `wait_timeout(Duration::ZERO)`.
    pub(super) fn wait_zero(&mut self, ctx: u8) {
        if let Some(i) = Self::pick(self.ctxs.len(), ctx) {
            let got = self.ctxs[i].ctx.wait_timeout(Duration::ZERO);
            let want = self.model.state(self.ctxs[i].at).map(|s| s.0);
            if got != want {
                fail!(self, "wait_timeout(0) gave {got:?}, model err {want:?}");
            }
        }
    }

    /// A borrowed `done()` future across a cancel.
    pub(super) fn scoped_done(&mut self, i: usize, handle: u8, kind: u8) {
        let ctx = self.ctxs[i].ctx.clone();
        let at = self.ctxs[i].at;
        let (counter, waker) = counting_waker();
        let mut fut = ctx.done();
        let before = self.model.state(at).map(|s| s.0);
        let got = poll_with(&mut fut, &waker);
        match (got, before) {
            (Poll::Ready(e), Some(want)) if e == want => return,
            (Poll::Pending, None) => {}
            (got, want) => fail!(
                self,
                "first poll of done() gave {got:?}, model err {want:?}"
            ),
        }
        if let Some(h) = Self::pick(self.handles.len(), handle) {
            if kind == 7 {
                self.handles[h].handle.cancel();
                let n = self.handles[h].node;
                self.model
                    .cancel(n, Error::Canceled, CANCELED_ID, OriginKind::Cancel);
            } else {
                self.cancel_with(h, kind);
            }
        }
        let after = self.model.state(at).map(|s| s.0);
        let woken = counter.count();
        match after {
            Some(want) => {
                if woken != 1 {
                    fail!(
                        self,
                        "done() waker woken {woken} times by the cancel (want 1)"
                    );
                }
                let got = poll_with(&mut fut, &waker);
                if got != Poll::Ready(want) {
                    fail!(self, "woken done() polled {got:?}, want Ready({want:?})");
                }
            }
            None => {
                if woken != 0 {
                    fail!(self, "done() of a live context woken {woken} times");
                }
                let got = poll_with(&mut fut, &waker);
                if got.is_ready() {
                    fail!(self, "done() of a live context polled {got:?}");
                }
                drop(fut);
                self.retired.push((counter, at));
            }
        }
    }

    pub(super) fn done_churn(&mut self, i: usize, count: usize) {
        let at = self.ctxs[i].at;
        let want = self.model.state(at).map(|s| s.0);
        let (counter, waker) = counting_waker();
        for n in 0..count {
            let got = if n % 2 == 0 {
                poll_with(&mut self.ctxs[i].ctx.done(), &waker)
            } else {
                poll_with(&mut self.ctxs[i].ctx.done_owned(), &waker)
            };
            let ok = match want {
                Some(e) => got == Poll::Ready(e),
                None => got.is_pending(),
            };
            if !ok {
                fail!(
                    self,
                    "churned future #{n} polled {got:?}, model err {want:?}"
                );
            }
        }
        self.retired.push((counter, at));
    }
}

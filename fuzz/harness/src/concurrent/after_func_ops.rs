//! A racing thread's `after_func` registrations and their stops, and the
//! registered function itself.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, Weak};
use std::thread;

use ctxtree::Context;

use super::state::{FuncRec, Local, Reg, Shared, Target};

/// The registered function: counts, checks that its context (and a
/// shared node's whole subtree) is done, spins, then marks itself
/// finished.
fn after_func_body(rec: &FuncRec, ctx: &Context, sh: &Weak<Shared>, k: Option<usize>, spins: u32) {
    let mut problem = None;
    if rec.runs.fetch_add(1, Ordering::SeqCst) != 0 {
        problem = Some("the function ran twice".to_string());
    }
    if !ctx.is_done() || ctx.err().is_none() {
        problem = Some("the function ran while its context was live".to_string());
    }
    if let (Some(k), Some(sh)) = (k, sh.upgrade()) {
        for &d in &sh.subtree[k] {
            if !sh.ctxs[d].is_done() {
                problem = Some(format!(
                    "the function of node {k} ran while descendant node {d} was live"
                ));
            }
        }
    }
    for i in 0..spins {
        if i % 64 == 63 {
            thread::yield_now();
        }
        std::hint::spin_loop();
    }
    if problem.is_some() {
        *rec.problem.lock().unwrap_or_else(PoisonError::into_inner) = problem;
    }
    rec.finished.store(true, Ordering::SeqCst);
}

/// `Op::AfterFunc`: `after_func` on a shared node, a derived child or a
/// `without_cancel()` context.
pub(super) fn after_func(sh: &Arc<Shared>, local: &mut Local, n: usize, a: u8, b: u8) {
    let (ctx, target) = if b & 1 != 0 && !local.derived.is_empty() {
        let j = a as usize % local.derived.len();
        (local.derived[j].ctx.clone(), Target::Local(j))
    } else if b & 2 != 0 {
        let k = a as usize % n;
        (sh.ctxs[k].without_cancel(), Target::Detached(k))
    } else {
        let k = a as usize % n;
        (sh.ctxs[k].clone(), Target::Shared(k))
    };
    let was_done = ctx.is_done();
    let rec = Arc::new(FuncRec::default());
    let f = {
        let rec = rec.clone();
        let ctx = ctx.clone();
        let sh = Arc::downgrade(sh);
        let k = match target {
            Target::Shared(k) => Some(k),
            _ => None,
        };
        let spins = u32::from(b >> 2) * 16;
        move || after_func_body(&rec, &ctx, &sh, k, spins)
    };
    let af = ctx.after_func(f);
    let runs = rec.runs.load(Ordering::SeqCst);
    if let Target::Detached(_) = target {
        assert_eq!(runs, 0, "after_func on a never-canceled context ran");
    } else if was_done {
        assert!(
            runs == 1 && rec.finished.load(Ordering::SeqCst),
            "after_func on a canceled context returned before its function \
             ran ({runs} runs)"
        );
    }
    local.regs.push(Reg {
        af,
        rec,
        ctx,
        target,
        stopped: false,
        stops: 0,
    });
}

/// `Op::Stop`: `stop()` or `stop_wait()` of one of this thread's
/// registrations.
pub(super) fn stop(local: &mut Local, j: u8, b: u8) {
    if local.regs.is_empty() {
        return;
    }
    let j = j as usize % local.regs.len();
    let r = &mut local.regs[j];
    let wait = b & 1 != 0;
    let got = if wait { r.af.stop_wait() } else { r.af.stop() };
    let runs = r.rec.runs.load(Ordering::SeqCst);
    let finished = r.rec.finished.load(Ordering::SeqCst);
    if let Target::Detached(_) = r.target {
        assert_eq!(
            got,
            r.stops == 0,
            "stop #{} of a never-canceled registration",
            r.stops
        );
        assert_eq!(runs, 0);
    } else if got {
        assert!(!r.stopped, "stop() returned true twice");
        assert_eq!(runs, 0, "stop() returned true but the function ran");
        r.stopped = true;
    } else if !r.stopped {
        // It ran or is running: its context is canceled.
        assert!(
            r.ctx.is_done(),
            "stop() false on a live context never stopped ({:?})",
            r.target
        );
        if wait {
            assert!(
                finished && runs == 1,
                "stop_wait() returned false before the function finished \
                 (runs {runs}, finished {finished}, {:?})",
                r.target
            );
        }
    }
    r.stops += 1;
}

//! A racing thread: starts with the others, then runs its operations.

use std::sync::Arc;
use std::thread;

use super::after_func_ops::{after_func, stop};
use super::decode::Op;
use super::group_ops::group;
use super::state::{Local, Shared};
use super::tree_ops::{
    cancel, cancel_local, cancel_with_cause, derive, derive_churn, derive_local, drop_handle, merge,
};
use super::wait_ops::{done_churn, drop_future, new_future, poll_futures, read, repoll, wait};

/// One racing thread of an input: waits for the others at the start, then
/// applies its operations in order; hands back what it did.
pub(super) fn thread_main(sh: &Arc<Shared>, t: usize, ops: &[Op]) -> Local {
    let mut local = Local::default();
    let mut seen_done = vec![false; sh.ctxs.len()];
    let n = sh.ctxs.len();
    sh.start();
    for (i, &op) in ops.iter().enumerate() {
        match op {
            Op::Cancel(k) => cancel(sh, &mut local, n, k),
            Op::CancelWithCause(k, c) => cancel_with_cause(sh, &mut local, n, t, i, k, c),
            Op::DropHandle(k) => drop_handle(sh, &mut local, n, k),
            Op::Derive(k) => derive(sh, &mut local, n, k),
            Op::DeriveLocal(j) => derive_local(&mut local, j),
            Op::CancelLocal(j, c) => cancel_local(sh, &mut local, t, i, j, c),
            Op::Read(k) => read(sh, &mut seen_done, n, k),
            Op::NewFuture(k) => new_future(sh, &mut local, n, k),
            Op::DropFuture(j) => drop_future(&mut local, j),
            Op::PollFutures => poll_futures(&mut local),
            Op::Repoll(j) => repoll(&mut local, j),
            Op::Wait(k, b) => wait(sh, n, k, b),
            Op::DeriveChurn(k, c) => derive_churn(sh, &mut local, n, k, c),
            Op::DoneChurn(k, c) => done_churn(sh, &mut local, n, k, c),
            Op::Yield => thread::yield_now(),
            Op::AfterFunc(a, b) => after_func(sh, &mut local, n, a, b),
            Op::Stop(j, b) => stop(&mut local, j, b),
            Op::Merge(a, b) => merge(sh, &mut local, n, a, b),
            Op::Group(a, b) => group(sh, n, a, b),
        }
    }
    local
}

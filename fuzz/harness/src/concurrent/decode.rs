//! The input language of the concurrent target and its decoder: a prebuilt
//! tree, blocking waiters and each racing thread's operations.

use super::super::common::Reader;

/// At most this many operations are decoded from one input (all threads).
pub const MAX_OPS: usize = 64;
const MAX_NODES: usize = 8;

/// One decoded thread operation; node and slot operands are raw bytes
/// resolved against the current sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `cancel()` of a shared node's handle.
    Cancel(u8),
    /// `cancel_with_cause` of a shared node's handle (cause `% 5`).
    CancelWithCause(u8, u8),
    /// Take a shared node's handle out of its slot and drop it.
    DropHandle(u8),
    /// `with_cancel` on a shared node; the child stays with the thread.
    Derive(u8),
    /// `with_cancel` on one of this thread's derived children.
    DeriveLocal(u8),
    /// Cancel (cause `% 5`) or, with bit 7 set, drop the handle of one of
    /// this thread's derived children.
    CancelLocal(u8, u8),
    /// Read err / cause / is_done / done() of a shared node consistently.
    Read(u8),
    /// `done_owned()` on a shared node, polled once, kept while pending.
    NewFuture(u8),
    /// Drop one of this thread's pending futures.
    DropFuture(u8),
    /// Poll this thread's pending futures.
    PollFutures,
    /// Poll a pending future with a new waker.
    Repoll(u8),
    /// `wait_timeout(0)` (or 50 µs with bit 0 of the second byte).
    Wait(u8, u8),
    /// Derive and drop `1 + n % 80` children of a shared node (keeping
    /// every 16th): inserts, self-deletes and sweeps against cancel walks.
    DeriveChurn(u8, u8),
    /// Create, poll and drop `1 + n % 48` `done()` futures on a shared
    /// node: waiter collections against the cancel's claim.
    DoneChurn(u8, u8),
    /// `thread::yield_now()`.
    Yield,
    /// `after_func` on a shared node, or (bit 0 of the second byte, if
    /// the thread has derived children) on one of them, or (bit 1) on
    /// `without_cancel()` of a shared node (nothing registered). The
    /// function counts its runs, checks its context (and a shared node's
    /// subtree) is done, spins `(b >> 2) * 16` times, then sets a
    /// `finished` flag.
    AfterFunc(u8, u8),
    /// `stop()` (bit 0 of the second byte clear) or `stop_wait()` of one
    /// of this thread's registrations.
    Stop(u8, u8),
    /// `merge` of two shared nodes (the first the primary); the merged
    /// child stays with the thread.
    Merge(u8, u8),
    /// `group::scope` on a shared node with `1 + b % 3` tasks, some failing
    /// (`group_ops.rs`).
    Group(u8, u8),
}

/// A decoded input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// For each shared node: background, todo or an earlier node.
    pub parents: Vec<Parent>,
    /// Shared nodes on which a dedicated thread blocks in `wait_timeout`.
    pub waiters: Vec<usize>,
    /// The operations of each racing thread (2–4 threads).
    pub threads: Vec<Vec<Op>>,
}

/// The parent of a prebuilt shared node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parent {
    Background,
    Todo,
    Node(usize),
}

/// Decodes an input: byte 0 picks 2–4 threads, byte 1 the number of
/// shared nodes (1–8), one byte per node its parent, one byte the number
/// of blocking waiters (0–2) and one byte each their node; then
/// operations of three bytes `[thread/op, a, b]` (thread `t % threads`,
/// operation `(t >> 2) % 21`: codes 0–15 are the original table, so older
/// inputs, whose `t` bytes are all below 64, decode as they always did).
pub fn decode(data: &[u8]) -> Plan {
    let mut r = Reader::new(data);
    let threads = 2 + r.byte() as usize % 3;
    let nodes = 1 + r.byte() as usize % MAX_NODES;
    let parents = (0..nodes)
        .map(|k| match r.byte() as usize % (k + 2) {
            0 => Parent::Background,
            1 => Parent::Todo,
            m => Parent::Node(m - 2),
        })
        .collect();
    let waiters = (0..r.byte() % 3)
        .map(|_| r.byte() as usize % nodes)
        .collect();
    let mut plan = Plan {
        parents,
        waiters,
        threads: vec![Vec::new(); threads],
    };
    let mut total = 0;
    while total < MAX_OPS {
        let Some(t) = r.next() else { break };
        let (a, b) = (r.byte(), r.byte());
        let op = match (t >> 2) % 22 {
            0 => Op::Cancel(a),
            1 => Op::CancelWithCause(a, b),
            2 => Op::DropHandle(a),
            3 | 4 => Op::Derive(a),
            5 => Op::DeriveLocal(a),
            6 => Op::CancelLocal(a, b),
            7 => Op::Read(a),
            8 => Op::NewFuture(a),
            9 => Op::DropFuture(a),
            10 => Op::PollFutures,
            11 => Op::Repoll(a),
            12 => Op::Wait(a, b),
            13 => Op::DeriveChurn(a, b),
            14 => Op::DoneChurn(a, b),
            15 => Op::Yield,
            16 | 17 => Op::AfterFunc(a, b),
            18 | 19 => Op::Stop(a, b),
            20 => Op::Merge(a, b),
            _ => Op::Group(a, b),
        };
        plan.threads[t as usize % threads].push(op);
        total += 1;
    }
    plan
}

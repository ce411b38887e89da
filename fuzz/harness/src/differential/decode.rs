//! The op language of the differential target and its decoder: every byte
//! string decodes to a valid program.

use super::super::common::Reader;

/// At most this many operations are decoded from one input.
pub const MAX_OPS: usize = 64;
/// How many op codes there are: the first byte of an op is taken modulo
/// this. Codes 0–15 are the original table (older corpus inputs, whose
/// op bytes are all below 16, decode as they always did); new ops are
/// appended after them.
const OP_CODES: u8 = 24;

/// One decoded operation. Operands are raw bytes, resolved against the
/// arena's current sizes when the operation runs (`byte % len`), so every
/// input decodes to a valid program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `with_cancel` on background (`parent % (n+2) == 0`), todo (`1`) or
    /// arena context `parent % (n+2) - 2`; the child and handle join the arena.
    Derive { parent: u8 },
    /// Clone an arena context.
    Clone { ctx: u8 },
    /// Drop an arena context (does not cancel anything).
    DropCtx { ctx: u8 },
    /// Drop a cancel handle (cancels its context).
    DropHandle { handle: u8 },
    /// `CancelHandle::cancel`.
    Cancel { handle: u8 },
    /// `CancelHandle::cancel_with_cause` with cause kind `cause % 7`
    /// (see [`CAUSE_KINDS`]).
    CancelWithCause { handle: u8, cause: u8 },
    /// `done_owned()` on a context, polled once with a counting waker and
    /// kept while pending.
    NewFuture { ctx: u8 },
    /// Drop a pending future (abandons its waiter).
    DropFuture { fut: u8 },
    /// Poll every pending future with its own waker.
    PollAll,
    /// Poll a pending future with a new waker (re-registers).
    Repoll { fut: u8 },
    /// `wait_timeout(Duration::ZERO)`.
    WaitZero { ctx: u8 },
    /// A borrowed `done()` future on a context, polled, then a cancel
    /// (cause kind `cause % 8`, 7 = plain cancel) of a handle, then the
    /// wake-up and the second poll checked.
    ScopedDone { ctx: u8, handle: u8, cause: u8 },
    /// Create, poll and drop `1 + count % 48` futures on a context
    /// (alternating `done()` / `done_owned()`): abandoned-waiter collection.
    DoneChurn { ctx: u8, count: u8 },
    /// Derive `1 + count % 96` children of a context; child `i` keeps
    /// (bits `2i % 8` of `pattern`): 0 nothing, 1 the context, 2 the
    /// handle, 3 both, while the arena has room: children-list sweeps.
    DeriveChurn { ctx: u8, count: u8, pattern: u8 },
    /// `with_value(K{key % 4}(fresh u32))` on background, todo or an
    /// arena context (`parent` as in [`Op::Derive`]).
    DeriveValue { parent: u8, key: u8 },
    /// `without_cancel()` of background, todo or an arena context.
    WithoutCancel { parent: u8 },
    /// `with_deadline` (`cause` bit 7 clear) or `with_deadline_cause`
    /// (cause kind `cause % 7`) at a fixed instant: `when % 5 == 0` the
    /// start of the run (already past: canceled at once with
    /// `DeadlineExceeded`), else one hour and `when % 5` seconds later
    /// (never fires during a run; equal and earlier parent deadlines
    /// give plain cancel children).
    DeriveDeadline { parent: u8, when: u8, cause: u8 },
    /// `after_func` on an arena context. The function counts its runs,
    /// records `err`, `cause` and which arena contexts were done, and by
    /// the bits of `flags`: 1 registers a nested `after_func` on its own
    /// context (must run once the function returns, F5), 2 derives a child of it (must be born
    /// canceled with its cause), 4 calls `stop` and `stop_wait` on its
    /// own registration (must return false at once, not deadlock).
    AfterFunc { ctx: u8, flags: u8 },
    /// `stop()` (bit 0 of `wait` clear) or `stop_wait()` of a registration.
    Stop { reg: u8, wait: u8 },
    /// `primary.merge(&other)`, each background, todo or an arena context
    /// (as `parent` in [`Op::Derive`]); the merged context and its handle
    /// join the arena.
    Merge { primary: u8, other: u8 },
}

/// The cause kinds of [`Op::CancelWithCause`], by `cause % 7`.
pub const CAUSE_KINDS: [&str; 7] = [
    "Error::Canceled (inline)",
    "Error::DeadlineExceeded (inline)",
    "shared Cause::msg(\"cause A\")",
    "shared Cause::msg(\"cause B\")",
    "fresh Cause::msg",
    "fresh Cause::from_boxed(Box::new(Error::DeadlineExceeded))",
    "fresh CustomError passed by value",
];

/// Decodes `data` into at most [`MAX_OPS`] operations. The first byte of
/// each operation selects it (`byte % 24`), the following bytes are its
/// operands.
pub fn decode(data: &[u8]) -> Vec<Op> {
    let mut r = Reader::new(data);
    let mut ops = Vec::new();
    while ops.len() < MAX_OPS {
        let Some(code) = r.next() else { break };
        let op = match code % OP_CODES {
            0..=2 => Op::Derive { parent: r.byte() },
            3 => Op::Clone { ctx: r.byte() },
            4 => Op::DropCtx { ctx: r.byte() },
            5 => Op::DropHandle { handle: r.byte() },
            6 => Op::Cancel { handle: r.byte() },
            7 => Op::CancelWithCause {
                handle: r.byte(),
                cause: r.byte(),
            },
            8 => Op::NewFuture { ctx: r.byte() },
            9 => Op::DropFuture { fut: r.byte() },
            10 => Op::PollAll,
            11 => Op::Repoll { fut: r.byte() },
            12 => Op::WaitZero { ctx: r.byte() },
            13 => Op::ScopedDone {
                ctx: r.byte(),
                handle: r.byte(),
                cause: r.byte(),
            },
            14 => Op::DoneChurn {
                ctx: r.byte(),
                count: r.byte(),
            },
            15 => Op::DeriveChurn {
                ctx: r.byte(),
                count: r.byte(),
                pattern: r.byte(),
            },
            16 | 17 => Op::DeriveValue {
                parent: r.byte(),
                key: r.byte(),
            },
            18 => Op::WithoutCancel { parent: r.byte() },
            19 => Op::DeriveDeadline {
                parent: r.byte(),
                when: r.byte(),
                cause: r.byte(),
            },
            20 | 21 => Op::AfterFunc {
                ctx: r.byte(),
                flags: r.byte(),
            },
            22 => Op::Stop {
                reg: r.byte(),
                wait: r.byte(),
            },
            _ => Op::Merge {
                primary: r.byte(),
                other: r.byte(),
            },
        };
        ops.push(op);
    }
    ops
}

//! Fuzz harnesses for ctxtree, shared by the cargo-fuzz targets in
//! `fuzz/fuzz_targets/` and by the stable replay test `tests/fuzz_replay.rs`
//! (which includes this very file with `#[path]`, so it must stay one file
//! that depends on nothing but `ctxtree` and `std`).
//!
//! - [`differential::run`] decodes the input into up to 64 single-threaded
//!   operations on a growing arena of contexts (cancel, deadline, value and
//!   `without_cancel` children), cancel handles, pending `done()` futures and
//!   `after_func` registrations, applies each to ctxtree and to a plain
//!   reference model of Go's rules, and compares everything observable after
//!   every operation.
//! - [`concurrent::run`] decodes a small prebuilt tree, 2–4 racing threads
//!   with up to 64 operations between them (cancels, derivations, futures,
//!   `after_func` registrations and their stops) and up to two blocking
//!   waiters, runs them from a common barrier and checks Go's invariants
//!   during the race and after join.
//!
//! Inputs are decoded by hand (no `arbitrary`): every byte string is a valid
//! input, bytes past the end read as 0. Any mismatch panics with the decoded
//! operations in the message.

#![forbid(unsafe_code)]

/// Decoding and waking helpers used by both harnesses.
mod common {
    use std::error::Error as StdError;
    use std::fmt;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context as TaskContext, Poll, Wake, Waker};

    /// Reads an input byte by byte; past the end every byte is 0.
    pub struct Reader<'a> {
        data: &'a [u8],
        pos: usize,
    }

    impl<'a> Reader<'a> {
        pub fn new(data: &'a [u8]) -> Reader<'a> {
            Reader { data, pos: 0 }
        }

        /// The next byte, or `None` at the end.
        pub fn next(&mut self) -> Option<u8> {
            let b = self.data.get(self.pos).copied();
            self.pos += 1;
            b
        }

        /// The next byte, 0 past the end.
        pub fn byte(&mut self) -> u8 {
            self.next().unwrap_or(0)
        }
    }

    /// A waker that counts its wake-ups.
    pub struct CountingWaker(AtomicUsize);

    impl CountingWaker {
        pub fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A fresh counting waker: the counter and a `Waker` that bumps it.
    pub fn counting_waker() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        (counter, waker)
    }

    pub fn poll_with<F: Future + Unpin>(fut: &mut F, waker: &Waker) -> Poll<F::Output> {
        Pin::new(fut).poll(&mut TaskContext::from_waker(waker))
    }

    /// A custom cause error, passed to `cancel_with_cause` by value (so
    /// ctxtree boxes it itself); identified by its number.
    #[derive(Debug)]
    pub struct CustomError(pub u32);

    impl fmt::Display for CustomError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "custom error {}", self.0)
        }
    }

    impl StdError for CustomError {}
}

/// The single-threaded differential target: ctxtree against a reference model.
pub mod differential {
    use std::any::type_name;
    use std::fmt::Write as _;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
    use std::task::{Poll, Waker};
    use std::time::{Duration, Instant};

    use ctxtree::{AfterFunc, CancelHandle, Cause, Context, DoneOwned, Error};

    use super::common::{counting_waker, poll_with, CountingWaker, CustomError, Reader};

    /// At most this many operations are decoded from one input.
    pub const MAX_OPS: usize = 64;
    const MAX_CTXS: usize = 48;
    const MAX_HANDLES: usize = 48;
    const MAX_FUTURES: usize = 16;
    const MAX_REGS: usize = 32;
    /// How many op codes there are: the first byte of an op is taken modulo
    /// this. Codes 0–15 are the original table (older corpus inputs, whose
    /// op bytes are all below 16, decode as they always did); new ops are
    /// appended after them.
    const OP_CODES: u8 = 23;

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
    /// each operation selects it (`byte % 23`), the following bytes are its
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
                _ => Op::Stop {
                    reg: r.byte(),
                    wait: r.byte(),
                },
            };
            ops.push(op);
        }
        ops
    }

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

    // ----------------------------------------------------------------------
    // Value keys: private types, as Go's unexported key types. All four hold
    // a `u32` (same layout, different keys).

    #[derive(Debug)]
    struct K0(u32);
    #[derive(Debug)]
    struct K1(u32);
    #[derive(Debug)]
    struct K2(u32);
    #[derive(Debug)]
    struct K3(u32);

    const KEYS: usize = 4;

    fn key_name(key: usize) -> &'static str {
        match key {
            0 => type_name::<K0>(),
            1 => type_name::<K1>(),
            2 => type_name::<K2>(),
            _ => type_name::<K3>(),
        }
    }

    fn bind(ctx: &Context, key: usize, v: u32) -> Context {
        match key {
            0 => ctx.with_value(K0(v)),
            1 => ctx.with_value(K1(v)),
            2 => ctx.with_value(K2(v)),
            _ => ctx.with_value(K3(v)),
        }
    }

    /// What `value::<K0..K3>()` returns on `ctx`.
    fn lookup(ctx: &Context) -> [Option<u32>; KEYS] {
        [
            ctx.value::<K0>().map(|k| k.0),
            ctx.value::<K1>().map(|k| k.0),
            ctx.value::<K2>().map(|k| k.0),
            ctx.value::<K3>().map(|k| k.0),
        ]
    }

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

    // ----------------------------------------------------------------------
    // The reference model: a plain tree with Go's rules, and a plain chain
    // of value layers.

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum RootKind {
        Background,
        Todo,
    }

    impl RootKind {
        fn name(self) -> &'static str {
            match self {
                RootKind::Background => "context.Background",
                RootKind::Todo => "context.TODO",
            }
        }
    }

    /// The cancel part of a context: a root (never canceled; a
    /// `without_cancel` context has `Root(Background)`, as in ctxtree) or a
    /// model node.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum CancelPart {
        Root(RootKind),
        Node(usize),
    }

    /// What an arena context is in the model: its cancel part and its
    /// nearest value layer. Two contexts are `same()` iff both are equal.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct At {
        cancel: CancelPart,
        vals: Option<usize>,
    }

    impl At {
        fn root(kind: RootKind) -> At {
            At {
                cancel: CancelPart::Root(kind),
                vals: None,
            }
        }
    }

    struct MNode {
        parent: Option<usize>,
        /// `(err, cause id)` once canceled.
        canceled: Option<(Error, usize)>,
        children: Vec<usize>,
        deadline: Option<Instant>,
        /// The Go-style path (`Display`, deadlines shown as `*`).
        path: String,
        /// Derivation order, shared with the layers.
        seq: usize,
    }

    /// A value layer: a binding `(key, value)`, or a `without_cancel`
    /// detach (`None`) that keeps the values above it visible.
    struct MLayer {
        parent: Option<usize>,
        binding: Option<(usize, u32)>,
        path: String,
        seq: usize,
    }

    /// The kind of cancel node to derive.
    enum NodeKind {
        Cancel,
        Deadline(Instant),
    }

    #[derive(Default)]
    struct Model {
        nodes: Vec<MNode>,
        layers: Vec<MLayer>,
        seq: usize,
    }

    impl Model {
        /// A child node of `at`; born canceled with the parent's err and
        /// cause if the parent is canceled. Returns the node.
        fn derive(&mut self, at: At, kind: NodeKind) -> usize {
            let id = self.nodes.len();
            let mut path = self.path(at);
            let (parent, canceled, inherited) = match at.cancel {
                CancelPart::Root(_) => (None, None, None),
                CancelPart::Node(p) => {
                    self.nodes[p].children.push(id);
                    (Some(p), self.nodes[p].canceled, self.nodes[p].deadline)
                }
            };
            let deadline = match kind {
                NodeKind::Cancel => {
                    path.push_str(".WithCancel");
                    inherited
                }
                NodeKind::Deadline(d) => {
                    path.push_str(".WithDeadline(*)");
                    Some(d)
                }
            };
            self.seq += 1;
            self.nodes.push(MNode {
                parent,
                canceled,
                children: Vec::new(),
                deadline,
                path,
                seq: self.seq,
            });
            id
        }

        fn layer(&mut self, at: At, binding: Option<(usize, u32)>) -> usize {
            let mut path = self.path(at);
            match binding {
                Some((key, _)) => {
                    let _ = write!(path, ".WithValue({})", key_name(key));
                }
                None => path.push_str(".WithoutCancel"),
            }
            self.seq += 1;
            self.layers.push(MLayer {
                parent: at.vals,
                binding,
                path,
                seq: self.seq,
            });
            self.layers.len() - 1
        }

        /// `with_value`: same cancel part, one more binding.
        fn bind(&mut self, at: At, key: usize, v: u32) -> At {
            let vals = Some(self.layer(at, Some((key, v))));
            At {
                cancel: at.cancel,
                vals,
            }
        }

        /// `without_cancel`: the values, a never-canceled root.
        fn detach(&mut self, at: At) -> At {
            let vals = Some(self.layer(at, None));
            At {
                cancel: CancelPart::Root(RootKind::Background),
                vals,
            }
        }

        /// Go's cancel: first writer wins on the node; then every descendant
        /// not canceled yet takes its parent's (by then canceled) err and cause.
        fn cancel(&mut self, n: usize, err: Error, cause: usize) {
            if self.nodes[n].canceled.is_some() {
                return;
            }
            self.nodes[n].canceled = Some((err, cause));
            let mut todo = self.nodes[n].children.clone();
            while let Some(c) = todo.pop() {
                if self.nodes[c].canceled.is_none() {
                    let p = self.nodes[c].parent.expect("a child has a parent");
                    self.nodes[c].canceled = self.nodes[p].canceled;
                }
                todo.extend_from_slice(&self.nodes[c].children);
            }
        }

        fn state(&self, at: At) -> Option<(Error, usize)> {
            match at.cancel {
                CancelPart::Root(_) => None,
                CancelPart::Node(n) => self.nodes[n].canceled,
            }
        }

        fn deadline(&self, at: At) -> Option<Instant> {
            match at.cancel {
                CancelPart::Root(_) => None,
                CancelPart::Node(n) => self.nodes[n].deadline,
            }
        }

        /// The nearest binding of `key`; detach layers are transparent.
        fn value(&self, at: At, key: usize) -> Option<u32> {
            let mut l = at.vals;
            while let Some(i) = l {
                if let Some((k, v)) = self.layers[i].binding {
                    if k == key {
                        return Some(v);
                    }
                }
                l = self.layers[i].parent;
            }
            None
        }

        fn values(&self, at: At) -> [Option<u32>; KEYS] {
            [0, 1, 2, 3].map(|k| self.value(at, k))
        }

        /// The path of the newer of the context's cancel part and value layer.
        fn path(&self, at: At) -> String {
            let node = match at.cancel {
                CancelPart::Root(_) => None,
                CancelPart::Node(n) => Some(&self.nodes[n]),
            };
            let layer = at.vals.map(|l| &self.layers[l]);
            match (node, layer, at.cancel) {
                (Some(n), Some(l), _) if n.seq > l.seq => n.path.clone(),
                (Some(n), None, _) => n.path.clone(),
                (_, Some(l), _) => l.path.clone(),
                (None, None, CancelPart::Root(root)) => root.name().to_string(),
                (None, None, CancelPart::Node(_)) => unreachable!(),
            }
        }
    }

    // ----------------------------------------------------------------------
    // Causes: every cause handed to ctxtree gets an id; ids 0 and 1 are the
    // inline context errors, 2 and 3 the shared messages, later ids are fresh
    // allocations (so distinct ids are distinct `Cause`s).

    const CANCELED_ID: usize = 0;
    const DEADLINE_ID: usize = 1;

    enum Matcher {
        /// Equal to this `Cause` (same `Error`, or same allocation).
        Exact(Cause),
        /// A `CustomError(n)` that ctxtree boxed itself.
        Custom(u32),
    }

    struct CauseRec {
        matcher: Matcher,
        display: String,
        context_error: Option<Error>,
        /// The first `Cause` observed for this id: every later observation
        /// must be equal to it (inheritance shares the allocation).
        seen: Option<Cause>,
    }

    impl CauseRec {
        fn exact(cause: Cause, context_error: Option<Error>) -> CauseRec {
            CauseRec {
                display: cause.to_string(),
                matcher: Matcher::Exact(cause),
                context_error,
                seen: None,
            }
        }

        fn matches(&self, got: &Cause) -> bool {
            match &self.matcher {
                Matcher::Exact(c) => c == got,
                Matcher::Custom(n) => got.downcast_ref::<CustomError>().map(|e| e.0) == Some(*n),
            }
        }
    }

    /// A cause to hand to ctxtree.
    enum CauseArg {
        /// An `Error` passed by value.
        Error(Error),
        Cause(Cause),
        /// A custom error passed by value (ctxtree boxes it).
        Custom(CustomError),
    }

    // ----------------------------------------------------------------------
    // after_func registrations.

    /// What a registered function saw when it ran.
    struct Seen {
        err: Option<Error>,
        cause: Option<Cause>,
        /// `is_done()` of every probe context (the arena before the op).
        probe_done: Vec<bool>,
        /// A nested `after_func` on its own context: (runs right after
        /// registering, `stop()`, `stop_wait()`), and its run count, read
        /// again once the op has returned.
        nested: Option<((usize, bool, bool), Arc<AtomicUsize>)>,
        /// A child derived from its own context: (err, cause equal to the
        /// context's, is_done).
        child: Option<(Option<Error>, bool, bool)>,
        /// `stop()` and `stop_wait()` on its own registration, from inside.
        own_stop: Option<(bool, bool)>,
    }

    /// Shared between a registered function and the harness.
    #[derive(Default)]
    struct RegRec {
        runs: AtomicUsize,
        /// Set when the function returns.
        finished: AtomicBool,
        seen: Mutex<Option<Seen>>,
        /// The registration itself, for the function's own `stop` calls.
        own: OnceLock<AfterFunc>,
    }

    /// The model of a registration.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum RegState {
        /// On a never-canceled context: nothing registered; counts stops.
        Never { stops: usize },
        /// Registered on a live node.
        Pending(usize),
        /// Ran inside `after_func` (the context was already canceled).
        RanAtOnce,
        /// Ran by a cancel.
        Ran,
        /// A `stop` prevented it.
        Stopped,
    }

    struct Reg {
        rec: Arc<RegRec>,
        /// Captured by the function: the closure is alive iff the count is 2.
        token: Arc<()>,
        ctx: Context,
        at: At,
        state: RegState,
        /// What it saw has been checked.
        checked: bool,
    }

    type Probe = Mutex<Vec<Context>>;

    /// The registered function.
    fn after_func_body(rec: &Weak<RegRec>, ctx: &Context, probe: &Weak<Probe>, flags: u8) {
        let Some(rec) = rec.upgrade() else { return };
        rec.runs.fetch_add(1, Ordering::SeqCst);
        let probe_done = probe
            .upgrade()
            .map(|p| {
                let p = p.lock().unwrap_or_else(PoisonError::into_inner);
                p.iter().map(Context::is_done).collect()
            })
            .unwrap_or_default();
        let err = ctx.err();
        let cause = ctx.cause();
        let nested = (flags & 1 != 0).then(|| {
            let runs = Arc::new(AtomicUsize::new(0));
            let counter = runs.clone();
            let inner = ctx.after_func(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            });
            let ran = runs.load(Ordering::SeqCst);
            ((ran, inner.stop(), inner.stop_wait()), runs)
        });
        let child = (flags & 2 != 0).then(|| {
            let (c, h) = ctx.with_cancel();
            let got = (c.err(), c.cause() == cause, c.is_done());
            drop(h);
            got
        });
        let own_stop = if flags & 4 != 0 {
            rec.own.get().map(|af| (af.stop(), af.stop_wait()))
        } else {
            None
        };
        *rec.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(Seen {
            err,
            cause,
            probe_done,
            nested,
            child,
            own_stop,
        });
        rec.finished.store(true, Ordering::SeqCst);
    }

    // ----------------------------------------------------------------------
    // The arena and the checks.

    struct CtxEntry {
        ctx: Context,
        at: At,
    }

    struct HandleEntry {
        handle: CancelHandle,
        node: usize,
    }

    struct Pending {
        fut: DoneOwned,
        counter: Arc<CountingWaker>,
        waker: Waker,
        at: At,
    }

    struct World<'a> {
        ops: &'a [Op],
        step: usize,
        model: Model,
        ctxs: Vec<CtxEntry>,
        handles: Vec<HandleEntry>,
        futures: Vec<Pending>,
        /// Wakers whose registration was abandoned while its context was
        /// live: they must never be woken.
        retired: Vec<(Arc<CountingWaker>, At)>,
        causes: Vec<CauseRec>,
        next_fresh: u32,
        regs: Vec<Reg>,
        /// Clones of the arena's contexts before the current op, read by the
        /// registered functions (through a `Weak`, so no cycle), and what
        /// they are in the model.
        probe: Arc<Probe>,
        probe_at: Vec<At>,
        next_value: u32,
        /// The instant the run started: deadlines are fixed offsets from it.
        t0: Instant,
    }

    macro_rules! fail {
        ($w:expr, $($arg:tt)*) => {
            $w.fail(format_args!($($arg)*))
        };
    }

    impl<'a> World<'a> {
        fn new(ops: &'a [Op]) -> World<'a> {
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
        fn fail(&self, msg: std::fmt::Arguments<'_>) -> ! {
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

        fn pick(len: usize, b: u8) -> Option<usize> {
            (len > 0).then(|| b as usize % len)
        }

        /// Background (`b % (n+2) == 0`), todo (`1`) or an arena context.
        fn parent(&self, b: u8) -> (Context, At) {
            match b as usize % (self.ctxs.len() + 2) {
                0 => (Context::background(), At::root(RootKind::Background)),
                1 => (Context::todo(), At::root(RootKind::Todo)),
                k => (self.ctxs[k - 2].ctx.clone(), self.ctxs[k - 2].at),
            }
        }

        /// Refreshes the probe the registered functions read, when one may
        /// run during the next op (a registration is pending, or `force`).
        fn refresh_probe(&mut self, force: bool) {
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

        // -- operations --------------------------------------------------

        fn apply(&mut self, op: Op) {
            match op {
                Op::Derive { parent } => {
                    let (pctx, at) = self.parent(parent);
                    self.derive_from(&pctx, at, 3);
                }
                Op::Clone { ctx } => {
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
                Op::DropCtx { ctx } => {
                    if let Some(i) = Self::pick(self.ctxs.len(), ctx) {
                        drop(self.ctxs.swap_remove(i));
                    }
                }
                Op::DropHandle { handle } => {
                    if let Some(i) = Self::pick(self.handles.len(), handle) {
                        let e = self.handles.swap_remove(i);
                        drop(e.handle);
                        self.model.cancel(e.node, Error::Canceled, CANCELED_ID);
                    }
                }
                Op::Cancel { handle } => {
                    if let Some(i) = Self::pick(self.handles.len(), handle) {
                        self.handles[i].handle.cancel();
                        let n = self.handles[i].node;
                        self.model.cancel(n, Error::Canceled, CANCELED_ID);
                    }
                }
                Op::CancelWithCause { handle, cause } => {
                    if let Some(i) = Self::pick(self.handles.len(), handle) {
                        self.cancel_with(i, cause % 7);
                    }
                }
                Op::NewFuture { ctx } => {
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
                Op::DropFuture { fut } => {
                    if let Some(i) = Self::pick(self.futures.len(), fut) {
                        let p = self.futures.swap_remove(i);
                        self.retired.push((p.counter.clone(), p.at));
                        drop(p);
                    }
                }
                Op::PollAll => {
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
                Op::Repoll { fut } => {
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
                Op::WaitZero { ctx } => {
                    if let Some(i) = Self::pick(self.ctxs.len(), ctx) {
                        let got = self.ctxs[i].ctx.wait_timeout(Duration::ZERO);
                        let want = self.model.state(self.ctxs[i].at).map(|s| s.0);
                        if got != want {
                            fail!(self, "wait_timeout(0) gave {got:?}, model err {want:?}");
                        }
                    }
                }
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
                } => {
                    if let Some(i) = Self::pick(self.ctxs.len(), ctx) {
                        let pctx = self.ctxs[i].ctx.clone();
                        let at = self.ctxs[i].at;
                        for n in 0..1 + count as usize % 96 {
                            let keep = (pattern >> (2 * (n % 4))) & 3;
                            self.derive_from(&pctx, at, keep);
                        }
                    }
                }
                Op::DeriveValue { parent, key } => {
                    let (pctx, at) = self.parent(parent);
                    let key = key as usize % KEYS;
                    self.next_value += 1;
                    let v = self.next_value;
                    let ctx = bind(&pctx, key, v);
                    let at = self.model.bind(at, key, v);
                    self.keep_ctx(ctx, at);
                }
                Op::WithoutCancel { parent } => {
                    let (pctx, at) = self.parent(parent);
                    let ctx = pctx.without_cancel();
                    let at = self.model.detach(at);
                    self.keep_ctx(ctx, at);
                }
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
                Op::Stop { reg, wait } => {
                    if let Some(i) = Self::pick(self.regs.len(), reg) {
                        self.stop(i, wait & 1 != 0);
                    }
                }
            }
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
        fn derive_from(&mut self, parent: &Context, at: At, keep: u8) {
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
                self.model.cancel(n, Error::Canceled, CANCELED_ID);
            }
        }

        /// `with_deadline` / `with_deadline_cause` at offset `when` (0..5).
        fn derive_deadline(&mut self, parent: &Context, at: At, when: u8, cause: u8) {
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
                    self.model.cancel(n, Error::DeadlineExceeded, id);
                }
                n
            };
            let at = At {
                cancel: CancelPart::Node(n),
                vals: at.vals,
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
        fn cancel_with(&mut self, i: usize, kind: u8) {
            let (arg, id) = self.new_cause(kind);
            let h = &self.handles[i].handle;
            match arg {
                CauseArg::Error(e) => h.cancel_with_cause(e),
                CauseArg::Cause(c) => h.cancel_with_cause(c),
                CauseArg::Custom(c) => h.cancel_with_cause(c),
            }
            let node = self.handles[i].node;
            self.model.cancel(node, Error::Canceled, id);
        }

        /// A borrowed `done()` future across a cancel.
        fn scoped_done(&mut self, i: usize, handle: u8, kind: u8) {
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
                    self.model.cancel(n, Error::Canceled, CANCELED_ID);
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

        fn done_churn(&mut self, i: usize, count: usize) {
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

        /// `after_func` on arena context `i`.
        fn after_func(&mut self, i: usize, flags: u8) {
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
        fn stop(&mut self, i: usize, wait: bool) {
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

        // -- checks ------------------------------------------------------

        /// Compares everything observable with the model. The semantic
        /// checks run on every context, handle, future and registration; the
        /// formatting checks (`Display`, `Debug`) on one context, handle and
        /// registration per step, rotating, and on all of them when `full`.
        fn check(&mut self, full: bool) {
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
            let want_dbg = format!("Context {{ path: {path}, err: {:?} }}", want.map(|s| s.0));
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
                    if !done && self.model.state(at).is_some() {
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
        fn finish(mut self) {
            self.step = self.ops.len();
            while let Some(e) = self.handles.pop() {
                self.refresh_probe(false);
                drop(e.handle);
                self.model.cancel(e.node, Error::Canceled, CANCELED_ID);
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
}

/// The multi-threaded target: racing cancels, derivations, waits and drops on
/// a small shared tree, with Go's invariants checked after join.
pub mod concurrent {
    use std::panic::{self, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc, Barrier, Mutex, MutexGuard, PoisonError, Weak};
    use std::task::{Poll, Waker};
    use std::thread;
    use std::time::Duration;

    use ctxtree::{AfterFunc, CancelHandle, Cause, Context, DoneOwned, Error};

    use super::common::{counting_waker, poll_with, CountingWaker, Reader};

    /// At most this many operations are decoded from one input (all threads).
    pub const MAX_OPS: usize = 64;
    const MAX_NODES: usize = 8;
    const MAX_DERIVED: usize = 16;
    const MAX_FUTURES: usize = 8;
    /// How long a blocking waiter waits before it is declared not woken.
    const WAIT: Duration = Duration::from_secs(10);

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
    /// operation `(t >> 2) % 20`: codes 0–15 are the original table, so older
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
            let op = match (t >> 2) % 20 {
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
                _ => Op::Stop(a, b),
            };
            plan.threads[t as usize % threads].push(op);
            total += 1;
        }
        plan
    }

    /// Runs one input: panics if an invariant fails.
    pub fn run(data: &[u8]) {
        run_plan(&decode(data));
    }

    struct Shared {
        ctxs: Vec<Context>,
        parents: Vec<Option<usize>>,
        /// The handles, each taken out of its slot by the thread that drops it.
        handles: Vec<Mutex<Option<Arc<CancelHandle>>>>,
        /// Each node's prebuilt subtree, itself included.
        subtree: Vec<Vec<usize>>,
        paths: Vec<String>,
        msg_a: Cause,
        msg_b: Cause,
        barrier: Barrier,
        /// Threads past the barrier; see [`Shared::start`].
        started: AtomicUsize,
        /// How many threads run (racers and blocking waiters).
        threads: usize,
    }

    /// Where a thread-derived child hangs.
    #[derive(Clone, Copy, Debug)]
    enum Up {
        Shared(usize),
        Local(usize),
    }

    struct Derived {
        ctx: Context,
        handle: Option<CancelHandle>,
        up: Up,
        /// Causes this thread canceled it with (`Canceled` for a drop).
        applied: Vec<Cause>,
    }

    struct Fut {
        fut: DoneOwned,
        counter: Arc<CountingWaker>,
        waker: Waker,
    }

    /// Where an `after_func` was registered.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Target {
        Shared(usize),
        Local(usize),
        /// `without_cancel()` of a shared node: never canceled.
        Detached(usize),
    }

    /// Shared between a registered function and the harness.
    #[derive(Default)]
    struct FuncRec {
        runs: AtomicUsize,
        /// Set when the function returns.
        finished: AtomicBool,
        /// What the function found wrong (it must not panic on the
        /// canceling thread).
        problem: Mutex<Option<String>>,
    }

    impl FuncRec {
        fn problem(&self) -> Option<String> {
            self.problem
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }
    }

    struct Reg {
        af: AfterFunc,
        rec: Arc<FuncRec>,
        ctx: Context,
        target: Target,
        /// A `stop` or `stop_wait` of this thread returned true.
        stopped: bool,
        /// How many times this thread called `stop` or `stop_wait`.
        stops: usize,
    }

    /// The registered function: counts, checks that its context (and a
    /// shared node's whole subtree) is done, spins, then marks itself
    /// finished.
    fn after_func_body(
        rec: &FuncRec,
        ctx: &Context,
        sh: &Weak<Shared>,
        k: Option<usize>,
        spins: u32,
    ) {
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

    /// What a racing thread hands back.
    #[derive(Default)]
    struct Local {
        /// `(shared node, cause)` for every cancel or drop this thread did.
        applied: Vec<(usize, Cause)>,
        derived: Vec<Derived>,
        futures: Vec<Fut>,
        retired: Vec<Arc<CountingWaker>>,
        regs: Vec<Reg>,
    }

    fn canceled() -> Cause {
        Cause::from(Error::Canceled)
    }

    impl Shared {
        /// Starts all threads of an input together: the `Barrier` gathers
        /// them, then a short spin releases them closer together than the
        /// barrier's one-by-one wake-ups would.
        fn start(&self) {
            self.barrier.wait();
            self.started.fetch_add(1, Ordering::SeqCst);
            let mut spins = 0u32;
            while self.started.load(Ordering::SeqCst) < self.threads {
                spins += 1;
                if spins == 64 {
                    spins = 0;
                    thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        }

        fn slot(&self, k: usize) -> Option<Arc<CancelHandle>> {
            self.handles[k].lock().unwrap().clone()
        }

        /// The cause of kind `kind % 5` for op `i` of thread `t`.
        fn cause(&self, kind: u8, t: usize, i: usize) -> Cause {
            match kind % 5 {
                0 => Cause::from(Error::Canceled),
                1 => Cause::from(Error::DeadlineExceeded),
                2 => self.msg_a.clone(),
                3 => self.msg_b.clone(),
                _ => Cause::msg(format!("thread {t} op {i}")),
            }
        }

        /// After a cancel of `k` returned: its whole subtree is done (N4).
        fn assert_subtree_done(&self, k: usize, local: &Local, what: &str) {
            for &d in &self.subtree[k] {
                assert!(
                    self.ctxs[d].is_done(),
                    "{what} of node {k} returned but descendant node {d} is not done"
                );
            }
            for (j, dv) in local.derived.iter().enumerate() {
                if self.local_under(local, j, k) {
                    assert!(
                        dv.ctx.is_done(),
                        "{what} of node {k} returned but a child derived under it \
                         (local #{j}) is not done"
                    );
                }
            }
        }

        /// Whether local derived child `j` is below shared node `k`.
        fn local_under(&self, local: &Local, mut j: usize, k: usize) -> bool {
            loop {
                match local.derived[j].up {
                    Up::Local(p) => j = p,
                    Up::Shared(s) => return self.subtree[k].contains(&s),
                }
            }
        }
    }

    /// Checks a freshly derived child against its parent: born canceled with
    /// the parent's cause if the parent was canceled before, and canceled at
    /// birth only with the parent's cause.
    fn check_birth(parent: &Context, parent_was_done: bool, child: &Context) {
        if parent_was_done {
            assert!(child.is_done(), "child of a canceled parent is born live");
        }
        if child.is_done() {
            assert!(parent.is_done(), "child born canceled under a live parent");
            assert_eq!(child.err(), parent.err(), "born-canceled child's err");
            assert!(
                child.cause() == parent.cause(),
                "born-canceled child's cause {:?} is not its parent's {:?}",
                child.cause(),
                parent.cause()
            );
        }
    }

    fn thread_main(sh: &Arc<Shared>, t: usize, ops: &[Op]) -> Local {
        let mut local = Local::default();
        let mut seen_done = vec![false; sh.ctxs.len()];
        let n = sh.ctxs.len();
        sh.start();
        for (i, &op) in ops.iter().enumerate() {
            match op {
                Op::Cancel(k) => {
                    let k = k as usize % n;
                    if let Some(h) = sh.slot(k) {
                        h.cancel();
                        local.applied.push((k, canceled()));
                        sh.assert_subtree_done(k, &local, "cancel()");
                    }
                }
                Op::CancelWithCause(k, c) => {
                    let k = k as usize % n;
                    if let Some(h) = sh.slot(k) {
                        let cause = sh.cause(c, t, i);
                        h.cancel_with_cause(cause.clone());
                        local.applied.push((k, cause));
                        sh.assert_subtree_done(k, &local, "cancel_with_cause()");
                    }
                }
                Op::DropHandle(k) => {
                    let k = k as usize % n;
                    let taken = sh.handles[k].lock().unwrap().take();
                    if let Some(h) = taken {
                        local.applied.push((k, canceled()));
                        // The last `Arc` cancels on drop; another thread may
                        // still hold a clone it is canceling with.
                        if let Ok(h) = Arc::try_unwrap(h) {
                            drop(h);
                            sh.assert_subtree_done(k, &local, "dropping the handle");
                        }
                    }
                }
                Op::Derive(k) => {
                    let k = k as usize % n;
                    let parent = &sh.ctxs[k];
                    let was_done = parent.is_done();
                    let (ctx, handle) = parent.with_cancel();
                    check_birth(parent, was_done, &ctx);
                    keep_derived(&mut local, ctx, handle, Up::Shared(k));
                }
                Op::DeriveLocal(j) => {
                    if local.derived.is_empty() {
                        continue;
                    }
                    let j = j as usize % local.derived.len();
                    let parent = local.derived[j].ctx.clone();
                    let was_done = parent.is_done();
                    let (ctx, handle) = parent.with_cancel();
                    check_birth(&parent, was_done, &ctx);
                    keep_derived(&mut local, ctx, handle, Up::Local(j));
                }
                Op::CancelLocal(j, c) => {
                    if local.derived.is_empty() {
                        continue;
                    }
                    let j = j as usize % local.derived.len();
                    let d = &mut local.derived[j];
                    if c & 0x80 != 0 {
                        if let Some(h) = d.handle.take() {
                            drop(h);
                            d.applied.push(canceled());
                        }
                    } else if let Some(h) = &d.handle {
                        let cause = sh.cause(c, t, i);
                        h.cancel_with_cause(cause.clone());
                        d.applied.push(cause);
                    }
                    if !d.applied.is_empty() {
                        assert!(d.ctx.is_done(), "a canceled derived child is not done");
                        // Everything derived below it is done too.
                        for x in 0..local.derived.len() {
                            let mut y = x;
                            while let Up::Local(p) = local.derived[y].up {
                                if p == j {
                                    assert!(
                                        local.derived[x].ctx.is_done(),
                                        "cancel of local #{j} returned, local #{x} below it live"
                                    );
                                    break;
                                }
                                y = p;
                            }
                        }
                    }
                }
                Op::Read(k) => {
                    let k = k as usize % n;
                    let ctx = &sh.ctxs[k];
                    let done = ctx.is_done();
                    assert!(done || !seen_done[k], "node {k} was done and is live again");
                    seen_done[k] |= done;
                    let err = ctx.err();
                    assert!(!done || err.is_some(), "is_done() then err() None");
                    if let Some(e) = err {
                        assert_eq!(e, Error::Canceled);
                        let cause = ctx.cause();
                        assert!(cause.is_some(), "err() Some then cause() None");
                        let (counter, waker) = counting_waker();
                        let got = poll_with(&mut ctx.done(), &waker);
                        assert_eq!(got, Poll::Ready(e), "err() Some then done() not ready");
                        assert_eq!(counter.count(), 0);
                        assert!(ctx.cause() == cause, "a canceled node's cause changed");
                    }
                    assert_eq!(ctx.to_string(), sh.paths[k]);
                }
                Op::NewFuture(k) => {
                    let k = k as usize % n;
                    let ctx = &sh.ctxs[k];
                    let was = ctx.err();
                    let mut fut = ctx.done_owned();
                    let (counter, waker) = counting_waker();
                    match poll_with(&mut fut, &waker) {
                        Poll::Ready(e) => assert_eq!(ctx.err(), Some(e)),
                        Poll::Pending => {
                            assert_eq!(was, None, "done_owned() of a canceled node pending");
                            let f = Fut {
                                fut,
                                counter,
                                waker,
                            };
                            if local.futures.len() < MAX_FUTURES {
                                local.futures.push(f);
                            } else {
                                local.retired.push(f.counter.clone());
                            }
                        }
                    }
                }
                Op::DropFuture(j) => {
                    if !local.futures.is_empty() {
                        let j = j as usize % local.futures.len();
                        let f = local.futures.swap_remove(j);
                        local.retired.push(f.counter.clone());
                    }
                }
                Op::PollFutures => {
                    local.futures.retain_mut(|f| {
                        let was = f.fut.context().err();
                        match poll_with(&mut f.fut, &f.waker) {
                            Poll::Ready(e) => {
                                assert_eq!(f.fut.context().err(), Some(e));
                                false
                            }
                            Poll::Pending => {
                                assert_eq!(was, None, "future of a canceled node pending");
                                true
                            }
                        }
                    });
                }
                Op::Repoll(j) => {
                    if !local.futures.is_empty() {
                        let j = j as usize % local.futures.len();
                        let (counter, waker) = counting_waker();
                        let f = &mut local.futures[j];
                        let was = f.fut.context().err();
                        let got = poll_with(&mut f.fut, &waker);
                        let old = std::mem::replace(&mut f.counter, counter);
                        f.waker = waker;
                        local.retired.push(old);
                        match got {
                            Poll::Ready(e) => {
                                assert_eq!(f.fut.context().err(), Some(e));
                                local.futures.swap_remove(j);
                            }
                            Poll::Pending => assert_eq!(was, None),
                        }
                    }
                }
                Op::Wait(k, b) => {
                    let k = k as usize % n;
                    let ctx = &sh.ctxs[k];
                    let was = ctx.err();
                    let timeout = if b & 1 == 0 {
                        Duration::ZERO
                    } else {
                        Duration::from_micros(50)
                    };
                    let got = ctx.wait_timeout(timeout);
                    if was.is_some() {
                        assert_eq!(got, was, "wait_timeout on a canceled node");
                    }
                    if let Some(e) = got {
                        assert_eq!(ctx.err(), Some(e), "wait_timeout woke, err() disagrees");
                    }
                }
                Op::DeriveChurn(k, c) => {
                    let k = k as usize % n;
                    let parent = &sh.ctxs[k];
                    for m in 0..1 + c as usize % 80 {
                        let was_done = parent.is_done();
                        let (ctx, handle) = parent.with_cancel();
                        check_birth(parent, was_done, &ctx);
                        if m % 16 == 0 && local.derived.len() < MAX_DERIVED {
                            keep_derived(&mut local, ctx, handle, Up::Shared(k));
                        } else {
                            drop(handle);
                            assert!(ctx.is_done(), "child live after its handle was dropped");
                        }
                    }
                }
                Op::DoneChurn(k, c) => {
                    let k = k as usize % n;
                    let ctx = &sh.ctxs[k];
                    let (counter, waker) = counting_waker();
                    for _ in 0..1 + c as usize % 48 {
                        let was = ctx.err();
                        match poll_with(&mut ctx.done(), &waker) {
                            Poll::Ready(e) => assert_eq!(ctx.err(), Some(e)),
                            Poll::Pending => assert_eq!(was, None),
                        }
                    }
                    // Each churned future is woken at most once (W1).
                    local.retired.push(counter);
                }
                Op::Yield => thread::yield_now(),
                Op::AfterFunc(a, b) => {
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
                Op::Stop(j, b) => {
                    if local.regs.is_empty() {
                        continue;
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
            }
        }
        local
    }

    fn keep_derived(local: &mut Local, ctx: Context, handle: CancelHandle, up: Up) {
        if local.derived.len() < MAX_DERIVED {
            local.derived.push(Derived {
                ctx,
                handle: Some(handle),
                up,
                applied: Vec::new(),
            });
        } else {
            drop(handle);
            assert!(ctx.is_done(), "child live after its handle was dropped");
        }
    }

    // ----------------------------------------------------------------------
    // Worker threads. Spawning a thread costs up to a millisecond on the
    // sandboxed machines this runs on, more than the rest of an input, so
    // the racing threads come from a persistent pool; each input still
    // starts its threads together on a fresh `Barrier`. One input at a time
    // uses the pool (the lock), so two callers cannot deadlock on it.

    type Job = Box<dyn FnOnce() + Send>;

    static POOL: Mutex<Vec<mpsc::Sender<Job>>> = Mutex::new(Vec::new());

    /// Exclusive use of the pool, grown to at least `n` workers.
    fn lock_pool(n: usize) -> MutexGuard<'static, Vec<mpsc::Sender<Job>>> {
        let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
        while pool.len() < n {
            let (tx, rx) = mpsc::channel::<Job>();
            thread::Builder::new()
                .name(format!("ctxtree-fuzz-{}", pool.len()))
                .spawn(move || {
                    for job in rx {
                        job();
                    }
                })
                .expect("spawning a fuzz worker thread");
            pool.push(tx);
        }
        pool
    }

    /// Runs `f` on `worker`; the receiver gets its result or its panic.
    fn run_on<T: Send + 'static>(
        worker: &mpsc::Sender<Job>,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> mpsc::Receiver<thread::Result<T>> {
        let (tx, rx) = mpsc::channel();
        worker
            .send(Box::new(move || {
                let _ = tx.send(panic::catch_unwind(AssertUnwindSafe(f)));
            }))
            .expect("a fuzz worker thread is gone");
        rx
    }

    /// The result of a job from [`run_on`], re-raising its panic here.
    fn join<T>(rx: mpsc::Receiver<thread::Result<T>>) -> T {
        match rx.recv().expect("a fuzz worker thread dropped its job") {
            Ok(v) => v,
            Err(payload) => panic::resume_unwind(payload),
        }
    }

    /// Drops every shared handle still in its slot (canceling its node).
    struct CancelRest<'a>(&'a Shared);

    impl Drop for CancelRest<'_> {
        fn drop(&mut self) {
            for slot in &self.0.handles {
                let h = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
                drop(h);
            }
        }
    }

    /// Runs a decoded plan.
    pub fn run_plan(plan: &Plan) {
        // The prebuilt tree.
        let mut ctxs: Vec<Context> = Vec::new();
        let mut handles = Vec::new();
        let mut parents = Vec::new();
        let mut paths: Vec<String> = Vec::new();
        for p in &plan.parents {
            let (parent, idx, path) = match *p {
                Parent::Background => (Context::background(), None, "context.Background".into()),
                Parent::Todo => (Context::todo(), None, "context.TODO".into()),
                Parent::Node(m) => (ctxs[m].clone(), Some(m), paths[m].clone()),
            };
            let (ctx, handle) = parent.with_cancel();
            ctxs.push(ctx);
            handles.push(Mutex::new(Some(Arc::new(handle))));
            parents.push(idx);
            paths.push(path + ".WithCancel");
        }
        let n = ctxs.len();
        let mut subtree: Vec<Vec<usize>> = (0..n).map(|k| vec![k]).collect();
        for d in 0..n {
            let mut a = parents[d];
            while let Some(p) = a {
                subtree[p].push(d);
                a = parents[p];
            }
        }
        let shared = Arc::new(Shared {
            ctxs,
            parents,
            handles,
            subtree,
            paths,
            msg_a: Cause::msg("cause A"),
            msg_b: Cause::msg("cause B"),
            barrier: Barrier::new(plan.threads.len() + plan.waiters.len()),
            started: AtomicUsize::new(0),
            threads: plan.threads.len() + plan.waiters.len(),
        });

        let pool = lock_pool(plan.threads.len() + plan.waiters.len());
        let (racer_pool, waiter_pool) = pool.split_at(plan.threads.len());
        // Whatever happens below, a panic included, cancel what is left on
        // the way out so that blocked waiters return at once.
        let cancel_rest = CancelRest(&shared);
        let waiters: Vec<_> = plan
            .waiters
            .iter()
            .zip(waiter_pool)
            .map(|(&k, worker)| {
                let sh = shared.clone();
                let ctx = sh.ctxs[k].clone();
                let rx = run_on(worker, move || {
                    sh.start();
                    let got = ctx.wait_timeout(WAIT);
                    if let Some(e) = got {
                        assert_eq!(ctx.err(), Some(e), "woken waiter: err() disagrees");
                        assert!(ctx.cause().is_some(), "woken waiter: no cause");
                    }
                    got
                });
                (k, rx)
            })
            .collect();
        let racers: Vec<_> = plan
            .threads
            .iter()
            .zip(racer_pool)
            .enumerate()
            .map(|(t, (ops, worker))| {
                let sh = shared.clone();
                let ops = ops.clone();
                run_on(worker, move || thread_main(&sh, t, &ops))
            })
            .collect();
        let mut locals: Vec<Local> = racers.into_iter().map(join).collect();
        check_after_join(&shared, &locals, plan);
        check_registrations(&locals, plan, false);

        // Cancel everything that is left; every waiter must then wake.
        drop(cancel_rest);
        for l in &mut locals {
            for d in &mut l.derived {
                d.handle = None;
            }
        }
        for (k, ctx) in shared.ctxs.iter().enumerate() {
            assert!(
                ctx.is_done(),
                "node {k} live after every handle was dropped"
            );
        }
        for (k, rx) in waiters {
            let got = join(rx);
            assert_eq!(
                got,
                Some(Error::Canceled),
                "a thread blocked in wait_timeout on node {k} was not woken within {WAIT:?} \
                 (plan: {plan:?})"
            );
        }
        check_registrations(&locals, plan, true);
        for l in &mut locals {
            for d in &l.derived {
                assert!(
                    d.ctx.is_done(),
                    "derived child live after every handle was dropped"
                );
            }
            for f in &mut l.futures {
                let woken = f.counter.count();
                assert_eq!(
                    woken, 1,
                    "a pending future was woken {woken} times by the cancel (plan: {plan:?})"
                );
                let got = poll_with(&mut f.fut, &f.waker);
                assert_eq!(got, Poll::Ready(Error::Canceled), "woken future not ready");
            }
            for r in &l.retired {
                assert!(
                    r.count() <= 1,
                    "an abandoned waiter was woken {} times",
                    r.count()
                );
            }
        }
    }

    /// Every registration's function ran at most once, and exactly once iff
    /// no `stop` of it returned true and its context is canceled (after
    /// join, every cancel has returned, so every function it ran has
    /// finished). `end`: after every handle was dropped, so every context
    /// that can be canceled is.
    fn check_registrations(locals: &[Local], plan: &Plan, end: bool) {
        for (t, l) in locals.iter().enumerate() {
            for (j, r) in l.regs.iter().enumerate() {
                if let Some(problem) = r.rec.problem() {
                    panic!(
                        "thread {t} registration #{j} ({:?}): {problem} (plan: {plan:?})",
                        r.target
                    );
                }
                let runs = r.rec.runs.load(Ordering::SeqCst);
                let finished = r.rec.finished.load(Ordering::SeqCst);
                let canceled = r.ctx.is_done();
                let expected = match r.target {
                    Target::Detached(_) => {
                        assert!(!canceled, "a without_cancel() context is done");
                        0
                    }
                    _ => {
                        assert!(
                            !end || canceled,
                            "a registration's context is live at the end"
                        );
                        usize::from(!r.stopped && canceled)
                    }
                };
                assert_eq!(
                    runs,
                    expected,
                    "thread {t} registration #{j} ({:?}, stopped {}, context canceled \
                     {canceled}): its function ran {runs} times{} (plan: {plan:?})",
                    r.target,
                    r.stopped,
                    if end {
                        " after every handle was dropped"
                    } else {
                        " after join"
                    }
                );
                assert_eq!(
                    finished,
                    runs == 1,
                    "thread {t} registration #{j}: finished flag {finished} after {runs} runs"
                );
            }
        }
    }

    /// Go's invariants on the tree as the race left it.
    fn check_after_join(sh: &Shared, locals: &[Local], plan: &Plan) {
        let n = sh.ctxs.len();
        let mut own: Vec<Vec<Cause>> = vec![Vec::new(); n];
        for l in locals {
            for (k, c) in &l.applied {
                own[*k].push(c.clone());
            }
        }
        for k in 0..n {
            let ctx = &sh.ctxs[k];
            // Canceled iff it or an ancestor was canceled by some thread.
            let mut expected = !own[k].is_empty();
            let mut a = sh.parents[k];
            while let Some(p) = a {
                expected |= !own[p].is_empty();
                a = sh.parents[p];
            }
            assert_eq!(
                ctx.is_done(),
                expected,
                "node {k}: is_done() after join, expected {expected} (plan: {plan:?})"
            );
            if !expected {
                assert!(ctx.cause().is_none());
                continue;
            }
            assert_eq!(ctx.err(), Some(Error::Canceled));
            let cause = ctx.cause().expect("a canceled node has a cause");
            // Its own cancel's cause, or its parent's (which is canceled).
            let from_parent = sh.parents[k].and_then(|p| sh.ctxs[p].cause());
            let ok = own[k].contains(&cause) || from_parent.as_ref() == Some(&cause);
            assert!(
                ok,
                "node {k}: cause {cause:?} is neither one of its own cancels' causes {:?} nor \
                 its parent's cause {from_parent:?} (plan: {plan:?})",
                own[k]
            );
        }
        for l in locals {
            for (j, d) in l.derived.iter().enumerate() {
                let parent = match d.up {
                    Up::Shared(k) => &sh.ctxs[k],
                    Up::Local(p) => &l.derived[p].ctx,
                };
                let expected = parent.is_done() || !d.applied.is_empty();
                assert_eq!(
                    d.ctx.is_done(),
                    expected,
                    "derived child #{j} ({:?}): is_done() after join (plan: {plan:?})",
                    d.up
                );
                if expected {
                    let cause = d.ctx.cause().expect("a canceled child has a cause");
                    let from_parent = parent.cause();
                    assert!(
                        d.applied.contains(&cause) || from_parent.as_ref() == Some(&cause),
                        "derived child #{j}: cause {cause:?} is neither its own {:?} nor its \
                         parent's {from_parent:?} (plan: {plan:?})",
                        d.applied
                    );
                }
            }
        }
    }
}

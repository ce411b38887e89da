//! Fan-out demo: one request context, thousands of children, one cancel.
//!
//! ```text
//! cargo run --release --example fanout [CHILDREN] [DEPTH]
//! ```
//!
//! Derives a root request context, derives `CHILDREN` (default 10,000)
//! children under it, each with a sub-chain `DEPTH` contexts deep (default 1:
//! just the child), and hands the leaves to 8 worker threads. Half the
//! workers block in `wait()` on each of their leaves in turn, the other half
//! poll `is_done()`. Main then cancels the root with a cause and reports how
//! long the derivation, the cancel, and the workers' observation took.
//!
//! It checks, not just times: when `cancel` returns every context in the
//! tree must report `is_done()`, and every leaf must be observed canceled
//! with the root's err and the root's cause. Any failure panics (exit != 0).

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use ctxtree::{CancelHandle, Cause, Context, Error};

const WORKERS: usize = 8;
/// How often a polling worker checks `is_done()`.
const POLL_EVERY: Duration = Duration::from_micros(50);

/// How a worker waits for its leaves.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Wait,
    Poll,
}

fn parse_arg(index: usize, name: &str, default: usize) -> Result<usize, String> {
    match std::env::args().nth(index) {
        None => Ok(default),
        Some(s) => match s.replace('_', "").parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!("{name} must be a positive integer, got {s:?}")),
        },
    }
}

fn ns_per(d: Duration, n: usize) -> f64 {
    d.as_nanos() as f64 / n as f64
}

fn main() -> ExitCode {
    let (children, depth) = match (parse_arg(1, "CHILDREN", 10_000), parse_arg(2, "DEPTH", 1)) {
        (Ok(c), Ok(d)) => (c, d),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            eprintln!("usage: fanout [CHILDREN (default 10000)] [DEPTH (default 1)]");
            return ExitCode::from(2);
        }
    };
    let contexts = children * depth;

    // The request: a cancelable root under Background.
    let (request, cancel_request) = Context::background().with_cancel();

    // Derive every child and its sub-chain. The handles keep the contexts
    // alive (dropping a handle cancels its context), so they are kept until
    // the end; the leaves go to the workers.
    let t = Instant::now();
    let mut handles: Vec<CancelHandle> = Vec::with_capacity(contexts);
    let mut all: Vec<Context> = Vec::with_capacity(contexts);
    let mut leaves: Vec<Context> = Vec::with_capacity(children);
    for _ in 0..children {
        let mut ctx = request.clone();
        for _ in 0..depth {
            let (child, handle) = ctx.with_cancel();
            handles.push(handle);
            all.push(child.clone());
            ctx = child;
        }
        leaves.push(ctx);
    }
    let derive_time = t.elapsed();
    assert_eq!(handles.len(), contexts);
    assert!(all.iter().all(|c| !c.is_done()), "a context was born done");

    // Workers: each owns a contiguous slice of the leaves.
    let observed = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(Barrier::new(WORKERS + 1));
    let per_worker = children.div_ceil(WORKERS);
    let mut workers = Vec::with_capacity(WORKERS);
    let mut rest = leaves;
    for w in 0..WORKERS {
        let take = per_worker.min(rest.len());
        let mine: Vec<Context> = rest.drain(..take).collect();
        let mode = if w % 2 == 0 { Mode::Wait } else { Mode::Poll };
        let observed = Arc::clone(&observed);
        let started = Arc::clone(&started);
        workers.push(thread::spawn(move || {
            started.wait();
            for leaf in &mine {
                match mode {
                    Mode::Wait => assert_eq!(leaf.wait(), Error::Canceled),
                    Mode::Poll => {
                        // A worker doing work in slices, checking between
                        // them (sleeping stands in for the work, so pollers
                        // do not steal the CPU from the canceling thread).
                        while !leaf.is_done() {
                            thread::sleep(POLL_EVERY);
                        }
                    }
                }
                observed.fetch_add(1, Ordering::Relaxed);
            }
            // Done observing: `Instant` of the last observation, and the
            // leaves back for the cause check.
            (Instant::now(), mine)
        }));
    }
    started.wait();
    // Let the waiting workers block before the cancel.
    thread::sleep(Duration::from_millis(20));
    let before = observed.load(Ordering::Relaxed);
    assert_eq!(before, 0, "a worker observed cancellation before cancel");

    let cause = Cause::msg("shutdown");
    let t = Instant::now();
    cancel_request.cancel_with_cause(cause.clone());
    let cancel_time = t.elapsed();

    // Go's guarantee: when cancel returns, every descendant is done.
    let done_at_return = all.iter().filter(|c| c.is_done()).count();
    assert_eq!(
        done_at_return, contexts,
        "cancel returned with contexts not yet done"
    );

    let mut last_observed = t;
    let mut checked = 0usize;
    for w in workers {
        let (at, mine) = w.join().expect("worker panicked");
        last_observed = last_observed.max(at);
        for leaf in &mine {
            assert_eq!(leaf.err(), Some(Error::Canceled));
            assert_eq!(leaf.cause().as_ref(), Some(&cause), "wrong cause");
            checked += 1;
        }
    }
    let observe_time = last_observed - t;
    let observed = observed.load(Ordering::Relaxed);
    assert_eq!(observed, children, "not every child observed cancellation");
    assert_eq!(checked, children);
    for ctx in &all {
        assert_eq!(ctx.err(), Some(Error::Canceled));
        assert_eq!(ctx.cause().as_ref(), Some(&cause), "wrong cause");
    }
    assert_eq!(request.cause().as_ref(), Some(&cause));

    let t = Instant::now();
    drop(all);
    drop(handles);
    let drop_time = t.elapsed();

    println!("ctxtree fan-out: {children} children x depth {depth} = {contexts} contexts, {WORKERS} worker threads");
    println!("(half the workers block in wait(), half poll is_done() every {POLL_EVERY:?})");
    println!();
    println!("  {:<34} {:>12} {:>14}", "phase", "total", "per context");
    println!("  {:<34} {:>12} {:>14}", "-----", "-----", "-----------");
    let row = |name: &str, d: Duration| {
        println!(
            "  {:<34} {:>12} {:>11.1} ns",
            name,
            format!("{d:.2?}"),
            ns_per(d, contexts)
        );
    };
    row("derive all", derive_time);
    row("cancel() returns (all is_done)", cancel_time);
    row("last leaf observed (from cancel)", observe_time);
    row("drop all handles and contexts", drop_time);
    println!();
    println!("  contexts derived                    {contexts:>12}");
    println!("  done when cancel() returned         {done_at_return:>12}");
    println!("  leaves observed done by workers     {observed:>12}");
    println!("  leaves with err Canceled and cause  {checked:>12}   (cause: \"{cause}\")");
    println!();
    println!(
        "ok: every context canceled with err {:?} and the root's cause",
        Error::Canceled
    );
    ExitCode::SUCCESS
}

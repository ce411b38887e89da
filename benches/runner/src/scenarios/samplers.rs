//! One sampler per scenario and implementation: what each scenario times.

use std::cell::RefCell;
use std::hint::black_box;
use std::rc::Rc;

use crate::alloc::Counting;
use crate::machine;
use crate::measure::{burst, per_op, per_op_rounds, Sampler, Stats};
use crate::ops::{self, build_chain, live_parent, one_child};
use crate::report::Cell;
use crate::tree::Tree;

use super::Config;

pub(super) fn derive_cancel_drop<T: Tree>(cfg: &Config) -> Option<Sampler> {
    let (parent, handle) = live_parent::<T>();
    Some(per_op(cfg.sampling.target, move |n| {
        let _keep = &handle;
        for _ in 0..n {
            one_child::<T>(&parent);
        }
    }))
}

pub(super) fn tokio_single_token(cfg: &Config) -> Option<Sampler> {
    let parent = tokio_util::sync::CancellationToken::new().child_token();
    Some(per_op(cfg.sampling.target, move |n| {
        for _ in 0..n {
            let child = black_box(&parent).child_token();
            child.cancel();
            drop(black_box(child));
        }
    }))
}

/// Where a sampler leaves a second metric of each sample.
pub(super) type CpuSide = Rc<RefCell<Vec<f64>>>;

/// Total M ops/s; CPU ns per op goes to `cpu`.
pub(super) fn shared_parent<T: Tree>(
    cfg: &Config,
    threads: usize,
    cpu: CpuSide,
) -> Option<Sampler> {
    let (parent, handle) = live_parent::<T>();
    let duration = cfg.burst;
    let _ = burst(threads, duration / 2, 64, parent.clone(), one_child::<T>); // warm-up
    Some(Box::new(move || {
        let _keep = &handle;
        let b = burst(threads, duration, 64, parent.clone(), one_child::<T>);
        assert!(!T::is_done(&parent));
        if let Some(c) = b.cpu.filter(|c| !c.is_zero()) {
            cpu.borrow_mut().push(c.as_nanos() as f64 / b.ops as f64);
        }
        b.ops as f64 / b.elapsed.as_secs_f64() / 1e6
    }))
}

pub(super) fn fanout<T: Tree>(cfg: &Config, n: usize) -> Option<Sampler> {
    Some(per_op_rounds(cfg.sampling.target, move || {
        let t = ops::Fanout::<T>::new(n).cancel();
        (t, n as u64)
    }))
}

/// Microseconds per chain.
pub(super) fn chain<T: Tree>(cfg: &Config, depth: usize) -> Option<Sampler> {
    let mut handles = Vec::with_capacity(depth);
    let mut ns = per_op(cfg.sampling.target, move |n| {
        for _ in 0..n {
            build_chain::<T>(depth, &mut handles);
        }
    });
    Some(Box::new(move || ns() / 1e3))
}

/// ns per call: CPU time of the calling threads / calls (wall time x
/// min(threads, cores) / calls where the OS does not tell CPU time).
pub(super) fn is_done<T: Tree>(cfg: &Config, threads: usize) -> Option<Sampler> {
    let (ctx, handle) = live_parent::<T>();
    let op = |c: &T::Ctx| {
        black_box(T::is_done(c));
    };
    let busy = threads.min(machine::cores()) as f64;
    let duration = cfg.burst;
    let _ = burst(threads, duration / 2, 4096, ctx.clone(), op);
    Some(Box::new(move || {
        let _keep = &handle;
        let b = burst(threads, duration, 4096, ctx.clone(), op);
        match b.cpu {
            Some(cpu) if !cpu.is_zero() => cpu.as_nanos() as f64 / b.ops as f64,
            _ => b.elapsed.as_nanos() as f64 * busy / b.ops as f64,
        }
    }))
}

/// Microseconds from cancel() to the last of `n` blocked threads awake.
pub(super) fn wake_threads<T: Tree>(_: &Config, n: usize) -> Option<Sampler> {
    Some(Box::new(move || {
        ops::wake_blocked_threads::<T>(n).as_nanos() as f64 / 1e3
    }))
}

/// Microseconds from cancel() until `cfg.async_tasks` tasks awaiting done()
/// have all finished, on a tokio current_thread runtime.
pub(super) fn wake_tasks<T: Tree>(cfg: &Config) -> Option<Sampler> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("build a tokio current_thread runtime");
    let n = cfg.async_tasks;
    let sample = move || ops::wake_tasks::<T>(&rt, n).as_nanos() as f64 / 1e3;
    let _ = sample(); // warm-up
    Some(Box::new(sample))
}

pub(super) fn with_timeout<T: Tree>(cfg: &Config) -> Option<Sampler> {
    let (parent, handle) = live_parent::<T>();
    ops::one_timeout::<T>(&parent)?;
    Some(per_op(cfg.sampling.target, move |n| {
        let _keep = &handle;
        for _ in 0..n {
            ops::one_timeout::<T>(&parent).expect("checked");
        }
    }))
}

/// One lookup of a key bound nowhere through `depth` value layers.
pub(super) fn value_lookup<T: Tree>(cfg: &Config, depth: usize) -> Option<Sampler> {
    let values = T::value_chain(depth)?;
    assert!(!T::value_missing(&values));
    Some(per_op(cfg.sampling.target, move |n| {
        for _ in 0..n {
            black_box(T::value_missing(black_box(&values)));
        }
    }))
}

/// Live bytes and allocation calls per child, over 10^4 live children.
/// Live bytes and allocations per child, counted on a fresh thread: a
/// thread that already ran other scenarios keeps freed nodes in ctxtree's
/// node cache (docs/design.md §6), and children taking those blocks would
/// read as cheaper than they are.
pub(super) fn memory<T: Tree>() -> (Cell, Cell) {
    std::thread::spawn(memory_on_this_thread::<T>)
        .join()
        .expect("the memory scenario's thread")
}

pub(super) fn memory_on_this_thread<T: Tree>() -> (Cell, Cell) {
    const N: usize = 10_000;
    // Warm-up on another parent: thread-locals and lazily allocated
    // per-thread state, without leaving garbage in the measured parent.
    {
        let (other, _h) = live_parent::<T>();
        for _ in 0..100 {
            let _ = T::derive(&other);
        }
    }
    let (parent, _h) = live_parent::<T>();
    let mut children = Vec::with_capacity(N);
    Counting::start();
    for _ in 0..N {
        children.push(T::derive(&parent));
    }
    let (bytes, allocs) = Counting::read();
    Counting::stop();
    drop(children);
    (
        Cell::Value(Stats::single(bytes as f64 / N as f64)),
        Cell::Value(Stats::single(allocs as f64 / N as f64)),
    )
}

//! Child processes: `ctxtree-bench __child deep|rss|loop IMPL ARGS...`, run
//! so that peak and resident memory are not polluted by the other
//! implementations (and, for `loop`, for profiling one operation alone).

use std::hint::black_box;
use std::process::Command;
use std::thread;
use std::time::Instant;

use crate::machine;
use crate::measure::Stats;
use crate::ops::{self, build_chain, live_parent, one_child};
use crate::report::{Cell, IMPLS};
use crate::tree::{CtxTree, MutexTree, TokioTree, Tree};

use super::Config;

/// The hidden subcommand's entry point. Prints one line of results.
pub fn child_main(args: &[String]) -> Result<(), String> {
    let [what, name, rest @ ..] = args else {
        return Err("usage: __child deep|rss|loop IMPL ARGS".into());
    };
    let num = |i: usize| -> Result<usize, String> {
        rest.get(i)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("__child {what}: missing or bad argument {i}"))
    };
    match (what.as_str(), name.as_str()) {
        ("deep", n) => {
            let (samples, depth) = (num(0)?, num(1)?);
            let line = match n {
                "ctxtree" => deep_child::<CtxTree>(samples, depth, 256 << 10),
                "mutex-tree" => deep_child::<MutexTree>(samples, depth, 1 << 30),
                "tokio-util" => deep_child::<TokioTree>(samples, depth, 1 << 30),
                _ => return Err(format!("unknown implementation {n}")),
            };
            println!("{line}");
        }
        ("rss", n) => {
            let cycles = num(0)?;
            let line = match n {
                "ctxtree" => rss_child::<CtxTree>(cycles),
                "mutex-tree" => rss_child::<MutexTree>(cycles),
                "tokio-util" => rss_child::<TokioTree>(cycles),
                _ => return Err(format!("unknown implementation {n}")),
            };
            println!("{line}");
        }
        ("loop", n) => {
            // For profilers (`valgrind --tool=callgrind ctxtree-bench __child
            // loop IMPL OP N`): OP's loop N times, untimed.
            let op = rest.first().map(String::as_str).unwrap_or("");
            let iters = num(1)?;
            match n {
                "ctxtree" => op_loop::<CtxTree>(op, iters)?,
                "mutex-tree" => op_loop::<MutexTree>(op, iters)?,
                "tokio-util" => op_loop::<TokioTree>(op, iters)?,
                _ => return Err(format!("unknown implementation {n}")),
            }
            println!("RESULT done");
        }
        _ => return Err(format!("unknown child job {what}")),
    }
    Ok(())
}

/// Runs one scenario's operation `iters` times: `derive` (derive + cancel +
/// drop), `fanout` (1000 children, cancel the parent), `chain1000`,
/// `is_done`, `timeout`.
pub(super) fn op_loop<T: Tree>(op: &str, iters: usize) -> Result<(), String> {
    let (parent, _h) = live_parent::<T>();
    match op {
        "derive" => (0..iters).for_each(|_| one_child::<T>(&parent)),
        "fanout" => {
            for _ in 0..iters {
                ops::Fanout::<T>::new(1000).cancel();
            }
        }
        "chain1000" => {
            let mut handles = Vec::with_capacity(1000);
            (0..iters).for_each(|_| build_chain::<T>(1000, &mut handles));
        }
        "is_done" => (0..iters).for_each(|_| {
            black_box(T::is_done(black_box(&parent)));
        }),
        "timeout" => {
            for _ in 0..iters {
                ops::one_timeout::<T>(&parent).ok_or("no deadlines in this implementation")?;
            }
        }
        "shared2" => {
            // Two threads, each running `iters` derive + cancel + drop from
            // the one shared parent (the `shared` scenario at 2 threads).
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| (0..iters).for_each(|_| one_child::<T>(&parent)));
                }
            });
        }
        _ => {
            return Err(format!(
                "unknown op '{op}' (derive, fanout, chain1000, is_done, timeout, shared2)"
            ))
        }
    }
    Ok(())
}

/// `RESULT <ns> <ns> ... peak=<bytes> base=<bytes>`
pub(super) fn deep_child<T: Tree>(samples: usize, depth: usize, stack: usize) -> String {
    let base = machine::rss_bytes().unwrap_or(0);
    let times = thread::Builder::new()
        .name("deep-chain".into())
        .stack_size(stack)
        .spawn(move || {
            let mut handles = Vec::with_capacity(depth);
            (0..samples)
                .map(|_| {
                    let start = Instant::now();
                    build_chain::<T>(depth, &mut handles);
                    start.elapsed().as_nanos()
                })
                .collect::<Vec<_>>()
        })
        .expect("spawn the deep-chain thread")
        .join()
        .expect("deep-chain thread panicked");
    let peak = machine::peak_rss_bytes().unwrap_or(0);
    let times: Vec<String> = times.iter().map(u128::to_string).collect();
    format!("RESULT {} peak={peak} base={base}", times.join(" "))
}

/// `RESULT before=<bytes> after=<bytes>`
pub(super) fn rss_child<T: Tree>(cycles: usize) -> String {
    let (parent, _h) = live_parent::<T>();
    for _ in 0..1000 {
        let _ = T::derive(&parent);
    }
    let before = machine::rss_bytes().unwrap_or(0);
    for _ in 0..cycles {
        let (ctx, handle) = T::derive(black_box(&parent));
        drop(handle);
        drop(black_box(ctx));
    }
    let after = machine::rss_bytes().unwrap_or(0);
    format!("RESULT before={before} after={after}")
}

pub(super) fn run_child(args: &[String]) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let out = Command::new(exe)
        .arg("__child")
        .args(args)
        .output()
        .map_err(|e| format!("spawn: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or("").to_string();
        return Err(format!("failed ({}) {last}", out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT ").map(str::to_string))
        .ok_or_else(|| "child printed no result".into())
}

pub(super) fn field(line: &str, key: &str) -> Result<f64, String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("child result lacks {key}"))
}

const MIB: f64 = 1024.0 * 1024.0;

/// One deep chain in a fresh child process: (ms, peak RSS growth in MiB).
pub(super) fn child_deep(name: &str, cfg: &Config) -> Result<(f64, f64), String> {
    let line = run_child(&[
        "deep".into(),
        name.into(),
        "1".into(),
        cfg.deep_depth.to_string(),
    ])?;
    let ns: f64 = line
        .split_whitespace()
        .find(|w| !w.contains('='))
        .and_then(|w| w.parse().ok())
        .ok_or("child reported no time")?;
    let peak = field(&line, "peak")? - field(&line, "base")?;
    Ok((ns / 1e6, peak / MIB))
}

/// `cfg.deep_samples` deep chains per implementation, each in its own
/// process (so the peak belongs to one chain), interleaved across
/// implementations. Returns (time cells, peak RSS cells).
pub(super) fn deep_chains(cfg: &Config) -> (Vec<Cell>, Vec<Cell>) {
    let mut times = vec![Vec::new(); IMPLS.len()];
    let mut peaks = vec![Vec::new(); IMPLS.len()];
    let mut failed: Vec<Option<String>> = vec![None; IMPLS.len()];
    for _ in 0..cfg.deep_samples {
        for (i, name) in IMPLS.iter().enumerate() {
            if failed[i].is_some() {
                continue;
            }
            match child_deep(name, cfg) {
                Ok((t, peak)) => {
                    times[i].push(t);
                    peaks[i].push(peak);
                }
                Err(e) => failed[i] = Some(e),
            }
        }
    }
    let cells = |values: Vec<Vec<f64>>| -> Vec<Cell> {
        values
            .into_iter()
            .zip(&failed)
            .map(|(v, f)| match f {
                Some(e) => Cell::Na(e.clone()),
                None => Cell::Value(Stats::from_samples(v)),
            })
            .collect()
    };
    (cells(times), cells(peaks))
}

pub(super) fn child_rss(name: &str, cfg: &Config) -> Result<(Stats, Stats), String> {
    let line = run_child(&["rss".into(), name.into(), cfg.rss_cycles.to_string()])?;
    let (before, after) = (field(&line, "before")?, field(&line, "after")?);
    Ok((
        Stats::single(after / MIB),
        Stats::single((after - before) / MIB),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_jobs_check_their_arguments() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(child_main(&args(&["loop", "ctxtree", "derive", "100"])).is_ok());
        assert!(child_main(&args(&["loop", "mutex-tree", "fanout", "2"])).is_ok());
        assert!(child_main(&args(&["loop", "tokio-util", "timeout", "1"])).is_err());
        assert!(child_main(&args(&["loop", "nope", "derive", "1"])).is_err());
        assert!(child_main(&args(&["loop", "ctxtree", "nope", "1"])).is_err());
        assert!(child_main(&args(&["rss", "ctxtree"])).is_err());
        assert!(child_main(&args(&["what"])).is_err());
    }
}

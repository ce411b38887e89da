//! Sampling: calibrated per-op timing, time-boxed multi-thread throughput, and
//! order statistics over the samples.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::machine;

/// How long and how often to sample.
#[derive(Clone, Copy, Debug)]
pub struct Sampling {
    /// Samples per cell (the median is reported).
    pub samples: usize,
    /// Minimum duration of one sample.
    pub target: Duration,
}

/// Order statistics of one cell's samples (results.json writes them as they
/// are, field for field).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub q1: f64,
    pub q3: f64,
    pub samples: Vec<f64>,
}

impl Stats {
    /// Panics on an empty or NaN sample set (a bug in a scenario).
    pub fn from_samples(mut samples: Vec<f64>) -> Stats {
        assert!(!samples.is_empty(), "no samples");
        let raw = samples.clone();
        samples.sort_by(|a, b| a.partial_cmp(b).expect("NaN sample"));
        let q = |p: f64| {
            // Linear interpolation between closest ranks.
            let pos = p * (samples.len() - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil() as usize;
            samples[lo] + (samples[hi] - samples[lo]) * (pos - lo as f64)
        };
        Stats {
            median: q(0.5),
            min: samples[0],
            max: samples[samples.len() - 1],
            q1: q(0.25),
            q3: q(0.75),
            samples: raw,
        }
    }

    pub fn single(value: f64) -> Stats {
        Stats::from_samples(vec![value])
    }
}

/// Takes one sample and returns its value.
pub type Sampler = Box<dyn FnMut() -> f64>;

/// A sampler for `run(iters)` (which performs `iters` operations): `iters` is
/// calibrated now, so that one sample lasts at least `target` (the
/// calibration runs are the warm-up); each sample returns ns per operation.
pub fn per_op(target: Duration, mut run: impl FnMut(u64) + 'static) -> Sampler {
    let mut iters: u64 = 1;
    loop {
        let t = time(|| run(iters));
        if t >= target {
            break;
        }
        // Aim at 1.2 x target, growing at most 100x per step.
        let scale = if t.is_zero() {
            100.0
        } else {
            (target.as_secs_f64() * 1.2 / t.as_secs_f64()).min(100.0)
        };
        iters = ((iters as f64 * scale).ceil() as u64).max(iters + 1);
    }
    Box::new(move || time(|| run(iters)).as_nanos() as f64 / iters as f64)
}

/// A sampler for operations that need an untimed setup: `round()` does its
/// own setup, times only the measured part and returns (time, ops). A sample
/// repeats rounds until it holds at least `target` of timed work and returns
/// ns per op. One untimed warm-up round runs now.
pub fn per_op_rounds(
    target: Duration,
    mut round: impl FnMut() -> (Duration, u64) + 'static,
) -> Sampler {
    let _ = round();
    Box::new(move || {
        let (mut t, mut ops) = (Duration::ZERO, 0u64);
        while t < target {
            let (dt, n) = round();
            t += dt;
            ops += n;
        }
        t.as_nanos() as f64 / ops.max(1) as f64
    })
}

/// Takes `samples` samples from each sampler, interleaved (one from each in
/// turn, the starting one rotating), so that drifting machine noise spreads
/// over all implementations instead of landing on one.
pub fn interleave(samples: usize, mut samplers: Vec<Option<Sampler>>) -> Vec<Option<Stats>> {
    let k = samplers.len();
    let mut values: Vec<Vec<f64>> = vec![Vec::with_capacity(samples); k];
    for s in 0..samples {
        for j in 0..k {
            let i = (s + j) % k;
            if let Some(sampler) = samplers[i].as_mut() {
                values[i].push(sampler());
            }
        }
    }
    values
        .into_iter()
        .map(|v| (!v.is_empty()).then(|| Stats::from_samples(v)))
        .collect()
}

fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

/// Result of one time-boxed multi-thread sample.
pub struct Burst {
    pub elapsed: Duration,
    pub ops: u64,
    /// CPU time the threads ran, summed, where the OS tells it.
    pub cpu: Option<Duration>,
}

/// Runs `op` in `threads` threads for about `duration`, each thread in
/// batches of `batch` calls between checks of the stop flag; each thread gets
/// a clone of `shared`. Elapsed time runs from the start barrier to the last
/// thread's end.
pub fn burst<S, F>(threads: usize, duration: Duration, batch: u64, shared: S, op: F) -> Burst
where
    S: Clone + Send + 'static,
    F: Fn(&S) + Copy + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, barrier, shared) = (Arc::clone(&stop), Arc::clone(&barrier), shared.clone());
            thread::spawn(move || {
                barrier.wait();
                let cpu_start = machine::thread_cpu_ns();
                let mut ops = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..batch {
                        op(black_box(&shared));
                    }
                    ops += batch;
                }
                let end = Instant::now();
                let cpu = match (cpu_start, machine::thread_cpu_ns()) {
                    (Some(a), Some(b)) => Some(Duration::from_nanos(b.saturating_sub(a))),
                    _ => None,
                };
                (end, ops, cpu)
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let (mut end, mut ops, mut cpu) = (start, 0, Some(Duration::ZERO));
    for w in workers {
        let (e, n, c) = w.join().expect("benchmark thread panicked");
        end = end.max(e);
        ops += n;
        cpu = cpu.zip(c).map(|(a, b)| a + b);
    }
    Burst {
        elapsed: end - start,
        ops,
        cpu,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_order_statistics() {
        let s = Stats::from_samples(vec![5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(
            (s.min, s.q1, s.median, s.q3, s.max),
            (1.0, 2.0, 3.0, 4.0, 5.0)
        );
        let s = Stats::from_samples(vec![1.0, 2.0]);
        assert_eq!(s.median, 1.5);
        assert_eq!(Stats::single(7.0).median, 7.0);
    }

    #[test]
    fn per_op_reaches_the_target() {
        let mut total = 0u64;
        let mut sampler = per_op(Duration::from_millis(2), move |n| {
            for i in 0..n {
                total = black_box(total.wrapping_add(i));
            }
        });
        assert!(sampler() > 0.0);
    }

    #[test]
    fn interleaving_keeps_samples_apart() {
        let mut a = 0.0;
        let mut b = 100.0;
        let out = interleave(
            3,
            vec![
                Some(Box::new(move || {
                    a += 1.0;
                    a
                })),
                None,
                Some(Box::new(move || {
                    b += 1.0;
                    b
                })),
            ],
        );
        assert_eq!(out[0].as_ref().unwrap().samples, vec![1.0, 2.0, 3.0]);
        assert!(out[1].is_none());
        assert_eq!(out[2].as_ref().unwrap().median, 102.0);
    }

    #[test]
    fn burst_counts_ops() {
        let b = burst(2, Duration::from_millis(5), 16, (), |_: &()| {});
        assert!(b.ops > 0 && b.ops % 16 == 0);
        assert!(b.elapsed >= Duration::from_millis(5));
    }
}

//! The blocked-thread wake rows, and beside the largest of them what the
//! kernel alone charges for the same wake-ups, sampled interleaved with the
//! three trees in the same run: `Thread::unpark` on each thread (what
//! ctxtree's waiter stack does, with no tree around it) and, on Linux, one
//! `FUTEX_WAKE` for all of them on one futex word (the least a broadcast
//! can cost). `docs/floor/wake_floor.rs` is the same measurement as a
//! standalone program.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::measure::{interleave, Sampler, Stats};
use crate::progress::Progress;
use crate::report::{Cell, Row, Unit, IMPLS};
use crate::tree::{CtxTree, MutexTree, TokioTree};

use super::samplers::wake_threads;
use super::{plural, Config};

/// How the floor wakes its threads.
#[derive(Clone, Copy)]
enum Floor {
    UnparkEach,
    #[cfg(target_os = "linux")]
    OneFutexWake,
}

impl Floor {
    fn all() -> Vec<Floor> {
        let mut all = vec![Floor::UnparkEach];
        #[cfg(target_os = "linux")]
        all.push(Floor::OneFutexWake);
        all
    }

    fn case(self) -> &'static str {
        match self {
            Floor::UnparkEach => "unpark",
            #[cfg(target_os = "linux")]
            Floor::OneFutexWake => "futex",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Floor::UnparkEach => "Thread::unpark on each",
            #[cfg(target_os = "linux")]
            Floor::OneFutexWake => "one FUTEX_WAKE for all",
        }
    }
}

/// One row per thread count; the largest also gets the floor rows.
pub(super) fn wake_rows(id: &str, cfg: &Config, p: &mut Progress) -> Vec<Row> {
    let mut rows = Vec::new();
    let largest = cfg.wake_threads.iter().copied().max();
    for &n in &cfg.wake_threads {
        let label = format!("wake {n} blocked thread{}", plural(n));
        p.step(&label);
        let floors = if Some(n) == largest {
            Floor::all()
        } else {
            Vec::new()
        };
        let mut samplers = vec![
            wake_threads::<CtxTree>(cfg, n),
            wake_threads::<MutexTree>(cfg, n),
            wake_threads::<TokioTree>(cfg, n),
        ];
        samplers.extend(floors.iter().map(|&f| Some(floor_sampler(n, f))));
        let mut stats = interleave(cfg.sampling.samples, samplers);
        let floor_stats = stats.split_off(IMPLS.len());
        let mut r = Row::new(id, &format!("threads={n}"), &label, Unit::Us, cells(stats));
        r.note = Some(
            "tokio-util has no blocking wait: futures::executor::block_on(cancelled())".into(),
        );
        rows.push(r);
        for (floor, stats) in floors.into_iter().zip(floor_stats) {
            rows.push(floor_row(id, n, floor, stats));
        }
    }
    rows
}

fn cells(stats: Vec<Option<Stats>>) -> Vec<Cell> {
    stats
        .into_iter()
        .map(|s| s.map_or_else(|| Cell::Na("n/a".into()), Cell::Value))
        .collect()
}

fn floor_row(id: &str, n: usize, floor: Floor, stats: Option<Stats>) -> Row {
    let label = format!(
        "wake {n} blocked thread{}: the kernel alone, {}",
        plural(n),
        floor.what()
    );
    let mut cells = vec![stats.map_or_else(|| Cell::Na("n/a".into()), Cell::Value)];
    cells.extend((1..IMPLS.len()).map(|_| Cell::Na("(the floor)".into())));
    let case = format!("threads={n},floor={}", floor.case());
    let mut r = Row::new(id, &case, &label, Unit::Us, cells);
    r.note = Some(
        "no tree: the same threads, wait and clock reads as the row above, woken by the \
         operating system alone; the same for every implementation"
            .into(),
    );
    r
}

fn floor_sampler(n: usize, floor: Floor) -> Sampler {
    Box::new(move || floor_round(n, floor).as_nanos() as f64 / 1e3)
}

/// `ops::wake_blocked_threads` without a tree: from the store that ends the
/// wait to the last of `n` threads awake.
fn floor_round(n: usize, floor: Floor) -> Duration {
    let word = Arc::new(AtomicU32::new(0));
    let ready = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(n + 1));
    let waiters: Vec<_> = (0..n)
        .map(|_| {
            let (word, ready, barrier) = (word.clone(), ready.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                ready.fetch_add(1, Ordering::SeqCst);
                while word.load(Ordering::Acquire) == 0 {
                    block(&word, floor);
                }
                Instant::now()
            })
        })
        .collect();
    let threads: Vec<_> = waiters.iter().map(|w| w.thread().clone()).collect();
    barrier.wait();
    while ready.load(Ordering::SeqCst) < n {
        thread::yield_now();
    }
    // As `ops::wake_blocked_threads`: give every thread time to block.
    thread::sleep(Duration::from_millis(2) + Duration::from_micros(100) * n as u32);
    let start = Instant::now();
    word.store(1, Ordering::Release);
    match floor {
        Floor::UnparkEach => threads.iter().for_each(|t| t.unpark()),
        #[cfg(target_os = "linux")]
        Floor::OneFutexWake => futex::wake_all(&word),
    }
    let last = waiters
        .into_iter()
        .map(|w| w.join().expect("a floor thread panicked"))
        .max()
        .expect("at least one thread");
    last - start
}

fn block(word: &AtomicU32, floor: Floor) {
    match floor {
        Floor::UnparkEach => thread::park(),
        #[cfg(target_os = "linux")]
        Floor::OneFutexWake => futex::wait(word, 0),
    }
}

#[cfg(target_os = "linux")]
mod futex {
    use std::sync::atomic::AtomicU32;

    /// Sleeps while `word` holds `expected` (or until a spurious wake-up).
    pub(super) fn wait(word: &AtomicU32, expected: u32) {
        // SAFETY: `word` is a valid, aligned futex word for the duration of
        // the call; a null timeout waits until woken.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word as *const AtomicU32,
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                expected,
                std::ptr::null::<libc::timespec>(),
            );
        }
    }

    /// Wakes every thread sleeping on `word`.
    pub(super) fn wake_all(word: &AtomicU32) {
        // SAFETY: `word` is a valid, aligned futex word.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word as *const AtomicU32,
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                i32::MAX,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every floor form wakes all its threads (a lost wake-up would hang).
    #[test]
    fn each_floor_wakes_every_thread() {
        for floor in Floor::all() {
            let took = floor_round(8, floor);
            assert!(took < Duration::from_secs(10), "{}", floor.what());
        }
    }
}

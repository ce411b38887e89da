//! What the operating system alone charges for waking 64 blocked threads:
//! 64 threads wait on one futex word, and the waker sets the word and wakes
//! them all with one `FUTEX_WAKE` system call (no per-thread unpark, no
//! mutex to re-acquire, nothing else). Measured as the runner's "wake 64
//! blocked threads" scenario measures a tree: from the store to the last
//! thread's clock read after its wait returned. Also times the per-thread
//! form (`Thread::unpark` on each, as ctxtree's waiter stack does) for the
//! comparison.
//!
//! Linux only. Not part of the build:
//! `rustc -O docs/floor/wake_floor.rs -o /tmp/wake && /tmp/wake`
//! (docs/benchmarks.md, "What limits ctxtree").

use std::os::raw::{c_int, c_long};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

extern "C" {
    fn syscall(number: c_long, ...) -> c_long;
}

const SYS_FUTEX: c_long = 202; // x86-64
const FUTEX_WAIT_PRIVATE: c_int = 128;
const FUTEX_WAKE_PRIVATE: c_int = 129;

fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: a valid futex word; a null timeout waits until woken.
    unsafe {
        syscall(
            SYS_FUTEX,
            word as *const AtomicU32,
            FUTEX_WAIT_PRIVATE,
            expected,
            std::ptr::null::<u8>(),
        );
    }
}

fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: a valid futex word.
    unsafe {
        syscall(SYS_FUTEX, word as *const AtomicU32, FUTEX_WAKE_PRIVATE, i32::MAX);
    }
}

/// Microseconds from the wake-up to the last of `n` threads awake.
fn round(n: usize, one_syscall: bool) -> f64 {
    let word = Arc::new(AtomicU32::new(0));
    let ready = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(n + 1));
    let waiters: Vec<_> = (0..n)
        .map(|_| {
            let (word, ready, barrier) = (word.clone(), ready.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                ready.fetch_add(1, Ordering::SeqCst);
                while word.load(Ordering::Acquire) == 0 {
                    if one_syscall {
                        futex_wait(&word, 0);
                    } else {
                        std::thread::park();
                    }
                }
                Instant::now()
            })
        })
        .collect();
    let threads: Vec<_> = waiters.iter().map(|w| w.thread().clone()).collect();
    barrier.wait();
    while ready.load(Ordering::SeqCst) < n {
        std::thread::yield_now();
    }
    // As the runner: give every thread time to block.
    std::thread::sleep(Duration::from_millis(2) + Duration::from_micros(100) * n as u32);
    let start = Instant::now();
    word.store(1, Ordering::Release);
    if one_syscall {
        futex_wake_all(&word);
    } else {
        threads.iter().for_each(|t| t.unpark());
    }
    let last = waiters
        .into_iter()
        .map(|w| w.join().unwrap())
        .max()
        .unwrap();
    (last - start).as_secs_f64() * 1e6
}

fn main() {
    for (name, one_syscall) in [("one FUTEX_WAKE", true), ("unpark each", false)] {
        let mut samples: Vec<f64> = (0..15).map(|_| round(64, one_syscall)).collect();
        samples.sort_by(f64::total_cmp);
        println!(
            "{name}: wake 64 blocked threads, median {:.0} µs (min {:.0}, max {:.0}, 15 rounds)",
            samples[7], samples[0], samples[14]
        );
    }
}

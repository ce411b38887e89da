// The files, each using only the ones above it:
//   decode.rs          the input language and its decoder
//   state.rs           the shared tree and each racing thread's state
//   tree_ops.rs        cancels and derivations      } a racing thread's
//   wait_ops.rs        reads, futures and waits     } operations
//   after_func_ops.rs  after_func and stop          }
//   group_ops.rs       task groups                  }
//   racer.rs           a racing thread
//   pool.rs            the worker threads
//   checks.rs          the invariants after join and at the end
//   driver.rs          `run` and `run_plan`: the tree, the threads, the checks

mod after_func_ops;
mod checks;
mod decode;
mod driver;
mod group_ops;
mod pool;
mod racer;
mod state;
mod tree_ops;
mod wait_ops;

// tests/fuzz_replay.rs compiles the harness as a private module and uses
// only some of these; the others would be unused imports there.
#[allow(unused_imports)]
pub use decode::{decode, Op, Parent, Plan, MAX_OPS};
#[allow(unused_imports)]
pub use driver::{run, run_plan};

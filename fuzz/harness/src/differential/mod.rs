// The files, each using only the ones above it:
//   decode.rs          the op language and its decoder
//   values.rs          the value keys
//   model.rs           the reference model of Go's rules
//   causes.rs          the causes handed to ctxtree, by id
//   registrations.rs   what an `after_func` function records
//   world.rs           the arena: ctxtree's side and the model's
//   tree_ops.rs        derivations and cancels   } the operations
//   wait_ops.rs        futures and waits         }
//   after_func_ops.rs  after_func and stop       }
//   checks.rs          the comparisons with the model
//   driver.rs          `run`: decode, then apply and check op by op

mod after_func_ops;
mod causes;
mod checks;
mod decode;
mod driver;
mod model;
mod registrations;
mod tree_ops;
mod values;
mod wait_ops;
mod world;

// tests/fuzz_replay.rs compiles the harness as a private module and uses
// only some of these; the others would be unused imports there.
#[allow(unused_imports)]
pub use decode::{decode, Op, CAUSE_KINDS, MAX_OPS};
#[allow(unused_imports)]
pub use driver::run;

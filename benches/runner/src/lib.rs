//! The parts of the comparison shared by the runner (`src/main.rs`) and the
//! criterion suite (`benches/peers.rs`): the [`tree::Tree`] trait over the
//! three implementations, the Go-style mutex tree, and the timed operations
//! (merges and task groups in `compose`, the fan-out server in `server`).

pub mod compose;
pub mod mutex_tree;
pub mod ops;
pub mod server;
pub mod tree;

//! The lock-free tree: the protocol every context operation runs on.
pub(crate) mod callback_pool;
pub(crate) mod children;
pub(crate) mod dispatch;
pub(crate) mod inline_stack;
pub(crate) mod node;
pub(crate) mod panics;
pub(crate) mod state;
pub(crate) mod trampoline;
pub(crate) mod waiters;

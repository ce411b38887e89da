//! Causes: every cause handed to ctxtree gets an id; ids 0 and 1 are the
//! inline context errors, 2 and 3 the shared messages, later ids are fresh
//! allocations (so distinct ids are distinct `Cause`s).

use ctxtree::{Cause, Error};

use super::super::common::CustomError;

pub(super) const CANCELED_ID: usize = 0;
pub(super) const DEADLINE_ID: usize = 1;

pub(super) enum Matcher {
    /// Equal to this `Cause` (same `Error`, or same allocation).
    Exact(Cause),
    /// A `CustomError(n)` that ctxtree boxed itself.
    Custom(u32),
}

pub(super) struct CauseRec {
    pub(super) matcher: Matcher,
    pub(super) display: String,
    pub(super) context_error: Option<Error>,
    /// The first `Cause` observed for this id: every later observation
    /// must be equal to it (inheritance shares the allocation).
    pub(super) seen: Option<Cause>,
}

impl CauseRec {
    pub(super) fn exact(cause: Cause, context_error: Option<Error>) -> CauseRec {
        CauseRec {
            display: cause.to_string(),
            matcher: Matcher::Exact(cause),
            context_error,
            seen: None,
        }
    }

    pub(super) fn matches(&self, got: &Cause) -> bool {
        match &self.matcher {
            Matcher::Exact(c) => c == got,
            Matcher::Custom(n) => got.downcast_ref::<CustomError>().map(|e| e.0) == Some(*n),
        }
    }
}

/// A cause to hand to ctxtree.
pub(super) enum CauseArg {
    /// An `Error` passed by value.
    Error(Error),
    Cause(Cause),
    /// A custom error passed by value (ctxtree boxes it).
    Custom(CustomError),
}

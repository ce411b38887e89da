//! The state word: one `AtomicUsize` per cancelable node holding its whole
//! lifecycle.
//!
//! ```text
//!   active:    [ waiter-stack head pointer ............ | 0 0 0 ]
//!   canceled:  [ cause pointer (or 0) ........ | H H H C E 1 ]
//!               bit 0  CANCELED
//!               bit 1  E: err is DeadlineExceeded (else Canceled)
//!               bit 2  C: with a 0 pointer, the cause is DeadlineExceeded
//!                         (else Canceled); ignored with a custom pointer
//!               bits 3–5  H: how the cancel reached this node ([`How`]):
//!                         0 = inherited from the parent, else how the
//!                         claim that started it was made
//! ```
//!
//! The waiter-stack pointer is to an 8-aligned entry (three tag bits); the
//! cause pointer is to a 64-aligned `Arc` payload (six). The word owns one
//! strong count of whatever its pointer names.
//!
//! Invariants:
//! - **S1** The word goes from active to canceled exactly once, by one
//!   compare-and-swap (the *claim*), and never changes again.
//! - **S2** The claim writes err and cause together: they are published by that
//!   same transition (Release) and read with one Acquire load, so a reader that
//!   sees an err also sees its cause, and at every instant
//!   `err().is_some()` ⇔ `is_done()` ⇔ a `done()` future is ready (there is
//!   no second flag to get out of order: Go issue 75533).
//! - **S3** The claim takes the whole waiter stack (the old word), so a waiter
//!   push (a CAS on the same word) either lands before the claim and is woken
//!   by the claimer, or fails because the word is already canceled.
//!
//! A cause that is just an [`Error`] is stored inline (pointer 0, bit C), so
//! storing it never allocates: a cancel without a custom cause puts nothing
//! on the heap for it. A child inheriting a custom cause shares its
//! allocation (one more strong count, [`retain`]).
//!
//! - **S4** How a word's cancel came (`H`) is written by the same claim as
//!   its err and cause: a claim of the node itself records how it was made,
//!   a copy of the parent's word (the walk's inherit, a child born canceled)
//!   records 0. So a node's origin is the nearest node, itself or an
//!   ancestor along `parent`, whose `H` is not 0; ancestors' words never
//!   change after their claims (S1), so that answer never changes either.
//!
//! Linearization: a cancel takes effect at its claim CAS (S1); `is_done`,
//! `err` and `cause` at their one Acquire load of the node's own word —
//! cancellation is pushed down eagerly (N3, N4), so no read walks ancestors.

use crate::error::{BoxedError, Cause, Error};

pub(crate) const CANCELED: usize = 0b001;
const ERR_DEADLINE: usize = 0b010;
const CAUSE_DEADLINE: usize = 0b100;
/// The tag bits of an active word (below the waiter-stack pointer).
pub(crate) const TAG_MASK: usize = 0b111;
const WAITER_PTR_MASK: usize = !TAG_MASK;
const HOW_SHIFT: u32 = 3;
const HOW_MASK: usize = 0b111 << HOW_SHIFT;
/// The tag bits of a canceled word (below the cause pointer).
const CANCELED_TAG_MASK: usize = TAG_MASK | HOW_MASK;
const CAUSE_PTR_MASK: usize = !CANCELED_TAG_MASK;

const _: () = assert!(std::mem::align_of::<BoxedError>() > CANCELED_TAG_MASK);

/// How a cancel reached a node (S4): copied from the parent, or the kind of
/// claim that started it. The public face is [`crate::OriginKind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum How {
    /// A copy of the parent's word: the cancel started above.
    Inherited = 0,
    /// `CancelHandle::cancel`/`cancel_with_cause`, or a handle's `Canceler`.
    Cancel = 1,
    /// The `CancelHandle` was dropped.
    HandleDropped = 2,
    /// The node's own deadline passed.
    Deadline = 3,
    /// A merged parent other than the primary ended (`merge.rs`).
    Merged = 4,
    /// A bridged tokio `CancellationToken` was cancelled.
    TokenBridge = 5,
    /// The tower layer's request was dropped before it finished.
    RequestAborted = 6,
    /// A task group canceled its context (a task failed, or shutdown).
    TaskGroup = 7,
}

impl How {
    /// How an origin's sentence ends, after the path of the node the
    /// cancel started at.
    pub(crate) fn sentence(self) -> &'static str {
        match self {
            How::Inherited | How::Cancel => " was canceled by its handle",
            How::HandleDropped => " was canceled when its handle was dropped",
            How::Deadline => " passed its deadline",
            How::Merged => " was canceled by a context merged into it",
            How::TokenBridge => " was canceled by its bridged CancellationToken",
            How::RequestAborted => " was canceled when its request was aborted",
            How::TaskGroup => " was canceled by its task group",
        }
    }
}

/// How the cancel recorded in a canceled `word` reached its node (S4).
#[inline]
pub(crate) fn how_of(word: usize) -> How {
    debug_assert!(is_canceled(word));
    match (word & HOW_MASK) >> HOW_SHIFT {
        0 => How::Inherited,
        1 => How::Cancel,
        2 => How::HandleDropped,
        3 => How::Deadline,
        4 => How::Merged,
        5 => How::TokenBridge,
        6 => How::RequestAborted,
        _ => How::TaskGroup,
    }
}

/// The word a child stores when it takes its parent's canceled `word` (S4):
/// the same err and cause, `H` = inherited. Owns a count only if the caller
/// [`retain`]ed one for it.
#[inline]
pub(crate) fn inherited(parent_word: usize) -> usize {
    debug_assert!(is_canceled(parent_word));
    parent_word & !HOW_MASK
}

/// The state word of a fresh, active node with no waiters.
pub(crate) const ACTIVE: usize = 0;

#[inline]
pub(crate) fn is_canceled(word: usize) -> bool {
    word & CANCELED != 0
}

/// The err recorded in `word`, `None` while active.
#[inline]
pub(crate) fn err_of(word: usize) -> Option<Error> {
    if !is_canceled(word) {
        None
    } else if word & ERR_DEADLINE != 0 {
        Some(Error::DeadlineExceeded)
    } else {
        Some(Error::Canceled)
    }
}

/// The waiter-stack head of an active word.
pub(crate) fn waiter_head(word: usize) -> usize {
    debug_assert!(!is_canceled(word));
    word & WAITER_PTR_MASK
}

/// Encodes a canceled word that owns the cause's strong count, made by a
/// claim of kind `how`.
pub(crate) fn canceled(err: Error, cause: Option<Cause>, how: How) -> usize {
    let err_bits = match err {
        Error::Canceled => CANCELED,
        Error::DeadlineExceeded => CANCELED | ERR_DEADLINE,
    };
    let (ptr, inline) = match cause {
        None => (0, Some(err)),
        Some(cause) => cause.into_raw(),
    };
    let cause_bits = match inline {
        Some(Error::DeadlineExceeded) => CAUSE_DEADLINE,
        _ => 0,
    };
    ptr | err_bits | cause_bits | (how as usize) << HOW_SHIFT
}

/// The cause recorded in a canceled `word`.
///
/// # Safety
/// `word` was loaded from a live node's state word (which keeps the cause's
/// strong count for the node's lifetime, S1).
pub(crate) unsafe fn cause_of(word: usize) -> Option<Cause> {
    if !is_canceled(word) {
        return None;
    }
    let ptr = word & CAUSE_PTR_MASK;
    if ptr == 0 {
        let inline = if word & CAUSE_DEADLINE != 0 {
            Error::DeadlineExceeded
        } else {
            Error::Canceled
        };
        Some(Cause::from_error(inline))
    } else {
        // SAFETY: the caller guarantees the word's owner is alive, so the
        // pointer still owns its count while we add ours.
        Some(unsafe { Cause::clone_from_raw(ptr) })
    }
}

/// Adds a strong count for one more copy of a canceled `word` (a child
/// inheriting its parent's err and cause shares the cause allocation).
///
/// # Safety
/// As for [`cause_of`].
pub(crate) unsafe fn retain(word: usize) {
    debug_assert!(is_canceled(word));
    let ptr = word & CAUSE_PTR_MASK;
    if ptr != 0 {
        // SAFETY: forwarded from the caller.
        unsafe { Cause::retain_raw(ptr) }
    }
}

/// Releases the count owned by a canceled `word` that will not be stored.
///
/// # Safety
/// `word` owns its count (came from [`canceled`] or [`retain`]) and is dropped.
pub(crate) unsafe fn release(word: usize) {
    debug_assert!(is_canceled(word));
    let ptr = word & CAUSE_PTR_MASK;
    if ptr != 0 {
        // SAFETY: forwarded from the caller.
        unsafe { Cause::release_raw(ptr) }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn encodings_round_trip() {
        // SAFETY: every word comes from `canceled` and owns one cause count;
        // `retain` adds one; each count is released exactly once, after the
        // last `cause_of` that reads it.
        unsafe {
            for err in [Error::Canceled, Error::DeadlineExceeded] {
                for cause in [Error::Canceled, Error::DeadlineExceeded] {
                    let w = canceled(err, Some(Cause::from(cause)), How::Cancel);
                    assert_eq!(err_of(w), Some(err));
                    let got = cause_of(w).unwrap();
                    assert_eq!(got.as_context_error(), Some(cause));
                    release(w);
                }
                let w = canceled(err, None, How::Deadline); // an inline cause owns no count
                assert_eq!(cause_of(w).unwrap().as_context_error(), Some(err));
            }
            let custom = Cause::msg("boom");
            let w = canceled(Error::Canceled, Some(custom.clone()), How::TaskGroup);
            assert_eq!(how_of(w), How::TaskGroup);
            retain(w);
            assert_eq!(how_of(inherited(w)), How::Inherited);
            assert_eq!(cause_of(inherited(w)), Some(custom.clone()));
            assert_eq!(cause_of(w), Some(custom.clone()));
            release(w); // the count from `canceled`
            release(w); // the count from `retain`
            assert_eq!(err_of(ACTIVE), None);
        }
    }
}

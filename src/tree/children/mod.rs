//! The children list: an intrusive, lock-free singly-linked list of a node's
//! cancelable children, threaded through the children themselves.
//!
//! The algorithm is Harris's list (Harris 2001, "A pragmatic implementation of
//! non-blocking linked-lists") specialised to what a cancellation tree needs:
//! inserts only at the head, logical deletion by a mark bit in the deleted
//! node's own `next`, and physical unlinking done in batches by a single
//! *sweeper* at a time, amortized over inserts, except that a deleted node
//! still first in the list when its last user leaves is unlinked from the
//! head by that user (L7). Memory is reclaimed with crossbeam-epoch: walkers
//! are pinned, and the list's reference to a node is ended through `defer`
//! unless the head word proves that no walker can reach it (L6, L7).
//!
//! ```text
//!   head (in the parent):  [ first child ptr ...... | HELPED SWEEPING CLOSED ]
//!   sharded head (L8):     [ ShardBlock ptr ....... | 1      0        0      ]
//!   link (in each child):  [ next sibling ptr ..... |        DETACHED DELETED ]
//! ```
//!
//! - `CLOSED`: the parent is canceled; no insert succeeds any more. While the
//!   pointer is still there, cancelers are walking the children; `CLOSED` with
//!   a 0 pointer means every descendant below is canceled (L3).
//! - `SWEEPING`: one thread owns the right to unlink marked nodes (L5).
//! - `HELPED`: a thread other than the closer walks (or walked) this closed
//!   list, so the closer must release through the epoch (L6).
//! - `DELETED`: the child canceled itself; it may be unlinked.
//! - `DETACHED`: the closer's claim pass has passed this child: its
//!   successor can no longer be unlinked, and the sweeper stops here (L4).
//!
//! Invariants:
//! - **L1** Every node that is not `DELETED` and was inserted before the
//!   list was closed is reachable from `head` by following `next` pointers.
//!   Only `DELETED` nodes are unlinked: by the sweeper, or by their last
//!   user from the head (L7).
//! - **L2** An insert succeeds only on an open head (CAS), and the close is a
//!   CAS setting `CLOSED` on the same word: every insert is ordered before
//!   the close (and the closer's walk sees it) or fails and sees `CLOSED`.
//! - **L3** The head is reset to `CLOSED | 0` only by the thread whose
//!   close (L2's CAS) closed it, and only once every descendant below is
//!   canceled. Every write to a head word is a read-modify-write (the reset
//!   is a `swap`), so loom models its modification order exactly
//!   (tokio-rs/loom#254).
//! - **L4** The list holds one reference to each linked node (its
//!   `LISTED` bit, N1). It is ended exactly once: by the sweeper if it
//!   unlinked the node, by the node's last user if it unlinked it from the
//!   head (L7), else by the closer.
//!   Where a sweeper ran at the close, the closer's claim pass sets `DETACHED`
//!   on each node it passes with an RMW that reads the successor: it reaches
//!   only nodes still linked, and every later unlink through a marked node
//!   fails. Where no sweeper ran, the closer needs no mark. The release goes
//!   through `Guard::defer`, so a pinned walker that reached the node can
//!   keep following it, unless L6 proves that no other thread can reach the
//!   node any more. Deferred releases are batched, never one per node: a
//!   walk defers at most one closure for everything it releases through the
//!   epoch, and a sweep one per batch of at most `UNLINK_BATCH` (32) nodes
//!   it unlinked from a list closed under it. So a pin defers at most one
//!   object, or one per 32 nodes of such a sweep, which crossbeam's
//!   collection (up to 8 bags of 64 objects every 128 pins) outpaces
//!   (crossbeam#566). A deferred batch of at least `FLUSH_BATCH` nodes (64
//!   outside loom and miri) is also flushed to the global queue.
//! - **L5** At most one sweeper runs (it owns `SWEEPING`). A sweep starts
//!   when the list's `budget = max(MIN_SWEEP, live nodes found by the last
//!   sweep)` runs out: an insert spends 1, and so does half of a *drop* —
//!   the last users of a node leaving it linked and `DELETED` (L7 could not
//!   unlink it) spend `DROP_COST` = 2 (on a sharded list, in the dropping
//!   thread's shard, whose sweeps look at the other shards in turn, L8).
//!   Each sweep walks O(n) nodes after Θ(n) inserts or drops, so removal is
//!   O(1) amortized, and the list holds at most about twice its live nodes
//!   plus `MIN_SWEEP` whatever happens — also when only drops happen, so a
//!   quiet parent whose children all left keeps at most `MIN_SWEEP` of them
//!   linked. A drop's sweeper holds a user of the list's node: the dropper
//!   takes it (a grant) while its listed child keeps the node alive, because
//!   the nodes the sweep unlinks hold the node by nothing until their
//!   release grants it (N1). Deleted nodes at the head are unlinked by the sweeper
//!   with `CAS(head: node | SWEEPING → successor | SWEEPING)`, expecting the
//!   head exactly as it left it (an insert or a close makes it fail); every
//!   other deleted node `cur` through `CAS(prev.next: cur → succ)` expecting
//!   `prev.next` unmarked: if `prev` was deleted meanwhile the CAS fails, and
//!   `cur` and every deleted node up to the next live one wait for the
//!   next sweep (the sweep *stalled*: their drops were counted toward this
//!   one, so L10 makes sure another follows); if `prev` is `DETACHED` the
//!   sweeper stops and leaves the rest to the closer. `cur` is `DELETED`, so only
//!   the sweeper could rewrite its pointer, and `succ` is current. The
//!   sweeper pins before it takes `SWEEPING`, so a closer's epoch release of
//!   the nodes it reads waits for it.
//! - **L6** A thread reaches a listed node without owning a count of it only
//!   while it is pinned and either sweeps the node's open list (owns
//!   `SWEEPING`), closed the list, or has set `HELPED` on the closed list with
//!   a read-modify-write that still returned a pointer. So a release may skip
//!   the epoch when the releaser's own RMW on the head proves the others
//!   absent: the sweeper's final `fetch_and(!SWEEPING)` finding the list open
//!   (a closer comes later in the head's modification order, synchronizes with
//!   that RMW, and walks a list the unlinks already left), or the closer's reset
//!   `swap` finding no `HELPED` when no sweeper ran at the close (a helper's
//!   `HELPED` RMW after the reset returns a null pointer and walks nothing).
//!   A walk finishes (resets) every list it owns before releasing any of
//!   their references: an immediate release can free a node whose own list
//!   it still has to reset. Linearization points: the sweeper's
//!   `fetch_and(!SWEEPING)` for a sweep's releases (for each earlier batch
//!   of a long sweep, its `fetch_add(0)` on the head), the closer's reset
//!   `swap` for a walk's.
//! - **L7** The last user of a listed node marked `DELETED` unlinks it if it
//!   is still first: `CAS(head: node → successor)` with no flag bits, where
//!   the successor is read from the node's link after the mark. The mark
//!   froze that successor (every unlink through a marked node fails), so it
//!   is current even if the head word returned to `node` meanwhile (ABA: a
//!   sweep started and ended, newer nodes came and left). The CAS succeeds
//!   only on an open list with no sweep running, so no thread walks the list
//!   at that moment, and a later walk starts past `node` (it has no
//!   predecessor): the caller takes the list's reference and may free the
//!   node at once (no epoch). The caller is still the last user at the
//!   CAS: users are cloned only from users, and grants only come from
//!   passes over the node's own children (a sweeper of its list holds a
//!   user itself; a walker that closed its list reached it through this
//!   list, closed, where the CAS fails) or from a drop's sweeper (L5),
//!   which grants itself a user only while a listed child with users keeps
//!   the node out of this case (its list is open, so it is not `DELETED`;
//!   or closed and not yet released, so a prepaid or child grant shows in
//!   the count), so once the count shows one none can appear; `LISTED` can be cleared only by a sweeper (which unlinks a
//!   first node only while holding `SWEEPING`, failing this CAS) or a
//!   closer (which closes the head), so the CAS succeeding proves neither
//!   did; the Acquire load of the count orders the other users' decrements
//!   before the free. If the CAS fails (a newer child was inserted, the
//!   list was closed, a sweep runs, or the node is in another thread's
//!   shard, L8), the last user drops its count and leaves the node linked
//!   and marked, for a sweep (L5: its drop counts toward one) or the closer
//!   (L4), which frees it. The
//!   sweeper's own head unlinks (L5) need `SWEEPING`, so they never race
//!   this one, and a node they removed never shows as first again. Acquire
//!   on the CAS orders every earlier walker's accesses to `node` (each walk
//!   ends with an RMW on the head) before that. Linearization point: the
//!   CAS.
//! - **L8** An insert that loses its CAS twice to other threads' inserts or
//!   unlinks (the head's pointer changed, the list is open) *shards* the list
//!   (under loom and in unit tests after one lost CAS, so the models reach
//!   it): `CAS(head: word → block | SHARDED)` where the block's first shard
//!   starts at `word`'s pointer (`shards.rs`). `SHARDED` is `HELPED` without
//!   `CLOSED`, a combination no plain head has (only closed lists are
//!   helped). It is refused while `SWEEPING` is set: the sweeper's releases
//!   rely on RMWs on the word it swept (L6). A sharded head is never written
//!   again; each shard is a plain list for which L1–L7 hold, inserts go to
//!   the calling thread's shard, L7 tries only the calling thread's shard (a
//!   node dropped by another thread than the one that derived it is left to
//!   its shard's sweep or the closer), and the close closes every shard (its
//!   `close` returns `Close::Sharded`, and the walk closes and walks each; a
//!   close that finds every shard finished, `CLOSED | 0`, skips the pin).
//!   Each sweep of a shard also sweeps one other shard, in turn, if that
//!   one had no insert since this shard last looked (`shards.rs`), so L5's
//!   bound holds for shards nobody inserts into any more.
//!   Why nothing is lost: before the sharding CAS the list was open and
//!   unswept, so no thread walked it (L6), and the nodes it held are the
//!   first shard's from the CAS on (the CAS continues the release sequences
//!   of their inserts, so a shard's closer sees them published); an insert
//!   or L7 unlink still aimed at the old word fails its CAS and retries on
//!   the shards or gives up; a sweep started on the old word finds it
//!   sharded and stops. The close is a CAS rather than a `fetch_or` so that
//!   `CLOSED` is never or'ed into a sharded word (`SHARDED | CLOSED` is a
//!   helped plain list). Linearization point of the sharding: its CAS.
//!
//! **L9** (a visit, for the tree dump: a sweep that unlinks nothing, and
//! may grant itself users of the live children it reaches) is stated in
//! `visit.rs`; L7's last user re-reads the count after its unlink for it.
//!
//! - **L10** No derive or drop sweeps more than `inline_sweep()` (1,024)
//!   nodes. A sweep due on one stops there (a sweep may stop anywhere: it
//!   renews the budget from what it saw and releases what it unlinked, as
//!   at the end), and so does one that finds another sweeper running (which
//!   may be the collector's, already past the nodes this count was for).
//!   Then a drop — or an insert whose part met a dead node — queues a
//!   *full* sweep of the node's lists (each shard) on the collector thread
//!   (`tree/collector.rs`, K1–K2), holding a user of the node taken as L5's
//!   dropper takes one; so does any sweep that stalled (L5: dead nodes left
//!   behind a node deleted under it, whose drops were counted toward this
//!   sweep and will not be counted again). An insert whose part met only live children (a
//!   fan-out being built) queues none: the dead nodes a list can hold were
//!   each counted by a drop, which queues its own; and an insert that finds
//!   a sweep running leaves the budget spent, so the next operation looks
//!   again. A queued sweep is the sweep of L5 on another thread; L1–L8 hold
//!   for it unchanged. It empties the budget as it starts: an insert or
//!   drop made while it runs may be behind its cursor, and the first drop
//!   is then due, finds it running and queues the next, which starts after
//!   it (K2) and sees them. The queued sweep runs again (queued anew, K2)
//!   if it stalled, if it found another sweeper or a visit holding the
//!   list (an inline sweep that stops at its limit having seen only live
//!   nodes hands nothing off, and the budget it renews hides the count
//!   that queued this one), or if the list was sharded since it looked.
//!   So a derive or a drop pays at most 1,024 node
//!   visits of collection, and the L5 bound holds a collector's sweep after
//!   the last count (milliseconds for 10⁶ nodes), with no operation to
//!   come. The cost is a queued job (one lock, deduplicated per node) per
//!   due sweep of a list longer than 1,024 nodes that holds dead nodes.

mod head;
mod link;
mod list;
pub(crate) mod shards;
mod sweep;
mod visit;

#[cfg(loom)]
pub use head::set_drop_sweeps;
pub(crate) use head::Close;
pub(crate) use link::{ChildLink, Listed};
pub(crate) use list::{ChildList, Release};
#[cfg(not(loom))]
pub(crate) use sweep::max_inline_sweep;
#[cfg(loom)]
pub use sweep::set_inline_sweep;
pub(crate) use sweep::{collect_deferred, release_later, Full, Sweep, SweepBudget, LARGE_WALK};
pub(crate) use visit::Visit;

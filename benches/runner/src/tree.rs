//! One small trait over the three context trees, so every scenario runs the
//! same code for each of them (monomorphized: no dynamic dispatch in loops).

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures::future::Either;

use crate::mutex_tree;

/// A context tree: derive children, cancel them (explicitly or by dropping the
/// handle), check and wait for cancellation.
pub trait Tree: 'static {
    /// Short name used in tables, JSON and on the command line.
    const NAME: &'static str;
    /// A context: cheap to clone, shareable across threads.
    type Ctx: Clone + Send + Sync + 'static;
    /// Cancels its context when [`Tree::cancel`] is called or when dropped.
    type Handle: Send + Sync + 'static;
    /// A `'static` future that resolves once the context is canceled.
    type Done: Future + Send + 'static;

    /// A root that is never canceled.
    fn background() -> Self::Ctx;
    /// Derives a cancelable child of `parent`.
    fn derive(parent: &Self::Ctx) -> (Self::Ctx, Self::Handle);
    /// Cancels the handle's context and its subtree.
    fn cancel(handle: &Self::Handle);
    /// True once the context is canceled.
    fn is_done(ctx: &Self::Ctx) -> bool;
    /// Blocks the calling thread until the context is canceled.
    fn wait(ctx: &Self::Ctx);
    /// A future for cancellation.
    fn done(ctx: &Self::Ctx) -> Self::Done;
    /// `with_timeout`, where the implementation has deadlines.
    fn with_timeout(parent: &Self::Ctx, timeout: Duration) -> Option<(Self::Ctx, Self::Handle)>;

    /// What [`Tree::merge`] returns beside the context: cancels it when
    /// dropped, and leaves nothing registered on the other context.
    type Merged: Send + Sync + 'static;
    /// A child of `primary` that is also canceled when `other` is: ctxtree's
    /// `merge`, or what a user of a peer without one writes (see each
    /// implementation). tokio-util's spawns a task: call it in a runtime.
    fn merge(primary: &Self::Ctx, other: &Self::Ctx) -> (Self::Ctx, Self::Merged);

    /// A context carrying values.
    type Values: Send + Sync + 'static;
    /// `depth` value layers with distinct keys (Go's DeepValue shape), where
    /// the implementation has values.
    fn value_chain(depth: usize) -> Option<Self::Values>;
    /// Looks up a key bound nowhere (Go looks up `-1`): the whole chain.
    fn value_missing(values: &Self::Values) -> bool;
}

/// ctxtree, the crate under test.
pub struct CtxTree;

impl Tree for CtxTree {
    const NAME: &'static str = "ctxtree";
    type Ctx = ctxtree::Context;
    type Handle = ctxtree::CancelHandle;
    type Done = ctxtree::DoneOwned;

    fn background() -> Self::Ctx {
        ctxtree::Context::background()
    }
    #[inline]
    fn derive(parent: &Self::Ctx) -> (Self::Ctx, Self::Handle) {
        parent.with_cancel()
    }
    #[inline]
    fn cancel(handle: &Self::Handle) {
        handle.cancel()
    }
    #[inline]
    fn is_done(ctx: &Self::Ctx) -> bool {
        ctx.is_done()
    }
    fn wait(ctx: &Self::Ctx) {
        ctx.wait();
    }
    fn done(ctx: &Self::Ctx) -> Self::Done {
        ctx.done_owned()
    }
    fn with_timeout(parent: &Self::Ctx, timeout: Duration) -> Option<(Self::Ctx, Self::Handle)> {
        Some(parent.with_timeout(timeout))
    }

    type Merged = ctxtree::CancelHandle;
    fn merge(primary: &Self::Ctx, other: &Self::Ctx) -> (Self::Ctx, Self::Merged) {
        primary.merge(other)
    }

    type Values = ctxtree::Context;
    fn value_chain(depth: usize) -> Option<Self::Values> {
        Some(values::chain(depth))
    }
    #[inline]
    fn value_missing(values: &Self::Values) -> bool {
        values.value::<values::Missing>().is_some()
    }
}

/// The Go-style mutex tree of [`mutex_tree`].
pub struct MutexTree;

impl Tree for MutexTree {
    const NAME: &'static str = "mutex-tree";
    type Ctx = mutex_tree::Ctx;
    type Handle = mutex_tree::Handle;
    type Done = mutex_tree::DoneFuture;

    fn background() -> Self::Ctx {
        mutex_tree::Ctx::background()
    }
    #[inline]
    fn derive(parent: &Self::Ctx) -> (Self::Ctx, Self::Handle) {
        parent.with_cancel()
    }
    #[inline]
    fn cancel(handle: &Self::Handle) {
        handle.cancel()
    }
    #[inline]
    fn is_done(ctx: &Self::Ctx) -> bool {
        ctx.is_done()
    }
    fn wait(ctx: &Self::Ctx) {
        ctx.wait();
    }
    fn done(ctx: &Self::Ctx) -> Self::Done {
        ctx.done()
    }
    fn with_timeout(parent: &Self::Ctx, timeout: Duration) -> Option<(Self::Ctx, Self::Handle)> {
        Some(parent.with_timeout(timeout))
    }

    /// Go's `AfterFunc` recipe (`mutex_tree::Ctx::merge`).
    type Merged = mutex_tree::MergeHandle;
    fn merge(primary: &Self::Ctx, other: &Self::Ctx) -> (Self::Ctx, Self::Merged) {
        primary.merge(other)
    }

    type Values = mutex_tree::ValueCtx;
    fn value_chain(depth: usize) -> Option<Self::Values> {
        let mut ctx = mutex_tree::ValueCtx::background();
        for key in 0..depth {
            ctx = ctx.with_value(key, key as u64);
        }
        Some(ctx)
    }
    #[inline]
    fn value_missing(values: &Self::Values) -> bool {
        values.value(usize::MAX).is_some()
    }
}

/// tokio-util's `CancellationToken`. It has no separate cancel handle, so the
/// handle is a second token (`clone()`) that cancels on drop, exactly what
/// `token.clone().drop_guard()` gives; it has no blocking wait, so `wait`
/// blocks on `cancelled()` with `futures::executor::block_on`; it has no
/// deadlines.
pub struct TokioTree;

/// `DropGuard` with a `cancel(&self)`.
pub struct TokioHandle(tokio_util::sync::CancellationToken);

impl Drop for TokioHandle {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl Tree for TokioTree {
    const NAME: &'static str = "tokio-util";
    type Ctx = tokio_util::sync::CancellationToken;
    type Handle = TokioHandle;
    type Done = tokio_util::sync::WaitForCancellationFutureOwned;

    fn background() -> Self::Ctx {
        tokio_util::sync::CancellationToken::new()
    }
    #[inline]
    fn derive(parent: &Self::Ctx) -> (Self::Ctx, Self::Handle) {
        let child = parent.child_token();
        let handle = TokioHandle(child.clone());
        (child, handle)
    }
    #[inline]
    fn cancel(handle: &Self::Handle) {
        handle.0.cancel()
    }
    #[inline]
    fn is_done(ctx: &Self::Ctx) -> bool {
        ctx.is_cancelled()
    }
    fn wait(ctx: &Self::Ctx) {
        futures::executor::block_on(ctx.cancelled());
    }
    fn done(ctx: &Self::Ctx) -> Self::Done {
        ctx.clone().cancelled_owned()
    }
    fn with_timeout(_: &Self::Ctx, _: Duration) -> Option<(Self::Ctx, Self::Handle)> {
        None
    }

    /// tokio-util has no merge, and a token cannot run code when another is
    /// canceled: users write a child token of `primary` and a task that
    /// cancels it when `other` is (a `select!` on both; the task also ends
    /// when the merged token does, so a dropped merge leaves nothing).
    type Merged = TokioHandle;
    fn merge(primary: &Self::Ctx, other: &Self::Ctx) -> (Self::Ctx, Self::Merged) {
        let merged = primary.child_token();
        let (other, link) = (other.clone(), merged.clone());
        tokio::spawn(async move {
            let (by_other, by_itself) = (pin!(other.cancelled()), pin!(link.cancelled()));
            if let Either::Left(_) = futures::future::select(by_other, by_itself).await {
                link.cancel();
            }
        });
        (merged.clone(), TokioHandle(merged))
    }

    /// tokio-util has no values.
    type Values = ();
    fn value_chain(_: usize) -> Option<Self::Values> {
        None
    }
    fn value_missing(_: &Self::Values) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread;
    use std::time::Instant;

    /// Cancel reaches children and grandchildren, not the parent or siblings.
    fn propagates<T: Tree>() {
        let root = T::background();
        let (parent, ph) = T::derive(&root);
        let (child, ch) = T::derive(&parent);
        let (grandchild, _gh) = T::derive(&child);
        let (sibling, _sh) = T::derive(&parent);
        assert!(!T::is_done(&grandchild));
        T::cancel(&ch);
        assert!(T::is_done(&child), "{}", T::NAME);
        assert!(T::is_done(&grandchild), "{}", T::NAME);
        assert!(!T::is_done(&parent), "{}", T::NAME);
        assert!(!T::is_done(&sibling), "{}", T::NAME);
        T::cancel(&ph);
        assert!(T::is_done(&sibling), "{}", T::NAME);
        assert!(!T::is_done(&root), "{}", T::NAME);
        // Born canceled under a canceled parent.
        let (late, _lh) = T::derive(&parent);
        assert!(T::is_done(&late), "{}", T::NAME);
    }

    /// Dropping a handle cancels its context.
    fn drop_cancels<T: Tree>() {
        let (parent, _ph) = T::derive(&T::background());
        let (child, ch) = T::derive(&parent);
        let (grandchild, _gh) = T::derive(&child);
        drop(ch);
        assert!(T::is_done(&child), "{}", T::NAME);
        assert!(T::is_done(&grandchild), "{}", T::NAME);
        assert!(!T::is_done(&parent), "{}", T::NAME);
    }

    /// A fan-out of children is canceled at once.
    fn fanout<T: Tree>() {
        let (parent, ph) = T::derive(&T::background());
        let kids: Vec<_> = (0..1000).map(|_| T::derive(&parent)).collect();
        T::cancel(&ph);
        assert!(kids.iter().all(|(c, _)| T::is_done(c)), "{}", T::NAME);
    }

    /// Threads blocked in `wait` wake on cancel, and not before.
    fn waits_wake<T: Tree>() {
        let (ctx, h) = T::derive(&T::background());
        let (child, _ch) = T::derive(&ctx);
        let woken = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let c = if i % 2 == 0 {
                    ctx.clone()
                } else {
                    child.clone()
                };
                let woken = Arc::clone(&woken);
                thread::spawn(move || {
                    T::wait(&c);
                    assert!(T::is_done(&c));
                    woken.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(30));
        assert_eq!(woken.load(Ordering::SeqCst), 0, "{}", T::NAME);
        T::cancel(&h);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(woken.load(Ordering::SeqCst), 4, "{}", T::NAME);
    }

    /// The `done` future is pending while live and resolves on cancel, also
    /// when polled by a real executor from another thread.
    fn done_resolves<T: Tree>() {
        use futures::task::noop_waker_ref;
        let (ctx, h) = T::derive(&T::background());
        let mut fut = Box::pin(T::done(&ctx));
        let mut cx = std::task::Context::from_waker(noop_waker_ref());
        assert!(fut.as_mut().poll(&mut cx).is_pending(), "{}", T::NAME);
        // A dropped pending future leaves nothing that blocks cancel.
        let mut other = Box::pin(T::done(&ctx));
        assert!(other.as_mut().poll(&mut cx).is_pending());
        drop(other);
        let waiter = {
            let fut = T::done(&ctx);
            thread::spawn(move || {
                futures::executor::block_on(fut);
            })
        };
        thread::sleep(Duration::from_millis(10));
        T::cancel(&h);
        waiter.join().unwrap();
        assert!(fut.as_mut().poll(&mut cx).is_ready(), "{}", T::NAME);
    }

    /// A 10^5-deep chain is built, canceled and dropped without overflowing a
    /// test thread's stack (the runner gives peers a big stack for 10^6).
    fn deep_chain<T: Tree>() {
        let (root, rh) = T::derive(&T::background());
        let mut handles = Vec::with_capacity(100_000);
        let mut ctx = root;
        for _ in 0..100_000 {
            let (c, h) = T::derive(&ctx);
            handles.push(h);
            ctx = c;
        }
        T::cancel(&rh);
        assert!(T::is_done(&ctx), "{}", T::NAME);
        drop(ctx);
        drop(handles);
    }

    fn timeout_fires<T: Tree>() {
        let (parent, _ph) = T::derive(&T::background());
        let start = Instant::now();
        let (ctx, _h) = T::with_timeout(&parent, Duration::from_millis(20)).unwrap();
        let (child, _ch) = T::derive(&ctx);
        let (long, lh) = T::with_timeout(&parent, Duration::from_secs(3600)).unwrap();
        let (inherits, _ih) = T::with_timeout(&ctx, Duration::from_secs(3600)).unwrap();
        assert!(!T::is_done(&inherits));
        T::wait(&child);
        assert!(T::is_done(&ctx));
        assert!(T::is_done(&inherits), "{}", T::NAME);
        assert!(start.elapsed() >= Duration::from_millis(19), "{}", T::NAME);
        assert!(!T::is_done(&long));
        T::cancel(&lh);
        assert!(T::is_done(&long));
        assert!(!T::is_done(&parent));
    }

    macro_rules! behaves {
        ($name:ident, $t:ty) => {
            mod $name {
                use super::*;
                #[test]
                fn cancel_propagates() {
                    propagates::<$t>();
                }
                #[test]
                fn dropping_the_handle_cancels() {
                    drop_cancels::<$t>();
                }
                #[test]
                fn fanout_is_canceled() {
                    fanout::<$t>();
                }
                #[test]
                fn blocked_threads_wake() {
                    waits_wake::<$t>();
                }
                #[test]
                fn done_future_resolves() {
                    done_resolves::<$t>();
                }
                #[test]
                fn deep_chain_is_fine() {
                    deep_chain::<$t>();
                }
            }
        };
    }

    #[test]
    fn value_chains_miss_the_missing_key_and_find_bound_ones() {
        for depth in [0, 1, 10, 100] {
            assert!(!CtxTree::value_missing(
                &CtxTree::value_chain(depth).unwrap()
            ));
            assert!(!MutexTree::value_missing(
                &MutexTree::value_chain(depth).unwrap()
            ));
        }
        let ctx = CtxTree::value_chain(100).unwrap();
        assert_eq!(ctx.value::<values::Layer<0>>().map(|l| l.0), Some(0));
        assert_eq!(ctx.value::<values::Layer<99>>().map(|l| l.0), Some(99));
        let m = MutexTree::value_chain(100).unwrap();
        assert_eq!(m.value(0), Some(0));
        assert_eq!(m.value(99), Some(99));
        assert!(TokioTree::value_chain(10).is_none());
    }

    behaves!(ctxtree_adapter, CtxTree);
    behaves!(mutex_tree_adapter, MutexTree);
    behaves!(tokio_adapter, TokioTree);

    #[test]
    fn ctxtree_timeout_fires() {
        timeout_fires::<CtxTree>();
    }

    #[test]
    fn mutex_tree_timeout_fires() {
        timeout_fires::<MutexTree>();
    }

    #[test]
    fn tokio_has_no_timeout() {
        let root = TokioTree::background();
        assert!(TokioTree::with_timeout(&root, Duration::from_secs(1)).is_none());
    }

    #[test]
    fn mutex_tree_children_leave_their_parent() {
        let (parent, _ph) = MutexTree::derive(&MutexTree::background());
        let kids: Vec<_> = (0..100).map(|_| MutexTree::derive(&parent)).collect();
        assert_eq!(parent.child_count(), 100);
        // Cancel every other one, then drop the rest in reverse order:
        // swap-remove must keep the stored indices right.
        for (_, h) in kids.iter().step_by(2) {
            MutexTree::cancel(h);
        }
        assert_eq!(parent.child_count(), 50);
        for kid in kids.into_iter().rev() {
            drop(kid);
        }
        assert_eq!(parent.child_count(), 0);
        for _ in 0..1000 {
            let _ = MutexTree::derive(&parent);
        }
        assert_eq!(parent.child_count(), 0);
    }

    #[test]
    fn mutex_tree_timer_heap_is_purged() {
        let (parent, _ph) = MutexTree::derive(&MutexTree::background());
        for _ in 0..10_000 {
            let (c, h) = MutexTree::with_timeout(&parent, Duration::from_secs(3600)).unwrap();
            drop(h);
            assert!(MutexTree::is_done(&c));
        }
        assert_eq!(parent.child_count(), 0);
        // Still fires after the purges.
        let (c, _h) = MutexTree::with_timeout(&parent, Duration::from_millis(5)).unwrap();
        MutexTree::wait(&c);
        assert_eq!(c.err(), Some(mutex_tree::Err::DeadlineExceeded));
        // A later deadline under an earlier one is a plain child (Go's rule).
        let (early, _eh) = MutexTree::with_timeout(&parent, Duration::from_secs(60)).unwrap();
        let (late, _lh) = MutexTree::with_timeout(&early, Duration::from_secs(3600)).unwrap();
        assert_eq!(late.deadline(), early.deadline());
    }
}

/// ctxtree's keys are types: 100 distinct key types for Go's DeepValue shape.
mod values {
    use ctxtree::Context;

    pub struct Layer<const N: usize>(#[allow(dead_code)] pub u64);

    /// A key bound nowhere.
    pub struct Missing;

    fn bind<const N: usize>(ctx: &Context, value: u64) -> Context {
        ctx.with_value(Layer::<N>(value))
    }

    const BINDERS: [fn(&Context, u64) -> Context; 100] = [
        bind::<0>, bind::<1>, bind::<2>, bind::<3>, bind::<4>, bind::<5>, bind::<6>, bind::<7>,
        bind::<8>, bind::<9>, bind::<10>, bind::<11>, bind::<12>, bind::<13>, bind::<14>,
        bind::<15>, bind::<16>, bind::<17>, bind::<18>, bind::<19>, bind::<20>, bind::<21>,
        bind::<22>, bind::<23>, bind::<24>, bind::<25>, bind::<26>, bind::<27>, bind::<28>,
        bind::<29>, bind::<30>, bind::<31>, bind::<32>, bind::<33>, bind::<34>, bind::<35>,
        bind::<36>, bind::<37>, bind::<38>, bind::<39>, bind::<40>, bind::<41>, bind::<42>,
        bind::<43>, bind::<44>, bind::<45>, bind::<46>, bind::<47>, bind::<48>, bind::<49>,
        bind::<50>, bind::<51>, bind::<52>, bind::<53>, bind::<54>, bind::<55>, bind::<56>,
        bind::<57>, bind::<58>, bind::<59>, bind::<60>, bind::<61>, bind::<62>, bind::<63>,
        bind::<64>, bind::<65>, bind::<66>, bind::<67>, bind::<68>, bind::<69>, bind::<70>,
        bind::<71>, bind::<72>, bind::<73>, bind::<74>, bind::<75>, bind::<76>, bind::<77>,
        bind::<78>, bind::<79>, bind::<80>, bind::<81>, bind::<82>, bind::<83>, bind::<84>,
        bind::<85>, bind::<86>, bind::<87>, bind::<88>, bind::<89>, bind::<90>, bind::<91>,
        bind::<92>, bind::<93>, bind::<94>, bind::<95>, bind::<96>, bind::<97>, bind::<98>,
        bind::<99>,
    ];

    /// `depth` (≤ 100) layers, each with its own key type.
    pub fn chain(depth: usize) -> Context {
        assert!(depth <= BINDERS.len(), "at most 100 distinct keys");
        let mut ctx = Context::background();
        for (i, bind) in BINDERS.iter().take(depth).enumerate() {
            ctx = bind(&ctx, i as u64);
        }
        ctx
    }
}

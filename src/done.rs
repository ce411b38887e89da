//! Waiting for cancellation: the `done()` futures and the blocking waits, all
//! built on one waiter registration (`tree/waiters/`).
//!
//! A future registers at most one waiter at a time; if it is polled with a
//! waker that would not wake the same task, it abandons that waiter and
//! registers a new one (waiters are immutable, so no `AtomicWaker` is needed).
//! Dropping a pending future abandons its waiter (W1, W4).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use crate::context::Context;
use crate::error::Error;
use crate::sync::{thread, Arc};
use crate::tree::node::Node;
use crate::tree::state;
use crate::tree::waiters::{self, Waiter};

/// Waiting for a context to end: the `Done` futures and blocking waits.
impl Context {
    /// A future that resolves to the context's err when it is canceled (Go's
    /// `<-ctx.Done()`). It is `Send` and cancel-safe: dropping it unregisters
    /// nothing that needs waiting for, and its memory is reclaimed. On a root
    /// context it never resolves.
    ///
    /// ```
    /// let (ctx, cancel) = ctxtree::Context::background().with_cancel();
    /// cancel.cancel();
    /// let err = futures::executor::block_on(ctx.done());
    /// assert_eq!(err, ctxtree::Error::Canceled);
    /// ```
    pub fn done(&self) -> Done<'_> {
        Done::new(self)
    }

    /// Like [`Context::done`], but owns a clone of the context, so it can be
    /// stored or moved into a spawned task (`'static`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use ctxtree::{Context, Error};
    ///
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// let watcher = tokio::spawn(ctx.done_owned()); // needs a `'static` future
    /// cancel.cancel();
    /// assert_eq!(watcher.await.unwrap(), Error::Canceled);
    /// # }
    /// ```
    pub fn done_owned(&self) -> DoneOwned {
        DoneOwned::new(self.clone())
    }

    /// A future that completes, with `()`, when the context is canceled:
    /// [`done`](Context::done) without the err, named like tokio-util's
    /// `CancellationToken::cancelled`, for APIs that want a
    /// `Future<Output = ()>`. On a root context it never completes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (ctx, cancel) = ctxtree::Context::background().with_cancel();
    /// cancel.cancel();
    /// ctx.cancelled().await;
    /// assert!(ctx.is_done());
    /// # }
    /// ```
    pub fn cancelled(&self) -> Cancelled<'_> {
        Cancelled {
            done: Done::new(self),
        }
    }

    /// Like [`cancelled`](Context::cancelled), owning a clone of the context
    /// (`'static`): the shutdown signal for axum's and hyper's
    /// `with_graceful_shutdown` and tonic's `serve_with_shutdown`, which take
    /// a `Future<Output = ()>`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use ctxtree::Context;
    ///
    /// async fn serve(shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
    ///     shutdown.await; // axum::serve(..).with_graceful_shutdown(shutdown)
    /// }
    ///
    /// let (root, stop) = Context::background().with_cancel();
    /// let server = tokio::spawn(serve(root.cancelled_owned()));
    /// stop.cancel(); // e.g. on SIGTERM
    /// server.await.unwrap();
    /// # }
    /// ```
    pub fn cancelled_owned(&self) -> CancelledOwned {
        CancelledOwned {
            done: DoneOwned::new(self.clone()),
        }
    }

    /// Blocks the calling thread until the context is canceled and returns
    /// its err. On a root context this blocks forever, like receiving from
    /// Go's nil `Done()` channel.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxtree::{Context, Error};
    ///
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// let canceler = std::thread::spawn(move || {
    ///     std::thread::sleep(Duration::from_millis(10));
    ///     cancel.cancel();
    /// });
    /// assert_eq!(ctx.wait(), Error::Canceled); // parked until the cancel
    /// canceler.join().unwrap();
    /// ```
    pub fn wait(&self) -> Error {
        wait(self.node())
    }

    /// Blocks until the context is canceled or `timeout` passes; `None` on
    /// timeout. A timeout too large to represent waits forever.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (ctx, _cancel) = ctxtree::Context::background().with_cancel();
    /// assert_eq!(ctx.wait_timeout(Duration::from_millis(1)), None);
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Error> {
        wait_timeout(self.node(), timeout)
    }
}

/// The registration a future holds between polls.
#[derive(Default)]
struct Registration {
    waiter: Option<Arc<Waiter>>,
}

impl Registration {
    fn poll(&mut self, node: &Node, cx: &mut TaskContext<'_>) -> Poll<Error> {
        if let Some(err) = node.err() {
            self.waiter = None; // the claimer took the stack (S3)
            return Poll::Ready(err);
        }
        if let Some(waiter) = &self.waiter {
            if waiter.will_wake(cx.waker()) {
                return Poll::Pending;
            }
            if waiter.abandon() {
                crate::tree::node::note_abandoned(node);
            }
            self.waiter = None;
        }
        let waiter = Waiter::for_task(cx.waker());
        match waiters::push(&node.state, waiter.clone()) {
            Ok(()) => {
                self.waiter = Some(waiter);
                Poll::Pending
            }
            Err(word) => Poll::Ready(canceled_err(word)),
        }
    }

    fn abandon(&mut self, node: &Node) {
        if let Some(waiter) = self.waiter.take() {
            if waiter.abandon() {
                crate::tree::node::note_abandoned(node);
            }
        }
    }
}

fn canceled_err(word: usize) -> Error {
    debug_assert!(state::is_canceled(word));
    state::err_of(word).unwrap_or(Error::Canceled)
}

/// The err of a node known to be canceled (its waiter was notified, which
/// happens after the claim, S3/W1).
fn err_after_notify(node: &Node) -> Error {
    canceled_err(node.state_word())
}

/// Future returned by [`Context::done`]: resolves to the context's err.
///
/// Select on it to stop other work when the context ends, as Go's
/// `select { case <-ctx.Done(): ... }` does:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use ctxtree::{Context, Error};
///
/// let (ctx, cancel) = Context::background().with_cancel();
/// let (jobs, mut queue) = tokio::sync::mpsc::unbounded_channel::<u32>();
/// let worker = tokio::spawn(async move {
///     let mut handled = 0;
///     loop {
///         tokio::select! {
///             biased;
///             Some(_job) = queue.recv() => handled += 1,
///             err = ctx.done() => return (handled, err),
///         }
///     }
/// });
/// jobs.send(1).unwrap();
/// jobs.send(2).unwrap();
/// cancel.cancel();
/// assert_eq!(worker.await.unwrap(), (2, Error::Canceled));
/// # }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Done<'a> {
    ctx: &'a Context,
    registration: Registration,
}

impl<'a> Done<'a> {
    pub(crate) fn new(ctx: &'a Context) -> Done<'a> {
        Done {
            ctx,
            registration: Registration::default(),
        }
    }
}

impl Done<'_> {
    /// The context's err now, without registering anything (one load).
    #[inline]
    pub(crate) fn err_now(&self) -> Option<Error> {
        self.ctx.err()
    }
}

impl Future for Done<'_> {
    type Output = Error;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Error> {
        let this = self.get_mut();
        match this.ctx.node() {
            Some(node) => this.registration.poll(node, cx),
            None => Poll::Pending,
        }
    }
}

impl Drop for Done<'_> {
    fn drop(&mut self) {
        if let Some(node) = self.ctx.node() {
            self.registration.abandon(node);
        }
    }
}

impl std::fmt::Debug for Done<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Done").field("ctx", self.ctx).finish()
    }
}

/// Future returned by [`Context::done_owned`]: like [`Done`], owning its
/// context so it is `'static`.
///
/// ```
/// let (ctx, cancel) = ctxtree::Context::background().with_cancel();
/// let done = ctx.done_owned();
/// let task = std::thread::spawn(move || futures::executor::block_on(done));
/// cancel.cancel();
/// assert_eq!(task.join().unwrap(), ctxtree::Error::Canceled);
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct DoneOwned {
    ctx: Context,
    registration: Registration,
}

impl DoneOwned {
    pub(crate) fn new(ctx: Context) -> DoneOwned {
        DoneOwned {
            ctx,
            registration: Registration::default(),
        }
    }

    /// The context this future waits on.
    ///
    /// ```
    /// let (ctx, cancel) = ctxtree::Context::background().with_cancel();
    /// let mut done = ctx.done_owned();
    /// let watcher = std::thread::spawn(move || {
    ///     futures::executor::block_on(&mut done);
    ///     done.context().cause() // the future carries its context along
    /// });
    /// cancel.cancel_with_cause(ctxtree::Cause::msg("user logged out"));
    /// assert_eq!(watcher.join().unwrap().unwrap().to_string(), "user logged out");
    /// ```
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The context's err now, without registering anything (one load).
    #[inline]
    pub(crate) fn err_now(&self) -> Option<Error> {
        self.ctx.err()
    }
}

impl Future for DoneOwned {
    type Output = Error;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Error> {
        let this = self.get_mut();
        match this.ctx.node() {
            Some(node) => this.registration.poll(node, cx),
            None => Poll::Pending,
        }
    }
}

impl Drop for DoneOwned {
    fn drop(&mut self) {
        if let Some(node) = self.ctx.node() {
            self.registration.abandon(node);
        }
    }
}

impl std::fmt::Debug for DoneOwned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoneOwned").field("ctx", &self.ctx).finish()
    }
}

/// `Context::wait`.
pub(crate) fn wait(node: Option<&crate::tree::node::NodeRef>) -> Error {
    let Some(node) = node else {
        loop {
            thread::park(); // a root is never canceled
        }
    };
    if let Some(err) = node.err() {
        return err;
    }
    let waiter = Waiter::for_thread();
    if let Err(word) = waiters::push(&node.state, waiter.clone()) {
        return canceled_err(word);
    }
    loop {
        if waiter.is_notified() {
            return err_after_notify(node);
        }
        thread::park(); // spurious wake-ups just loop
    }
}

/// `Context::wait_timeout`.
pub(crate) fn wait_timeout(
    node: Option<&crate::tree::node::NodeRef>,
    timeout: Duration,
) -> Option<Error> {
    let deadline = Instant::now().checked_add(timeout);
    let Some(node) = node else {
        park_until(deadline, || false);
        return None;
    };
    if let Some(err) = node.err() {
        return Some(err);
    }
    let waiter = Waiter::for_thread();
    if let Err(word) = waiters::push(&node.state, waiter.clone()) {
        return Some(canceled_err(word));
    }
    if park_until(deadline, || waiter.is_notified()) {
        return Some(err_after_notify(node));
    }
    if waiter.abandon() {
        crate::tree::node::note_abandoned(node);
        None
    } else {
        // Notified between the last check and the abandon: report it.
        Some(err_after_notify(node))
    }
}

/// Parks until `ready()` or the deadline (`None`: forever); returns `ready()`.
fn park_until(deadline: Option<Instant>, ready: impl Fn() -> bool) -> bool {
    loop {
        if ready() {
            return true;
        }
        match deadline {
            None => thread::park(),
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return false;
                }
                thread::park_timeout(deadline - now);
            }
        }
    }
}

/// The future returned by [`Context::cancelled`]: [`Done`] with `Output = ()`.
///
/// ```
/// let (ctx, cancel) = ctxtree::Context::background().with_cancel();
/// let cancelled: ctxtree::Cancelled<'_> = ctx.cancelled();
/// cancel.cancel();
/// futures::executor::block_on(cancelled);
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Cancelled<'a> {
    done: Done<'a>,
}

impl Future for Cancelled<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        Pin::new(&mut self.get_mut().done).poll(cx).map(drop)
    }
}

impl std::fmt::Debug for Cancelled<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancelled")
            .field("ctx", &self.done.ctx)
            .finish()
    }
}

/// The future returned by [`Context::cancelled_owned`]: [`DoneOwned`] with
/// `Output = ()`, `Send + 'static`.
///
/// ```
/// let (ctx, cancel) = ctxtree::Context::background().with_cancel();
/// let cancelled: ctxtree::CancelledOwned = ctx.cancelled_owned();
/// let watcher = std::thread::spawn(move || futures::executor::block_on(cancelled));
/// cancel.cancel();
/// watcher.join().unwrap();
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct CancelledOwned {
    done: DoneOwned,
}

impl CancelledOwned {
    /// The context this future waits on.
    ///
    /// ```
    /// let ctx = ctxtree::Context::background();
    /// assert!(ctx.cancelled_owned().context().same(&ctx));
    /// ```
    pub fn context(&self) -> &Context {
        self.done.context()
    }
}

impl Future for CancelledOwned {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        Pin::new(&mut self.get_mut().done).poll(cx).map(drop)
    }
}

impl std::fmt::Debug for CancelledOwned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelledOwned")
            .field("ctx", self.done.context())
            .finish()
    }
}

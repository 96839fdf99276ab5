//! Hierarchical cancellation tokens.

mod future;
mod guard;
mod tree;

use std::fmt;

pub use self::future::Cancelled;
pub use self::guard::DropGuard;
use self::tree::Link;
use crate::sync::Arc;

/// A token that can be cancelled once, with children that are cancelled with it.
///
/// Cloning a token gives another handle to the *same* token; [`child`](Self::child) makes a new
/// token that is cancelled when this one is (never the other way round).
///
/// - [`is_cancelled`](Self::is_cancelled) is a single atomic load, no lock: check it in hot loops.
/// - [`cancelled`](Self::cancelled) is a future that works on any executor.
/// - [`wait_blocking`](Self::wait_blocking) parks a plain thread until cancellation.
/// - Children that are dropped are forgotten by their parent, so creating and dropping any
///   number of them keeps memory flat.
///
/// # Examples
///
/// ```
/// use deputy_core::CancellationToken;
///
/// let root = CancellationToken::new();
/// let request = root.child();
/// let worker = std::thread::spawn({
///     let request = request.clone();
///     move || {
///         request.wait_blocking();
///         "stopped"
///     }
/// });
///
/// assert!(root.cancel());          // this call cancelled it
/// assert!(!root.cancel());         // later calls do nothing
/// assert!(request.is_cancelled()); // the subtree is cancelled too
/// assert_eq!(worker.join().unwrap(), "stopped");
/// futures::executor::block_on(request.cancelled()); // resolves at once now
/// ```
#[derive(Clone)]
pub struct CancellationToken {
    link: Arc<Link>,
}

impl CancellationToken {
    /// Creates a new, uncancelled root token.
    ///
    /// ```
    /// let token = deputy_core::CancellationToken::new();
    /// assert!(!token.is_cancelled());
    /// ```
    pub fn new() -> Self {
        Self {
            link: Link::new_root(),
        }
    }

    /// Creates a child token: cancelled when `self` is, and cancellable on its own without
    /// affecting `self`. A child of a cancelled token is born cancelled.
    ///
    /// ```
    /// let parent = deputy_core::CancellationToken::new();
    /// let child = parent.child();
    /// child.cancel();
    /// assert!(!parent.is_cancelled());
    /// ```
    pub fn child(&self) -> Self {
        Self {
            link: Link::child(&self.link),
        }
    }

    /// Cancels this token and every token below it. Returns `true` if this call cancelled it,
    /// `false` if it was cancelled already.
    ///
    /// ```
    /// let token = deputy_core::CancellationToken::new();
    /// assert!(token.cancel());
    /// assert!(!token.cancel());
    /// ```
    pub fn cancel(&self) -> bool {
        self.link.core.cancel()
    }

    /// Whether this token is cancelled: one atomic load.
    ///
    /// ```
    /// let token = deputy_core::CancellationToken::new();
    /// let child = token.child();
    /// token.cancel();
    /// assert!(child.is_cancelled());
    /// ```
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.link.core.is_cancelled()
    }

    /// A future that resolves once this token is cancelled: by [`cancel`](Self::cancel) on
    /// it or on any token above it, or at once if that happened already.
    ///
    /// The future owns the token's place in the tree, so it needs nothing else kept alive:
    /// `root.child().cancelled()` made from a temporary, stored, moved into a spawned task
    /// or pinned in a `select!` loop still resolves when `root` is cancelled. A token that
    /// is never cancelled (its whole line of ancestors dropped uncancelled) leaves the
    /// future pending for good.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it resolves has no effect on the token, and a
    /// new call returns a future that resolves at the same moment.
    ///
    /// ```
    /// let token = deputy_core::CancellationToken::new();
    /// let waiting = token.cancelled();
    /// token.cancel();
    /// futures::executor::block_on(waiting);
    /// ```
    pub fn cancelled(&self) -> Cancelled {
        Cancelled::new(self.link.clone())
    }

    /// Blocks the current thread until this token is cancelled. The blocking twin of
    /// [`cancelled`](Self::cancelled), for threads that are not async tasks; never call it
    /// from inside an async task.
    ///
    /// ```
    /// let token = deputy_core::CancellationToken::new();
    /// token.cancel();
    /// token.wait_blocking(); // returns at once
    /// ```
    pub fn wait_blocking(&self) {
        /// Wakes the waiting thread.
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
        let mut cx = std::task::Context::from_waker(&waker);
        let mut cancelled = self.cancelled();
        // A wake that lands before the park leaves the thread's token set: no wake is lost.
        while std::pin::Pin::new(&mut cancelled)
            .poll(&mut cx)
            .is_pending()
        {
            std::thread::park();
        }
    }

    /// Returns a guard that cancels this token when dropped, unless
    /// [`disarm`](DropGuard::disarm)ed first.
    ///
    /// ```
    /// let token = deputy_core::CancellationToken::new();
    /// {
    ///     let _guard = token.clone().drop_guard();
    /// }
    /// assert!(token.is_cancelled());
    /// ```
    pub fn drop_guard(self) -> DropGuard {
        DropGuard::new(self)
    }

    #[cfg(all(test, not(loom)))]
    pub(crate) fn live_children(&self) -> usize {
        self.link.core.live_children()
    }
}

impl Default for CancellationToken {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CancellationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancellationToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn dropped_children_leave_their_parent() {
        let root = CancellationToken::new();
        let a = root.child();
        let b = a.child();
        assert_eq!(root.live_children(), 1);
        assert_eq!(a.live_children(), 1);
        drop(b);
        assert_eq!(a.live_children(), 0);
        drop(a);
        assert_eq!(root.live_children(), 0);
    }

    #[test]
    fn cancelling_empties_the_children_list() {
        let root = CancellationToken::new();
        let kept: Vec<_> = (0..10).map(|_| root.child()).collect();
        root.cancel();
        assert_eq!(root.live_children(), 0);
        assert!(kept.iter().all(CancellationToken::is_cancelled));
        // Late children are born cancelled and are not registered.
        let late = root.child();
        assert!(late.is_cancelled());
        assert_eq!(root.live_children(), 0);
    }
}

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::tree::Link;
use crate::sync::Arc;

/// The future returned by [`CancellationToken::cancelled`](super::CancellationToken::cancelled).
///
/// It owns the token's place in the tree (tree invariant 4), not only its flag: so it is
/// reached by every cancel above it even when every handle of its token is gone, as with
/// `shutdown.draining_token().cancelled()` stored, spawned or pinned in a `select!` loop.
///
/// Waiting costs one slot holding the task's waker; cancelling wakes every waiter from one
/// list, with no lock held.
///
/// ```
/// use deputy_core::{CancellationToken, Cancelled};
///
/// let root = CancellationToken::new();
/// // Stored while its token is a temporary: it still hears the root's cancel.
/// let cancelled: Cancelled = root.child().cancelled();
/// root.cancel();
/// futures::executor::block_on(cancelled);
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct Cancelled {
    link: Arc<Link>,
    /// Its waker's slot in the core's slab, while registered.
    key: Option<usize>,
}

impl Cancelled {
    pub(super) fn new(link: Arc<Link>) -> Self {
        Self { link, key: None }
    }
}

impl Future for Cancelled {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Self { link, key } = &mut *self;
        let core = &link.core;
        if core.is_cancelled() || !core.register(key, cx.waker()) {
            // The slot, if any, went with the slab the cancelling call took.
            *key = None;
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for Cancelled {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.link.core.deregister(key);
        }
    }
}

impl fmt::Debug for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancelled")
            .field("cancelled", &self.link.core.is_cancelled())
            .finish_non_exhaustive()
    }
}

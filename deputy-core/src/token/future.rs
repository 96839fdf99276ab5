use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::tree::Core;
use crate::sync::Arc;

/// The future returned by [`CancellationToken::cancelled`](super::CancellationToken::cancelled).
///
/// Waiting costs one slab slot holding the task's waker; cancelling wakes every waiter
/// from one list, with no lock held.
#[must_use = "futures do nothing unless awaited"]
pub struct Cancelled {
    core: Arc<Core>,
    /// Its waker's slot in the core's slab, while registered.
    key: Option<usize>,
}

impl Cancelled {
    pub(super) fn new(core: Arc<Core>) -> Self {
        Self { core, key: None }
    }
}

impl Future for Cancelled {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Self { core, key } = &mut *self;
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
            self.core.deregister(key);
        }
    }
}

impl fmt::Debug for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancelled")
            .field("cancelled", &self.core.is_cancelled())
            .finish_non_exhaustive()
    }
}

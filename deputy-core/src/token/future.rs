use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use event_listener::EventListener;

use super::tree::Core;
use crate::sync::Arc;
use crate::wait::poll_until;

/// The future returned by [`CancellationToken::cancelled`](super::CancellationToken::cancelled).
#[must_use = "futures do nothing unless awaited"]
pub struct Cancelled {
    core: Arc<Core>,
    listener: Option<EventListener>,
}

impl Cancelled {
    pub(super) fn new(core: Arc<Core>) -> Self {
        Self {
            core,
            listener: None,
        }
    }
}

impl Future for Cancelled {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Self { core, listener } = &mut *self;
        poll_until(
            listener,
            cx,
            || core.listen(),
            || core.is_cancelled().then_some(()),
        )
    }
}

impl fmt::Debug for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancelled")
            .field("cancelled", &self.core.is_cancelled())
            .finish_non_exhaustive()
    }
}

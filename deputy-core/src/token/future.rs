use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use event_listener::EventListener;

use super::tree::Core;
use crate::sync::Arc;

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
        let this = &mut *self;
        loop {
            if this.core.is_cancelled() {
                this.listener = None;
                return Poll::Ready(());
            }
            match &mut this.listener {
                // Register, then loop to re-check the flag: a cancellation that happened
                // before the registration notified nobody.
                None => this.listener = Some(this.core.listen()),
                Some(listener) => {
                    ready!(Pin::new(listener).poll(cx));
                    this.listener = None;
                }
            }
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

//! The stream of a shutdown's transitions, read from the shared log in order.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use event_listener::EventListener;
use futures::Stream;

use super::shared::{Next, Shared};
use super::status::Transition;
use crate::wait::poll_until;

/// The stream returned by [`Shutdown::transitions`](crate::Shutdown::transitions): every state
/// entered and every phase started, in order, from the first trigger on. Nothing is skipped,
/// however late the stream is polled; it ends after `Done`.
///
/// ```
/// use std::time::Duration;
/// use deputy_core::{ManualClock, ShutdownCoordinator};
///
/// let coordinator = ShutdownCoordinator::builder()
///     .drain_delay(Duration::ZERO)
///     .build(ManualClock::new())
///     .unwrap();
/// let shutdown = coordinator.handle();
/// shutdown.trigger("deploy");
/// let report = futures::executor::block_on(coordinator.run());
/// use futures::StreamExt;
/// let states: Vec<_> = futures::executor::block_on(shutdown.transitions().collect::<Vec<_>>());
/// assert_eq!(states.last().unwrap().state, deputy_core::State::Done);
/// ```
#[must_use = "streams do nothing unless polled"]
pub struct Transitions {
    shared: Arc<Shared>,
    next: usize,
    listener: Option<EventListener>,
}

impl Transitions {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            next: 0,
            listener: None,
        }
    }
}

impl Stream for Transitions {
    type Item = Transition;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Transition>> {
        let Self {
            shared,
            next,
            listener,
        } = &mut *self;
        poll_until(
            listener,
            cx,
            || shared.listen(),
            || match shared.transition(*next) {
                Next::Entry(entry) => {
                    *next += 1;
                    Some(Some(entry))
                }
                // The log ends with Done (shared invariant 3).
                Next::End => Some(None),
                Next::Pending => None,
            },
        )
    }
}

impl fmt::Debug for Transitions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transitions")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

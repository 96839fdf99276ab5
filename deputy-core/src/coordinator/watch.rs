use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use event_listener::EventListener;
use futures::Stream;

use super::shared::Shared;
use crate::State;
use crate::wait::poll_until;

/// One step of a shutdown: a state entered, or (while stopping) a phase started.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transition {
    /// The state entered (or still in, when a new phase starts).
    pub state: State,
    /// The phase that started, while stopping.
    pub phase: Option<String>,
    /// Time since the first trigger.
    pub at: Duration,
}

/// The stream returned by [`Shutdown::transitions`](crate::Shutdown::transitions): every state
/// entered and every phase started, in order, from the first trigger on. Nothing is skipped,
/// however late the stream is polled; it ends after `Done`.
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
            || {
                let inner = shared.inner();
                if let Some(item) = inner.transitions.get(*next) {
                    *next += 1;
                    return Some(Some(item.clone()));
                }
                // The log ends with Done (shared invariant 3).
                let ended = inner
                    .transitions
                    .last()
                    .is_some_and(|t| t.state == State::Done);
                ended.then_some(None)
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

/// A snapshot of a shutdown, for status endpoints and progress lines; from
/// [`Shutdown::status`](crate::Shutdown::status).
///
/// ```
/// use deputy_core::{ManualClock, ShutdownCoordinator, State};
///
/// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
/// let shutdown = coordinator.handle();
/// let _request = shutdown.guard();
/// shutdown.trigger("deploy");
/// let status = shutdown.status();
/// assert_eq!((status.state, status.in_flight, status.ready, status.live), (State::Draining, 1, false, true));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// The current state.
    pub state: State,
    /// The phase running, while stopping.
    pub phase: Option<String>,
    /// Work in flight.
    pub in_flight: usize,
    /// Readiness as a load balancer should see it.
    pub ready: bool,
    /// Liveness.
    pub live: bool,
    /// Time since the first trigger (zero before it).
    pub elapsed: Duration,
}

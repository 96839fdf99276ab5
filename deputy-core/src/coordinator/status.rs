//! What a shutdown looks like from outside: the steps it went through and where it stands.

use std::time::Duration;

use crate::{Propagation, State, Straggler};

/// One step of a shutdown: a state entered, or (while stopping) a phase started.
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
/// let first = futures::executor::block_on(shutdown.transitions().next()).unwrap();
/// assert_eq!((first.state, first.phase, first.at), (deputy_core::State::Draining, None, Duration::ZERO));
/// ```
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
    /// When the last new connection and request arrived after the trigger (see
    /// [`Shutdown::arrived`](crate::Shutdown::arrived)).
    pub propagation: Propagation,
    /// The oldest named work in flight, by name, oldest first (at most 5 names).
    pub stragglers: Vec<Straggler>,
    /// What the service last said it is doing ([`Shutdown::set_message`](crate::Shutdown::set_message)).
    pub message: Option<String>,
    /// Time since the first trigger (zero before it).
    pub elapsed: Duration,
}

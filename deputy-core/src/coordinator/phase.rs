use std::borrow::Cow;
use std::time::Duration;

/// The timeout a phase gets unless told otherwise.
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
/// // Every default phase ran with it.
/// assert!(report.phases.iter().all(|p| p.timeout == deputy_core::DEFAULT_PHASE_TIMEOUT));
/// ```
pub const DEFAULT_PHASE_TIMEOUT: Duration = Duration::from_secs(3);

/// The phases every coordinator has unless
/// [`without_default_phases`](crate::Builder::without_default_phases) is called, in this
/// order. Libraries add their hooks to these without knowing the application's own phases.
pub mod phases {
    /// Stop accepting new work: close listeners, stop consumers polling.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator, phases};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// coordinator
    ///     .hook(phases::STOP_ACCEPTING, "consumer", |_| async { /* stop polling the queue */ })
    ///     .unwrap();
    /// ```
    pub const STOP_ACCEPTING: &str = "stop-accepting";
    /// Flush what is buffered: producers, batched writers, logs and metrics exporters.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator, phases};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// coordinator
    ///     .hook(phases::FLUSH, "producer", |_| async { /* flush the batch */ })
    ///     .unwrap();
    /// ```
    pub const FLUSH: &str = "flush";
    /// Close what is open: connection pools, files, sessions.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator, phases};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// coordinator
    ///     .hook(phases::CLOSE, "pool", |_| async { /* close the database pool */ })
    ///     .unwrap();
    /// ```
    pub const CLOSE: &str = "close";

    /// All default phases, in order.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator, phases};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// assert!(shutdown.phases().eq(phases::DEFAULTS));
    /// ```
    pub const DEFAULTS: [&str; 3] = [STOP_ACCEPTING, FLUSH, CLOSE];
}

/// A named stopping phase with its own timeout. Phases run one after another, in the order the
/// builder lists them; the hooks of one phase run concurrently.
///
/// ```
/// use std::time::Duration;
/// use deputy_core::Phase;
///
/// let phase = Phase::new("flush-kafka").timeout(Duration::from_secs(5));
/// assert_eq!(phase.name(), "flush-kafka");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    name: Cow<'static, str>,
    pub(crate) timeout: Duration,
}

impl Phase {
    /// A phase with the [default timeout](DEFAULT_PHASE_TIMEOUT).
    ///
    /// ```
    /// use deputy_core::{ManualClock, Phase, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .without_default_phases()
    ///     .phase(Phase::new("drain-queue"))
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// assert!(coordinator.handle().phases().any(|name| name == "drain-queue"));
    /// ```
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Self {
            name: name.into(),
            timeout: DEFAULT_PHASE_TIMEOUT,
        }
    }

    /// Sets how long the phase's hooks may run before they are dropped and recorded as
    /// timed out.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::Phase;
    ///
    /// // Producers get 10 s to flush; the other phases keep the default.
    /// let flush = Phase::new("flush").timeout(Duration::from_secs(10));
    /// # drop(flush);
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The phase's name.
    ///
    /// ```
    /// assert_eq!(deputy_core::Phase::new("flush").name(), "flush");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }
}

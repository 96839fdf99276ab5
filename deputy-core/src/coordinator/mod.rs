//! The coordinator: plan, handle, hooks, and the future that drives a shutdown.

mod builder;
mod done;
mod escalation;
mod handle;
mod hook;
mod phase;
mod propagation;
mod report;
mod run;
mod shared;
mod status;
mod transitions;
mod vital;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

pub use self::builder::{Builder, MAX_DURATION};
pub use self::done::Done;
pub use self::escalation::Escalation;
pub use self::handle::Shutdown;
pub use self::hook::{HookContext, HookOutput};
pub use self::phase::{DEFAULT_PHASE_TIMEOUT, Phase, phases};
pub use self::propagation::{Arrival, Propagation};
pub use self::report::{
    DrainReport, ExitCodes, HookOutcome, HookReport, Outcome, PhaseReport, ShutdownReport,
    TriggerKind, TriggerRecord,
};
use self::shared::Shared;
pub use self::status::{Status, Transition};
pub use self::transitions::Transitions;
pub use self::vital::{TaskGroup, VitalTask};
use crate::error::HookError;

/// Runs a graceful shutdown: drain, then ordered phases of hooks, all within a grace period,
/// ending in a [`ShutdownReport`].
///
/// Build it with [`builder`](Self::builder), hand out [`handle`](Self::handle)s, and drive
/// [`run`](Self::run) (spawn it on your runtime; the adapters do this for you). `run` waits
/// for the first trigger, then:
///
/// 1. **Draining**: readiness turns false and the draining token is cancelled; the service
///    keeps serving for the drain delay, then until nothing is in flight or the drain timeout
///    passes.
/// 2. **Stopping**: the stopping token is cancelled; each phase's hooks run concurrently,
///    phases one after another, each bounded by its timeout.
/// 3. **Done**: the report is ready; liveness turns false.
///
/// The grace period bounds all of it: `Done` is reached by its end even if every hook hangs.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use deputy_core::{ManualClock, Phase, ShutdownCoordinator};
///
/// let coordinator = ShutdownCoordinator::builder()
///     .grace_period(Duration::from_secs(30))
///     .drain_delay(Duration::ZERO)
///     .phase(Phase::new("flush").timeout(Duration::from_secs(5)))
///     .build(ManualClock::new())
///     .unwrap();
/// coordinator
///     .hook("flush", "kafka", |_ctx| async { Ok::<(), String>(()) })
///     .unwrap();
///
/// let shutdown = coordinator.handle();
/// shutdown.trigger("test");
/// let report = futures::executor::block_on(coordinator.run());
/// assert_eq!(report.exit_code, 0);
/// ```
pub struct ShutdownCoordinator {
    shared: Arc<Shared>,
}

impl ShutdownCoordinator {
    /// Starts configuring a coordinator.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .drain_delay(Duration::from_secs(5))
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// # drop(coordinator);
    /// ```
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A handle for triggering, guards, hooks and readiness; cheap to clone.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// let for_the_server = shutdown.clone(); // handles are cheap to clone and share
    /// assert!(!for_the_server.is_triggered());
    /// ```
    pub fn handle(&self) -> Shutdown {
        Shutdown {
            shared: self.shared.clone(),
        }
    }

    /// Adds a hook to a phase; see [`Shutdown::hook`].
    ///
    /// # Errors
    ///
    /// See [`Shutdown::hook`].
    ///
    /// # Examples
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator, phases};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// coordinator
    ///     .hook(phases::FLUSH, "metrics", |_ctx| async {
    ///         // push the last metrics
    ///         Ok::<(), std::io::Error>(())
    ///     })
    ///     .unwrap();
    /// ```
    pub fn hook<F, Fut>(&self, phase: &str, name: &str, hook: F) -> Result<(), HookError>
    where
        F: FnOnce(HookContext) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        self.handle().hook(phase, name, hook)
    }

    /// Drives the shutdown: waits for the first trigger, then runs it to `Done` and returns
    /// the report (also available from [`Shutdown::report`] and [`Shutdown::done`]).
    ///
    /// Nothing past `Draining` happens unless this future is polled. Hooks run inside it, so
    /// a hook must not block its thread.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping it before `Done` drops the hooks that are running and ends
    /// the shutdown there, as abandoned (see [`Drop`](#impl-Drop-for-ShutdownCoordinator)).
    ///
    /// # Examples
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
    /// assert_eq!(report.exit_code, 0);
    /// ```
    pub async fn run(self) -> ShutdownReport {
        let report = run::run(self.shared.clone()).await;
        ShutdownReport::clone(&report)
    }
}

/// Dropping the coordinator before `Done` (never run, or its [`run`](Self::run) future
/// dropped midway, as when a runtime shuts down) ends the shutdown at once, as abandoned:
/// the tokens are cancelled, long-lived connections are told to close, and the report
/// (outcome abandoned, reason "the coordinator was dropped" unless a trigger came first)
/// is what [`Shutdown::done`] resolves to. So nothing a handle gave out waits for a
/// shutdown that nobody drives.
///
/// ```
/// use deputy_core::{ManualClock, Outcome, ShutdownCoordinator};
///
/// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
/// let shutdown = coordinator.handle();
/// let stop = shutdown.stopping_token().cancelled();
/// drop(coordinator);
/// futures::executor::block_on(stop); // resolves
/// let report = futures::executor::block_on(shutdown.done());
/// assert_eq!(report.outcome, Outcome::Abandoned);
/// assert!(!shutdown.trigger("too late"));
/// ```
impl Drop for ShutdownCoordinator {
    fn drop(&mut self) {
        if self.shared.report().is_none() {
            run::abandon(&self.shared);
        }
    }
}

impl fmt::Debug for ShutdownCoordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownCoordinator")
            .field("state", &self.shared.state())
            .field("phases", &self.shared.phase_names)
            .finish_non_exhaustive()
    }
}

use std::sync::Arc;
use std::time::Duration;

use super::ShutdownCoordinator;
use super::phase::{Phase, phases};
use super::report::ExitCodes;
use super::shared::{Plan, Shared};
use crate::error::BuildError;
use crate::runtime::Runtime;
use crate::state::Readiness;

/// The longest duration any setting of a plan may have: 100 years (of 365 days). Longer
/// ones, `Duration::MAX` included, are refused by [`Builder::build`] with
/// [`BuildError::TooLong`], since no clock can add them to an instant.
///
/// ```
/// use deputy_core::{BuildError, MAX_DURATION, ManualClock, ShutdownCoordinator};
/// use std::time::Duration;
///
/// let error = ShutdownCoordinator::builder()
///     .drain_delay(Duration::MAX)
///     .allow_over_budget()
///     .build(ManualClock::new())
///     .unwrap_err();
/// assert!(matches!(error, BuildError::TooLong { .. }));
/// assert!(error.to_string().starts_with("the drain delay"));
/// assert!(MAX_DURATION > Duration::from_secs(99 * 365 * 24 * 3600));
/// ```
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Configures a [`ShutdownCoordinator`]; made by [`ShutdownCoordinator::builder`].
///
/// The defaults suit a Kubernetes pod with the default `terminationGracePeriodSeconds: 30`:
///
/// | setting | default |
/// |---|---|
/// | grace period (whole budget, from the first trigger) | 30 s |
/// | drain delay (keep serving while endpoints propagate) | 5 s |
/// | drain timeout (after the delay) | 15 s |
/// | phases | [`stop-accepting`](phases::STOP_ACCEPTING), [`flush`](phases::FLUSH), [`close`](phases::CLOSE), 3 s each |
///
/// # Budget check
///
/// [`build`](Self::build) adds up drain delay, drain timeout and every phase's timeout. If the
/// sum exceeds the grace period it returns [`BuildError::OverBudget`], because such a plan can
/// be cut short (and, in Kubernetes, SIGKILLed) before it finishes. Call
/// [`allow_over_budget`](Self::allow_over_budget) to accept it anyway; `build` then logs a
/// warning, and the grace period still bounds the whole shutdown at run time. A setting
/// longer than [`MAX_DURATION`] is refused with [`BuildError::TooLong`], which names it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use deputy_core::{Phase, ShutdownCoordinator, ManualClock};
///
/// let coordinator = ShutdownCoordinator::builder()
///     .grace_period(Duration::from_secs(30))
///     .drain_delay(Duration::from_secs(5))
///     .drain_timeout(Duration::from_secs(10))
///     .phase_before("flush", Phase::new("stop-workers").timeout(Duration::from_secs(4)))
///     .phase(Phase::new("flush").timeout(Duration::from_secs(5))) // adjusts a default phase
///     .build(ManualClock::new())
///     .unwrap();
/// assert_eq!(
///     coordinator.handle().phases().collect::<Vec<_>>(),
///     ["stop-accepting", "stop-workers", "flush", "close"]
/// );
///
/// let too_long = ShutdownCoordinator::builder()
///     .grace_period(Duration::from_secs(10))
///     .build(ManualClock::new());
/// assert!(too_long.is_err());
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until built"]
pub struct Builder {
    grace_period: Duration,
    drain_delay: Duration,
    drain_delay_max: Option<Duration>,
    quiet_period: Duration,
    drain_timeout: Duration,
    disconnect_window: Option<Duration>,
    phases: Vec<Phase>,
    exit_codes: ExitCodes,
    readiness: Readiness,
    startup_timeout: Option<Duration>,
    allow_over_budget: bool,
    error: Option<BuildError>,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            grace_period: Duration::from_secs(30),
            drain_delay: Duration::from_secs(5),
            drain_delay_max: None,
            quiet_period: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(15),
            disconnect_window: None,
            phases: phases::DEFAULTS
                .iter()
                .map(|name| Phase::new(*name))
                .collect(),
            exit_codes: ExitCodes::default(),
            readiness: Readiness::OffAtTrigger,
            startup_timeout: None,
            allow_over_budget: false,
            error: None,
        }
    }
}

impl Builder {
    /// The whole budget from the first trigger to `Done`, like Kubernetes'
    /// `terminationGracePeriodSeconds` (set that a little higher, so the process can exit).
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// // terminationGracePeriodSeconds: 60 in the pod spec; a second to spare for the exit.
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .grace_period(Duration::from_secs(59))
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// # drop(coordinator);
    /// ```
    pub fn grace_period(mut self, grace_period: Duration) -> Self {
        self.grace_period = grace_period;
        self
    }

    /// How long to keep serving after the trigger before waiting for work in flight to end,
    /// so that load balancers stop sending traffic first.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// // Endpoints take up to 5 s to stop sending traffic in this cluster.
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .drain_delay(Duration::from_secs(5))
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// # drop(coordinator);
    /// ```
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = delay;
        self
    }

    /// Makes the drain delay measure itself (opt-in): [`drain_delay`](Self::drain_delay)
    /// becomes its minimum; after it, the delay ends as soon as no new connection or request
    /// ([`Shutdown::arrived`](crate::Shutdown::arrived)) has come for the
    /// [`quiet_period`](Self::quiet_period), and at `max` at the latest. The last arrival is
    /// how long endpoints took to stop sending traffic this time, so a rolling update waits
    /// that long instead of a guess.
    ///
    /// Unsafe for a service with rare traffic: a second without a request says nothing about
    /// propagation there. That is what the minimum is for: set it to what propagation takes
    /// at the least, and the quiet period above the usual gap between requests.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::{Arrival, ManualClock, ShutdownCoordinator, State};
    ///
    /// let clock = ManualClock::new();
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .grace_period(Duration::from_secs(60))
    ///     .drain_delay(Duration::from_secs(1))
    ///     .drain_delay_max(Duration::from_secs(10))
    ///     .quiet_period(Duration::from_secs(1))
    ///     .build(clock.clone())
    ///     .unwrap();
    /// let shutdown = coordinator.handle();
    /// shutdown.trigger("deploy");
    /// let mut pool = futures::executor::LocalPool::new();
    /// let spawner = pool.spawner();
    /// futures::task::LocalSpawnExt::spawn_local(&spawner, async move {
    ///     coordinator.run().await;
    /// })
    /// .unwrap();
    /// // Traffic until 1.5 s after the trigger (endpoints propagating), then none.
    /// clock.advance(Duration::from_millis(1500));
    /// shutdown.arrived(Arrival::Request);
    /// pool.run_until_stalled();
    /// clock.advance(Duration::from_millis(900)); // 2.4 s: quiet for only 0.9 s
    /// pool.run_until_stalled();
    /// assert_eq!(shutdown.state(), State::Draining);
    /// clock.advance(Duration::from_millis(100)); // 2.5 s: quiet for 1 s
    /// pool.run_until_stalled();
    /// assert_eq!(shutdown.state(), State::Done);
    /// ```
    pub fn drain_delay_max(mut self, max: Duration) -> Self {
        self.drain_delay_max = Some(max);
        self
    }

    /// With [`drain_delay_max`](Self::drain_delay_max): how long without a new connection or
    /// request ends the drain delay (after its minimum). Default 1 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .grace_period(std::time::Duration::from_secs(60))
    ///     .drain_delay(Duration::from_secs(1)) // at least
    ///     .drain_delay_max(Duration::from_secs(15)) // at most
    ///     .quiet_period(Duration::from_secs(2)) // ends 2 s after the last new traffic
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// # drop(coordinator);
    /// ```
    pub fn quiet_period(mut self, quiet: Duration) -> Self {
        self.quiet_period = quiet;
        self
    }

    /// How long, after the drain delay, to wait for work in flight to end.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// // Requests take at most 20 s here; a longer one is cut off.
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .grace_period(std::time::Duration::from_secs(60))
    ///     .drain_timeout(Duration::from_secs(20))
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// # drop(coordinator);
    /// ```
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Over how long, from the end of the drain delay, long-lived connections
    /// ([`Shutdown::connection`](crate::Shutdown::connection)) are told to move, one by one,
    /// evenly and with jitter, so that their reconnections reach the other backends at a
    /// steady rate (HAProxy's `close-spread-time`). Those still open at the end of the drain
    /// timeout are told to close at once. Default: half the drain timeout; at most the drain
    /// timeout.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// // 2,000 WebSockets told to move over 20 s: 100 reconnections a second elsewhere.
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .grace_period(Duration::from_secs(60))
    ///     .drain_timeout(Duration::from_secs(30))
    ///     .disconnect_window(Duration::from_secs(20))
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// # drop(coordinator);
    /// ```
    pub fn disconnect_window(mut self, window: Duration) -> Self {
        self.disconnect_window = Some(window);
        self
    }

    /// Appends a phase; if a phase of that name exists (a default one, say), sets its timeout
    /// instead, keeping its place.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// use deputy_core::{Phase, phases};
    ///
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .grace_period(std::time::Duration::from_secs(60))
    ///     .phase(Phase::new(phases::FLUSH).timeout(Duration::from_secs(10))) // a default's timeout
    ///     .phase(Phase::new("notify-peers")) // a new phase, last
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// let shutdown = coordinator.handle();
    /// let names: Vec<&str> = shutdown.phases().collect();
    /// assert_eq!(names, ["stop-accepting", "flush", "close", "notify-peers"]);
    /// ```
    pub fn phase(mut self, phase: Phase) -> Self {
        if !self.check_name(&phase) {
            return self;
        }
        match self.phases.iter_mut().find(|p| p.name() == phase.name()) {
            Some(existing) => *existing = phase,
            None => self.phases.push(phase),
        }
        self
    }

    /// Inserts a new phase just before the phase named `existing`.
    ///
    /// ```
    /// use deputy_core::{ManualClock, Phase, ShutdownCoordinator, phases};
    ///
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .grace_period(std::time::Duration::from_secs(60))
    ///     .phase_before(phases::CLOSE, Phase::new("checkpoint"))
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// let shutdown = coordinator.handle();
    /// let names: Vec<&str> = shutdown.phases().collect();
    /// assert_eq!(names, ["stop-accepting", "flush", "checkpoint", "close"]);
    /// ```
    pub fn phase_before(self, existing: &str, phase: Phase) -> Self {
        self.insert(existing, phase, 0)
    }

    /// Inserts a new phase just after the phase named `existing`.
    ///
    /// ```
    /// use deputy_core::{ManualClock, Phase, ShutdownCoordinator, phases};
    ///
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .grace_period(std::time::Duration::from_secs(60))
    ///     .phase_after(phases::STOP_ACCEPTING, Phase::new("deregister"))
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// let shutdown = coordinator.handle();
    /// let names: Vec<&str> = shutdown.phases().collect();
    /// assert_eq!(names, ["stop-accepting", "deregister", "flush", "close"]);
    /// ```
    pub fn phase_after(self, existing: &str, phase: Phase) -> Self {
        self.insert(existing, phase, 1)
    }

    /// Removes the default phases; only the phases added afterwards exist.
    ///
    /// ```
    /// use deputy_core::{ManualClock, Phase, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .without_default_phases()
    ///     .phase(Phase::new("stop-workers"))
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// assert_eq!(coordinator.handle().phases().collect::<Vec<_>>(), ["stop-workers"]);
    /// ```
    pub fn without_default_phases(mut self) -> Self {
        self.phases
            .retain(|p| !phases::DEFAULTS.contains(&p.name()));
        self
    }

    /// When readiness turns off during a shutdown: at the trigger (the default), or when the
    /// drain is over, for Kubernetes' fallback to serving terminating endpoints (see
    /// [`Readiness`]).
    ///
    /// ```
    /// use deputy_core::{ManualClock, Readiness, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .readiness(Readiness::UntilListenerCloses)
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// let shutdown = coordinator.handle();
    /// shutdown.ready();
    /// shutdown.trigger("deploy");
    /// assert!(shutdown.is_ready()); // still serving the endpoints' fallback
    /// shutdown.force("the drain is over");
    /// assert!(!shutdown.is_ready());
    /// ```
    pub fn readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// How long the start-up tasks ([`Shutdown::startup`](crate::Shutdown::startup)) may
    /// take, from when the coordinator is built (like .NET's start-up timeout; set the
    /// kubelet's `startupProbe` to allow a little more). One still running then is dropped
    /// and the shutdown is triggered, naming it: the run ends with exit code 1. Default:
    /// none.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// // Migrations and a cache warm-up get a minute.
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .startup_timeout(Duration::from_secs(60))
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// # drop(coordinator);
    /// ```
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = Some(timeout);
        self
    }

    /// The exit codes the report maps outcomes to.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::{ExitCodes, ManualClock, ShutdownCoordinator};
    ///
    /// // A supervisor that restarts on any non-zero code: a timed-out drain still counts as clean.
    /// let codes = ExitCodes { timed_out: 0, ..ExitCodes::default() };
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .drain_delay(Duration::ZERO)
    ///     .exit_codes(codes)
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// coordinator.handle().trigger("deploy");
    /// assert_eq!(futures::executor::block_on(coordinator.run()).exit_code, 0);
    /// ```
    pub fn exit_codes(mut self, codes: ExitCodes) -> Self {
        self.exit_codes = codes;
        self
    }

    /// Accepts a plan whose timeouts add up to more than the grace period (see
    /// [Budget check](Self#budget-check)); `build` logs a warning instead of failing.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// use deputy_core::Phase;
    ///
    /// // 10 s of drain delay and a 30 s phase do not fit in 30 s: refused, unless allowed.
    /// let plan = || {
    ///     ShutdownCoordinator::builder()
    ///         .grace_period(Duration::from_secs(30))
    ///         .drain_delay(Duration::from_secs(10))
    ///         .phase(Phase::new("flush").timeout(Duration::from_secs(30)))
    /// };
    /// assert!(plan().build(ManualClock::new()).is_err());
    /// assert!(plan().allow_over_budget().build(ManualClock::new()).is_ok());
    /// ```
    pub fn allow_over_budget(mut self) -> Self {
        self.allow_over_budget = true;
        self
    }

    /// Checks the plan and builds the coordinator on `runtime`.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for a zero grace period, an empty or duplicate phase name, a
    /// `phase_before`/`phase_after` naming no phase, a disconnect window longer than the
    /// drain timeout, or a plan over budget.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// use deputy_core::BuildError;
    ///
    /// let refused = ShutdownCoordinator::builder()
    ///     .grace_period(Duration::ZERO)
    ///     .build(ManualClock::new());
    /// assert!(matches!(refused, Err(BuildError::ZeroGracePeriod)));
    /// ```
    pub fn build(self, runtime: impl Runtime) -> Result<ShutdownCoordinator, BuildError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if self.grace_period.is_zero() {
            return Err(BuildError::ZeroGracePeriod);
        }
        self.check_lengths()?;
        if let Some(max) = self.drain_delay_max {
            if max < self.drain_delay {
                return Err(BuildError::DrainDelay(
                    "the drain delay's maximum is shorter than its minimum",
                ));
            }
            if self.quiet_period.is_zero() {
                return Err(BuildError::DrainDelay(
                    "the quiet period must be longer than zero",
                ));
            }
        }
        // Each term is at most MAX_DURATION (checked above); the sum saturates rather than
        // overflow with thousands of phases.
        let planned = self
            .phases
            .iter()
            .map(|phase| phase.timeout)
            .chain([
                self.drain_delay_max.unwrap_or(self.drain_delay),
                self.drain_timeout,
            ])
            .fold(Duration::ZERO, Duration::saturating_add);
        if planned > self.grace_period {
            if !self.allow_over_budget {
                return Err(BuildError::OverBudget {
                    planned,
                    grace_period: self.grace_period,
                });
            }
            tracing::warn!(
                planned_ms = planned.as_millis() as u64,
                grace_period_ms = self.grace_period.as_millis() as u64,
                "shutdown plan exceeds the grace period; the end of it may be abandoned"
            );
        }
        let disconnect_window = self.disconnect_window.unwrap_or(self.drain_timeout / 2);
        if disconnect_window > self.drain_timeout {
            return Err(BuildError::DisconnectWindow {
                window: disconnect_window,
                drain_timeout: self.drain_timeout,
            });
        }
        let plan = Plan {
            grace_period: self.grace_period,
            drain_delay: self.drain_delay,
            drain_delay_max: self.drain_delay_max,
            quiet_period: self.quiet_period,
            drain_timeout: self.drain_timeout,
            disconnect_window,
            phases: self.phases,
            exit_codes: self.exit_codes,
            readiness: self.readiness,
            startup_timeout: self.startup_timeout,
        };
        Ok(ShutdownCoordinator {
            shared: Arc::new(Shared::new(Arc::new(runtime), plan)),
        })
    }

    /// Refuses a duration no clock can add to an instant (`Duration::MAX`, say): every
    /// setting is at most [`MAX_DURATION`], so every deadline the run computes exists.
    fn check_lengths(&self) -> Result<(), BuildError> {
        let settings = [
            ("grace period", self.grace_period),
            ("drain delay", self.drain_delay),
            (
                "drain delay's maximum",
                self.drain_delay_max.unwrap_or_default(),
            ),
            ("quiet period", self.quiet_period),
            ("drain timeout", self.drain_timeout),
            (
                "disconnect window",
                self.disconnect_window.unwrap_or_default(),
            ),
        ]
        .map(|(setting, value)| (setting.to_owned(), value));
        let phases = self.phases.iter().map(|phase| {
            let setting = format!("timeout of phase `{}`", phase.name());
            (setting, phase.timeout)
        });
        match settings
            .into_iter()
            .chain(phases)
            .find(|(_, value)| *value > MAX_DURATION)
        {
            Some((setting, value)) => Err(BuildError::TooLong { setting, value }),
            None => Ok(()),
        }
    }

    fn check_name(&mut self, phase: &Phase) -> bool {
        if self.error.is_some() {
            return false;
        }
        if phase.name().is_empty() {
            self.error = Some(BuildError::EmptyPhaseName);
            return false;
        }
        true
    }

    fn insert(mut self, existing: &str, phase: Phase, offset: usize) -> Self {
        if !self.check_name(&phase) {
            return self;
        }
        if self.phases.iter().any(|p| p.name() == phase.name()) {
            self.error = Some(BuildError::DuplicatePhase(phase.name().to_owned()));
            return self;
        }
        match self.phases.iter().position(|p| p.name() == existing) {
            Some(index) => self.phases.insert(index + offset, phase),
            None => self.error = Some(BuildError::UnknownPhase(existing.to_owned())),
        }
        self
    }
}

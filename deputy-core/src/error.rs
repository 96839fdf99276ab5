//! Error values. Each is a small hand-written type with a lower-case message.

use std::fmt;
use std::time::Duration;

/// Why [`Builder::build`](crate::Builder::build) refused a plan.
///
/// ```
/// use std::time::Duration;
/// use deputy_core::{BuildError, ManualClock, ShutdownCoordinator};
///
/// let error = ShutdownCoordinator::builder()
///     .grace_period(Duration::from_secs(10))
///     .build(ManualClock::new())
///     .unwrap_err();
/// assert!(matches!(error, BuildError::OverBudget { .. }));
/// assert_eq!(
///     error.to_string(),
///     "drain delay, drain timeout and phase timeouts add up to 29s, more than the grace period of 10s"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// The grace period is zero.
    ZeroGracePeriod,
    /// A phase has an empty name.
    EmptyPhaseName,
    /// Two phases have the same name.
    DuplicatePhase(String),
    /// `phase_before` / `phase_after` named a phase that does not exist.
    UnknownPhase(String),
    /// The adaptive drain delay's settings do not make sense (a maximum under the minimum,
    /// a zero quiet period).
    DrainDelay(&'static str),
    /// The disconnect window is longer than the drain timeout it runs within.
    DisconnectWindow {
        /// The disconnect window.
        window: Duration,
        /// The drain timeout.
        drain_timeout: Duration,
    },
    /// A setting is longer than [`MAX_DURATION`](crate::MAX_DURATION) (`Duration::MAX`,
    /// say), which no clock can add to an instant.
    TooLong {
        /// The setting, as people say it: "drain timeout", "timeout of phase `flush`".
        setting: String,
        /// The value it was given.
        value: Duration,
    },
    /// Drain delay, drain timeout and phase timeouts add up to more than the grace period,
    /// so a slow shutdown would be killed before it could finish.
    /// [`Builder::allow_over_budget`](crate::Builder::allow_over_budget) turns this into a
    /// logged warning.
    OverBudget {
        /// Drain delay + drain timeout + the sum of the phase timeouts.
        planned: Duration,
        /// The grace period.
        grace_period: Duration,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::ZeroGracePeriod => f.write_str("the grace period must be longer than zero"),
            BuildError::EmptyPhaseName => f.write_str("a phase name must not be empty"),
            BuildError::DuplicatePhase(name) => write!(f, "phase `{name}` is defined twice"),
            BuildError::UnknownPhase(name) => write!(f, "no phase is named `{name}`"),
            BuildError::DrainDelay(why) => f.write_str(why),
            BuildError::DisconnectWindow {
                window,
                drain_timeout,
            } => write!(
                f,
                "the disconnect window ({window:?}) must not be longer than the drain timeout ({drain_timeout:?}) it runs within"
            ),
            BuildError::TooLong { setting, value } => write!(
                f,
                "the {setting} of {value:?} is longer than the longest accepted ({:?}, 100 years)",
                crate::MAX_DURATION
            ),
            BuildError::OverBudget {
                planned,
                grace_period,
            } => write!(
                f,
                "drain delay, drain timeout and phase timeouts add up to {planned:?}, more than the grace period of {grace_period:?}"
            ),
        }
    }
}

impl std::error::Error for BuildError {}

/// Why a hook could not be added.
///
/// ```
/// use deputy_core::{HookError, ManualClock, ShutdownCoordinator};
///
/// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
/// let error = coordinator.hook("flsuh", "typo", |_| async {}).unwrap_err();
/// assert!(matches!(error, HookError::UnknownPhase { .. }));
/// assert_eq!(error.to_string(), "no phase is named `flsuh` (phases: stop-accepting, flush, close)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HookError {
    /// No phase has this name.
    UnknownPhase {
        /// The name asked for.
        phase: String,
        /// The phases that exist, in order.
        known: Vec<String>,
    },
    /// The phase has already started (or shutdown is done), so the hook would never run.
    PhaseStarted {
        /// The phase asked for.
        phase: String,
    },
    /// The phase already has a hook of this name: the report could not tell them apart.
    DuplicateHook {
        /// The phase asked for.
        phase: String,
        /// The hook's name.
        name: String,
    },
}

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookError::UnknownPhase { phase, known } => {
                write!(
                    f,
                    "no phase is named `{phase}` (phases: {})",
                    known.join(", ")
                )
            }
            HookError::PhaseStarted { phase } => {
                write!(f, "phase `{phase}` has already started")
            }
            HookError::DuplicateHook { phase, name } => {
                write!(f, "phase `{phase}` already has a hook named `{name}`")
            }
        }
    }
}

impl std::error::Error for HookError {}

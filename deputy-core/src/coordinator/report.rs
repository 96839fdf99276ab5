use std::fmt;
use std::time::Duration;

use crate::state::{DrainOutcome, Ending, PhaseOutcome};
use crate::{ConnectionsReport, Propagation, Reason, Straggler};

/// The exit codes a [`ShutdownReport`] maps its [`Outcome`] to. Configurable with
/// [`Builder::exit_codes`](crate::Builder::exit_codes).
///
/// ```
/// let codes = deputy_core::ExitCodes::default();
/// assert_eq!((codes.clean, codes.failed, codes.timed_out, codes.abandoned), (0, 1, 2, 3));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitCodes {
    /// Everything completed. Default 0.
    pub clean: i32,
    /// A hook returned an error or panicked. Default 1.
    pub failed: i32,
    /// The drain or a phase timed out, so work may have been cut off. Default 2.
    pub timed_out: i32,
    /// Shutdown was abandoned (third trigger, grace period used up, or a forced drain that
    /// left work in flight). Default 3.
    pub abandoned: i32,
}

impl Default for ExitCodes {
    fn default() -> Self {
        Self {
            clean: 0,
            failed: 1,
            timed_out: 2,
            abandoned: 3,
        }
    }
}

/// How a shutdown went, as a whole: the worst of its parts.
///
/// ```
/// use deputy_core::Outcome;
///
/// assert!(Outcome::Clean < Outcome::Failed && Outcome::TimedOut < Outcome::Abandoned);
/// assert_eq!(Outcome::TimedOut.to_string(), "timed out");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Outcome {
    /// Drained, and every hook completed.
    Clean,
    /// A hook returned an error or panicked.
    Failed,
    /// The drain or a phase timed out.
    #[cfg_attr(feature = "serde", serde(rename = "timed out"))]
    TimedOut,
    /// Shutdown was cut short.
    Abandoned,
}

impl Outcome {
    /// Every outcome, from best to worst: for metrics that list them all.
    ///
    /// ```
    /// use deputy_core::Outcome;
    ///
    /// let names: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
    /// assert_eq!(names, ["clean", "failed", "timed out", "abandoned"]);
    /// ```
    pub const ALL: [Outcome; 4] = [
        Outcome::Clean,
        Outcome::Failed,
        Outcome::TimedOut,
        Outcome::Abandoned,
    ];

    /// The lower-case name used in logs and in the wire protocol.
    ///
    /// ```
    /// assert_eq!(deputy_core::Outcome::Abandoned.as_str(), "abandoned");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Clean => "clean",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed out",
            Outcome::Abandoned => "abandoned",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one hook ended.
///
/// ```
/// use deputy_core::HookOutcome;
///
/// assert_eq!(HookOutcome::Failed("disk full".into()).to_string(), "failed: disk full");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    /// It returned `()` or `Ok(())`.
    Completed,
    /// It returned an error, with its message.
    Failed(String),
    /// It panicked, with the panic's message.
    Panicked(String),
    /// It was still running at the phase's timeout and was dropped.
    TimedOut,
    /// Shutdown was abandoned before it finished (or started).
    Abandoned,
}

impl HookOutcome {
    /// The outcome's lower-case name: `completed`, `failed`, `panicked`, `timed out`,
    /// `abandoned`.
    ///
    /// ```
    /// use deputy_core::HookOutcome;
    /// assert_eq!(HookOutcome::Failed("disk full".into()).as_str(), "failed");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            HookOutcome::Completed => "completed",
            HookOutcome::Failed(_) => "failed",
            HookOutcome::Panicked(_) => "panicked",
            HookOutcome::TimedOut => "timed out",
            HookOutcome::Abandoned => "abandoned",
        }
    }

    /// The error's or the panic's message, for a failed or panicked hook.
    ///
    /// ```
    /// use deputy_core::HookOutcome;
    /// assert_eq!(HookOutcome::Panicked("oops".into()).message(), Some("oops"));
    /// assert_eq!(HookOutcome::TimedOut.message(), None);
    /// ```
    pub fn message(&self) -> Option<&str> {
        match self {
            HookOutcome::Failed(message) | HookOutcome::Panicked(message) => Some(message),
            _ => None,
        }
    }
}

/// `failed: disk full`.
impl fmt::Display for HookOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())?;
        match self.message() {
            Some(message) => write!(f, ": {message}"),
            None => Ok(()),
        }
    }
}

/// One hook's line in the report.
///
/// ```
/// use std::time::Duration;
/// use deputy_core::{HookOutcome, ManualClock, ShutdownCoordinator};
///
/// let coordinator = ShutdownCoordinator::builder()
///     .drain_delay(Duration::ZERO)
///     .build(ManualClock::new())
///     .unwrap();
/// coordinator
///     .hook("flush", "kafka", |_| async { Err::<(), _>("broker gone") })
///     .unwrap();
/// coordinator.handle().trigger("deploy");
/// let report = futures::executor::block_on(coordinator.run());
/// let hook = &report.phases[1].hooks[0];
/// assert_eq!(hook.outcome, HookOutcome::Failed("broker gone".into()));
/// assert_eq!(hook.to_string(), "hook kafka: failed in 0.0s: broker gone");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HookReport {
    /// The hook's name.
    pub name: String,
    /// How it ended.
    pub outcome: HookOutcome,
    /// From the phase's start to the hook's end.
    pub duration: Duration,
}

/// `hook kafka: failed in 0.2s: disk full`: the outcome and its duration first, the message
/// last, as in [`ShutdownReport::summary`] and the report's `Display`.
impl fmt::Display for HookReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hook {}: {} in {}",
            self.name,
            self.outcome.as_str(),
            Secs(self.duration)
        )?;
        match self.outcome.message() {
            Some(message) => write!(f, ": {message}"),
            None => Ok(()),
        }
    }
}

/// A duration for people, the one way the report writes them: `1.2s`.
struct Secs(Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1}s", self.0.as_secs_f64())
    }
}

/// One phase's part of the report.
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
/// let names: Vec<&str> = report.phases.iter().map(|p| p.name.as_str()).collect();
/// assert_eq!(names, ["stop-accepting", "flush", "close"]);
/// assert!(report.phases.iter().all(|p| p.outcome == deputy_core::PhaseOutcome::Completed));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PhaseReport {
    /// The phase's name.
    pub name: String,
    /// Its configured timeout.
    pub timeout: Duration,
    /// How it ended.
    pub outcome: PhaseOutcome,
    /// How long it ran (zero if it never started).
    pub duration: Duration,
    /// Its hooks, in the order they were added.
    pub hooks: Vec<HookReport>,
}

/// The drain's part of the report.
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
/// use deputy_core::DrainOutcome;
/// assert_eq!(report.drain.outcome, DrainOutcome::Drained);
/// assert_eq!(report.drain.in_flight_at_end, 0);
/// assert!(report.drain.stragglers.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainReport {
    /// How it ended.
    pub outcome: DrainOutcome,
    /// From the trigger to the end of the drain (drain delay included).
    pub duration: Duration,
    /// Work still in flight when the drain ended.
    pub in_flight_at_end: usize,
    /// When the last new connection and request arrived after the trigger, as noted by
    /// [`Shutdown::arrived`](crate::Shutdown::arrived): this run's propagation lag.
    pub propagation: Propagation,
    /// When the drain ended with work in flight: the named part of it
    /// ([`Shutdown::guard_named`](crate::Shutdown::guard_named)) by name, the oldest first,
    /// with its age then.
    pub stragglers: Vec<Straggler>,
    /// The long-lived connections ([`Shutdown::connection`](crate::Shutdown::connection)):
    /// how many were told to move, how many did, how many were cut at the end.
    pub connections: ConnectionsReport,
}

/// One trigger, force or abandon request, in the order they came.
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
/// let first = &report.triggers[0];
/// assert_eq!((first.reason.to_string(), first.at, first.accepted), ("deploy".into(), Duration::ZERO, true));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TriggerRecord {
    /// What was asked.
    pub kind: TriggerKind,
    /// Who asked.
    pub reason: Reason,
    /// Time since the first trigger.
    pub at: Duration,
    /// Whether it changed anything (a repeated trigger does not).
    pub accepted: bool,
}

/// The kind of a [`TriggerRecord`].
///
/// ```
/// use deputy_core::{ManualClock, ShutdownCoordinator};
///
/// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
/// let shutdown = coordinator.handle();
/// use deputy_core::TriggerKind;
/// shutdown.trigger("deploy");
/// shutdown.force("impatient");
/// let kinds: Vec<TriggerKind> = shutdown.triggers().iter().map(|t| t.kind).collect();
/// assert_eq!(kinds, [TriggerKind::Trigger, TriggerKind::Force]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TriggerKind {
    /// Start shutting down.
    Trigger,
    /// Skip the rest of the drain.
    Force,
    /// Stop now.
    Abandon,
}

/// What happened during a shutdown, from the trigger to `Done`.
///
/// ```
/// use deputy_core::{ManualClock, Outcome, ShutdownCoordinator};
/// use std::time::Duration;
///
/// let coordinator = ShutdownCoordinator::builder()
///     .drain_delay(Duration::ZERO)
///     .build(ManualClock::new())
///     .unwrap();
/// coordinator.hook("flush", "cache", |_| async {}).unwrap();
/// coordinator.handle().trigger("test");
/// let report = futures::executor::block_on(coordinator.run());
/// assert_eq!(report.outcome, Outcome::Clean);
/// assert_eq!(report.exit_code, 0);
/// assert_eq!(report.phases.len(), 3); // the default phases, each accounted for
/// println!("{report}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// The reason of the first trigger.
    pub reason: Reason,
    /// Every trigger, force and abandon request, first one first.
    pub triggers: Vec<TriggerRecord>,
    /// The drain.
    pub drain: DrainReport,
    /// Every phase, in order, whether it ran or not.
    pub phases: Vec<PhaseReport>,
    /// How `Done` was reached.
    pub ending: Ending,
    /// The worst outcome of the parts.
    pub outcome: Outcome,
    /// The exit code for `outcome`, from the configured [`ExitCodes`], unless one was set
    /// with [`Shutdown::set_exit_code`](crate::Shutdown::set_exit_code).
    pub exit_code: i32,
    /// From the first trigger to `Done`.
    pub duration: Duration,
}

impl ShutdownReport {
    /// Every hook that did not complete, with its phase.
    ///
    /// ```
    /// # use deputy_core::{ManualClock, ShutdownCoordinator};
    /// # let coordinator = ShutdownCoordinator::builder()
    /// #     .drain_delay(std::time::Duration::ZERO)
    /// #     .build(ManualClock::new())
    /// #     .unwrap();
    /// coordinator
    ///     .hook("close", "db", |_| async { Err::<(), _>("connection reset") })
    ///     .unwrap();
    /// coordinator.handle().trigger("test");
    /// let report = futures::executor::block_on(coordinator.run());
    /// let problems: Vec<_> = report.problems().map(|(phase, hook)| (phase, hook.name.as_str())).collect();
    /// assert_eq!(problems, [("close", "db")]);
    /// ```
    pub fn problems(&self) -> impl Iterator<Item = (&str, &HookReport)> {
        self.phases.iter().flat_map(|phase| {
            phase
                .hooks
                .iter()
                .filter(|hook| hook.outcome != HookOutcome::Completed)
                .map(move |hook| (phase.name.as_str(), hook))
        })
    }

    /// The report in a few lines for a person who reads it after the fact (a container's
    /// termination message, `kubectl describe pod`): the outcome, the duration and the
    /// first reason; the drain; and only the phases and hooks that did not complete. The
    /// exit code is left to the caller, who knows the one the process exits with.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use deputy_core::{ManualClock, ShutdownCoordinator};
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .drain_delay(Duration::ZERO)
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// coordinator
    ///     .hook("close", "db", |_| async { Err::<(), _>("connection reset") })
    ///     .unwrap();
    /// coordinator.handle().trigger("deploy");
    /// coordinator.handle().watch_arrivals(); // a server reports new traffic (DrainLayer does)
    /// let report = futures::executor::block_on(coordinator.run());
    /// assert_eq!(
    ///     report.summary(),
    ///     "shutdown failed in 0.0s (reason: deploy)\n\
    ///      drain: drained in 0.0s, 0 in flight at its end; \
    ///      no new connection or request after the trigger\n\
    ///      phase close: failed in 0.0s (hook db: failed in 0.0s: connection reset)\n"
    /// );
    /// ```
    pub fn summary(&self) -> String {
        let mut text = format!(
            "shutdown {} in {} (reason: {})\n",
            self.outcome,
            Secs(self.duration),
            self.reason
        );
        text.push_str(&format!(
            "drain: {} in {}, {} in flight at its end; {}\n",
            self.drain.outcome,
            Secs(self.drain.duration),
            self.drain.in_flight_at_end,
            self.drain.propagation
        ));
        let connections = self.drain.connections;
        if connections.notified + connections.cut > 0 {
            text.push_str(&format!("{connections}\n"));
        }
        if !self.drain.stragglers.is_empty() {
            text.push_str(&format!(
                "still in flight: {}\n",
                list(&self.drain.stragglers)
            ));
        }
        for phase in self
            .phases
            .iter()
            .filter(|phase| phase.outcome != PhaseOutcome::Completed)
        {
            let hooks: Vec<String> = phase
                .hooks
                .iter()
                .filter(|hook| hook.outcome != HookOutcome::Completed)
                .map(ToString::to_string)
                .collect();
            text.push_str(&format!(
                "phase {}: {} in {}",
                phase.name,
                phase.outcome,
                Secs(phase.duration)
            ));
            if !hooks.is_empty() {
                text.push_str(&format!(" ({})", hooks.join(", ")));
            }
            text.push('\n');
        }
        text
    }

    pub(crate) fn outcome_of(
        ending: Ending,
        drain: &DrainReport,
        phases: &[PhaseReport],
    ) -> Outcome {
        if ending != Ending::Finished
            || (drain.outcome == DrainOutcome::Forced && drain.in_flight_at_end > 0)
        {
            return Outcome::Abandoned;
        }
        let mut outcome = match drain.outcome {
            DrainOutcome::TimedOut => Outcome::TimedOut,
            _ => Outcome::Clean,
        };
        for phase in phases {
            outcome = outcome.max(match phase.outcome {
                PhaseOutcome::Completed => Outcome::Clean,
                PhaseOutcome::Failed => Outcome::Failed,
                PhaseOutcome::TimedOut => Outcome::TimedOut,
                PhaseOutcome::Abandoned => Outcome::Abandoned,
            });
        }
        outcome
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "shutdown {} in {} (reason: {}, exit code {})",
            self.outcome,
            Secs(self.duration),
            self.reason,
            self.exit_code
        )?;
        writeln!(
            f,
            "  drain: {} in {}, {} in flight at its end; {}",
            self.drain.outcome,
            Secs(self.drain.duration),
            self.drain.in_flight_at_end,
            self.drain.propagation
        )?;
        let connections = self.drain.connections;
        if connections.notified + connections.cut > 0 {
            writeln!(f, "  {connections}")?;
        }
        if !self.drain.stragglers.is_empty() {
            writeln!(f, "  still in flight: {}", list(&self.drain.stragglers))?;
        }
        for phase in &self.phases {
            let (name, outcome) = (&phase.name, phase.outcome);
            writeln!(f, "  phase {name}: {outcome} in {}", Secs(phase.duration))?;
            for hook in &phase.hooks {
                writeln!(f, "    {hook}")?;
            }
        }
        Ok(())
    }
}

/// `GET /export ×2 (12.3s), resize (3.0s)`.
fn list(stragglers: &[Straggler]) -> String {
    stragglers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

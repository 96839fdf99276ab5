//! The shutdown state machine: a pure function from (machine, event) to a new machine or a
//! rejection. No clock, no I/O, no async: the coordinator feeds it events and acts on the
//! states it enters, and the property tests in `tests/state_machine.rs` drive it directly.
//!
//! # Invariants
//!
//! 1. The state only moves forward: `Running -> Draining -> Stopping -> Done`.
//! 2. `Done` is terminal: every event is rejected there.
//! 3. A rejected event leaves the machine unchanged.
//! 4. In `Done`, every phase has an outcome (none is left pending): a forced or abandoned
//!    shutdown still accounts for every phase.
//! 5. From any triggered state, `Abandon` or `BudgetExhausted` reaches `Done` at once.

use std::fmt;

use crate::Reason;

/// Where a shutdown stands.
///
/// ```
/// use deputy_core::State;
///
/// assert!(State::Running < State::Draining);
/// assert_eq!(State::Stopping.to_string(), "stopping");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[repr(u8)]
pub enum State {
    /// Serving; no shutdown has been triggered.
    Running = 0,
    /// Triggered: readiness is off, work in flight is being finished, and new work is
    /// still accepted (clients have not all seen the readiness change yet).
    Draining = 1,
    /// The stop token is cancelled and the phases' hooks run, one phase after another.
    Stopping = 2,
    /// Finished; the report is available.
    Done = 3,
}

impl State {
    /// All states, in order.
    ///
    /// ```
    /// use deputy_core::State;
    ///
    /// let names: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
    /// assert_eq!(names, ["running", "draining", "stopping", "done"]);
    /// ```
    pub const ALL: [State; 4] = [
        State::Running,
        State::Draining,
        State::Stopping,
        State::Done,
    ];

    /// Readiness as a load balancer should see it under the default rule
    /// ([`Readiness::OffAtTrigger`]): what the service says (`service_ready`) while running,
    /// false from the first trigger on.
    ///
    /// ```
    /// use deputy_core::State;
    ///
    /// assert!(State::Running.is_ready(true));
    /// assert!(!State::Running.is_ready(false));
    /// assert!(!State::Draining.is_ready(true));
    /// ```
    pub fn is_ready(self, service_ready: bool) -> bool {
        Readiness::OffAtTrigger.is_ready(self, service_ready)
    }

    /// Liveness: true until `Done`. The one home of that rule.
    ///
    /// ```
    /// use deputy_core::State;
    ///
    /// assert!(State::Stopping.is_live());
    /// assert!(!State::Done.is_live());
    /// ```
    pub fn is_live(self) -> bool {
        self != State::Done
    }

    pub(crate) fn from_u8(value: u8) -> State {
        State::ALL[usize::from(value.min(3))]
    }

    /// The lower-case name used in logs and in the wire protocol.
    ///
    /// ```
    /// assert_eq!(deputy_core::State::Done.as_str(), "done");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Draining => "draining",
            State::Stopping => "stopping",
            State::Done => "done",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When readiness turns off during a shutdown: a setting of the coordinator
/// ([`Builder::readiness`](crate::Builder::readiness)), the one home of the rule.
///
/// Kubernetes (1.28 and later, KEP-1669) keeps a terminating pod in its EndpointSlices as
/// `ready: false, terminating: true`, with `serving` following its readiness probe, and
/// kube-proxy sends traffic to serving terminating endpoints when no ready one is left (a
/// rollout with `maxSurge: 0`, `externalTrafficPolicy: Local` with the node's only endpoint
/// draining). [`OffAtTrigger`](Readiness::OffAtTrigger) gives that fallback up, so such
/// requests fail; [`UntilListenerCloses`](Readiness::UntilListenerCloses) keeps it, serving
/// them until the drain is over.
///
/// Choose `UntilListenerCloses` when a pod may be the last endpoint left for some clients
/// (one replica, `maxSurge: 0`, node-local traffic); keep the default when other pods are
/// always ready, so that load balancers that look only at readiness (an ALB, a mesh) take
/// the pod out at once.
///
/// ```
/// use deputy_core::{Readiness, State};
///
/// // Draining: off by default, still on until the listener closes with the other rule.
/// assert!(!Readiness::OffAtTrigger.is_ready(State::Draining, true));
/// assert!(Readiness::UntilListenerCloses.is_ready(State::Draining, true));
/// // Both: off once the drain is over, and whenever the service says it is not ready.
/// assert!(!Readiness::UntilListenerCloses.is_ready(State::Stopping, true));
/// assert!(!Readiness::UntilListenerCloses.is_ready(State::Draining, false));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Readiness {
    /// Off from the first trigger on (the default): new traffic stops as soon as the
    /// endpoints propagate.
    #[default]
    OffAtTrigger,
    /// On through the drain (while `deputy_tokio::serve` keeps its listener open), off when
    /// the stopping phases begin: a terminating pod stays `serving` for Kubernetes' fallback.
    UntilListenerCloses,
}

impl Readiness {
    /// Readiness as a load balancer should see it, in `state`, when the service itself says
    /// `service_ready`.
    pub fn is_ready(self, state: State, service_ready: bool) -> bool {
        let serving = match self {
            Readiness::OffAtTrigger => state == State::Running,
            Readiness::UntilListenerCloses => state <= State::Draining,
        };
        serving && service_ready
    }
}

/// Something that happened, fed to [`Machine::apply`].
///
/// ```
/// use deputy_core::state::{Event, Machine};
/// use deputy_core::{Reason, State};
///
/// let mut machine = Machine::new(0);
/// machine.apply(Event::Trigger(Reason::Signal(15))).unwrap();
/// machine.apply(Event::DrainDelayElapsed).unwrap();
/// machine.apply(Event::InFlightZero).unwrap();
/// assert_eq!(machine.state(), State::Done); // no phases: done once drained
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Start shutting down (signal, control socket, HTTP, or the program itself).
    Trigger(Reason),
    /// The drain delay (time for endpoints to stop sending traffic) has passed.
    DrainDelayElapsed,
    /// Nothing is in flight any more (only counts once the drain delay has passed).
    InFlightZero,
    /// The drain timeout has passed with work still in flight.
    DrainTimedOut,
    /// The phase that is running finished, with this outcome.
    PhaseFinished(PhaseOutcome),
    /// Skip the rest of the drain (a second trigger, e.g. a second Ctrl-C).
    Force,
    /// Stop now: what has not finished is abandoned (e.g. a third Ctrl-C).
    Abandon,
    /// The grace period is used up: what has not finished is abandoned.
    BudgetExhausted,
}

/// How one phase ended.
///
/// ```
/// use deputy_core::PhaseOutcome;
///
/// assert_eq!(PhaseOutcome::Failed.to_string(), "failed");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum PhaseOutcome {
    /// Every hook completed.
    Completed,
    /// At least one hook returned an error or panicked; none timed out.
    Failed,
    /// At least one hook was still running at the phase's timeout and was dropped.
    #[cfg_attr(feature = "serde", serde(rename = "timed out"))]
    TimedOut,
    /// The phase never ran, or was cut short, because shutdown was abandoned.
    Abandoned,
}

impl PhaseOutcome {
    /// The lower-case name used in logs and in the wire protocol.
    ///
    /// ```
    /// assert_eq!(deputy_core::PhaseOutcome::TimedOut.as_str(), "timed out");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseOutcome::Completed => "completed",
            PhaseOutcome::Failed => "failed",
            PhaseOutcome::TimedOut => "timed out",
            PhaseOutcome::Abandoned => "abandoned",
        }
    }
}

impl fmt::Display for PhaseOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the drain ended.
///
/// ```
/// use deputy_core::{DrainOutcome, ManualClock, ShutdownCoordinator};
/// use std::time::Duration;
///
/// let coordinator = ShutdownCoordinator::builder()
///     .drain_delay(Duration::ZERO)
///     .build(ManualClock::new())
///     .unwrap();
/// coordinator.handle().trigger("deploy");
/// let report = futures::executor::block_on(coordinator.run());
/// assert_eq!(report.drain.outcome, DrainOutcome::Drained);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DrainOutcome {
    /// Nothing was left in flight.
    Drained,
    /// The drain timeout passed with work still in flight.
    TimedOut,
    /// A second trigger skipped the rest of the drain.
    Forced,
    /// Shutdown was abandoned while draining.
    Abandoned,
}

impl DrainOutcome {
    /// The lower-case name used in logs and in the wire protocol.
    ///
    /// ```
    /// assert_eq!(deputy_core::DrainOutcome::Forced.as_str(), "forced");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            DrainOutcome::Drained => "drained",
            DrainOutcome::TimedOut => "timed out",
            DrainOutcome::Forced => "forced",
            DrainOutcome::Abandoned => "abandoned",
        }
    }
}

impl fmt::Display for DrainOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the machine reached `Done`.
///
/// ```
/// use deputy_core::state::{Event, Machine};
/// use deputy_core::{Ending, Reason};
///
/// let mut machine = Machine::new(1);
/// machine.apply(Event::Trigger(Reason::Signal(15))).unwrap();
/// machine.apply(Event::Abandon).unwrap();
/// assert_eq!(machine.ending(), Some(Ending::Abandoned));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ending {
    /// Every phase ran to an outcome.
    Finished,
    /// [`Event::Abandon`] cut it short.
    Abandoned,
    /// [`Event::BudgetExhausted`] cut it short.
    BudgetExhausted,
}

/// Why an event was rejected. The machine is unchanged.
///
/// ```
/// use deputy_core::state::{Event, Machine, Rejection};
///
/// let mut machine = Machine::new(1);
/// assert_eq!(machine.apply(Event::Force), Err(Rejection::NotTriggered));
/// assert_eq!(Rejection::NotTriggered.to_string(), "shutdown has not been triggered");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// Shutdown was triggered already; a repeated trigger is not a force.
    AlreadyTriggered,
    /// The event needs a triggered shutdown.
    NotTriggered,
    /// The event belongs to the drain, which is over.
    NotDraining,
    /// The event belongs to the stopping phases, which are not running.
    NotStopping,
    /// The drain delay has not passed yet, so the drain cannot end normally.
    DrainDelayPending,
    /// The drain delay was reported as elapsed already.
    DelayAlreadyElapsed,
    /// A phase cannot finish as abandoned; use [`Event::Abandon`].
    InvalidOutcome,
    /// The machine is done; nothing changes it any more.
    Done,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rejection::AlreadyTriggered => "shutdown was already triggered",
            Rejection::NotTriggered => "shutdown has not been triggered",
            Rejection::NotDraining => "shutdown is not draining",
            Rejection::NotStopping => "shutdown is not stopping",
            Rejection::DrainDelayPending => "the drain delay has not elapsed",
            Rejection::DelayAlreadyElapsed => "the drain delay has already elapsed",
            Rejection::InvalidOutcome => "a phase cannot finish as abandoned",
            Rejection::Done => "shutdown is done",
        })
    }
}

impl std::error::Error for Rejection {}

/// The state change an accepted event caused (`from == to` when it only changed bookkeeping).
///
/// ```
/// use deputy_core::state::{Event, Machine};
/// use deputy_core::{Reason, State};
///
/// let mut machine = Machine::new(1);
/// let step = machine.apply(Event::Trigger(Reason::Signal(15))).unwrap();
/// assert_eq!((step.from, step.to), (State::Running, State::Draining));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The state before the event.
    pub from: State,
    /// The state after it.
    pub to: State,
}

/// The shutdown state machine with its bookkeeping: the reason, the drain's outcome and one
/// outcome per phase.
///
/// # Examples
///
/// ```
/// use deputy_core::state::{Event, Machine, PhaseOutcome};
/// use deputy_core::{Reason, State};
///
/// let mut machine = Machine::new(2);
/// machine.apply(Event::Trigger(Reason::Signal(15))).unwrap();
/// assert_eq!(machine.state(), State::Draining);
/// assert!(!machine.is_ready(true)); // readiness is off from the first trigger on
///
/// machine.apply(Event::Force).unwrap(); // a second signal skips the drain
/// machine.apply(Event::PhaseFinished(PhaseOutcome::Completed)).unwrap();
/// machine.apply(Event::BudgetExhausted).unwrap();
/// assert_eq!(machine.state(), State::Done);
/// assert_eq!(
///     machine.phases(),
///     &[Some(PhaseOutcome::Completed), Some(PhaseOutcome::Abandoned)]
/// );
/// // Done is terminal; events are rejected with a value, never a panic.
/// assert!(machine.apply(Event::Force).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    state: State,
    reason: Option<Reason>,
    delay_elapsed: bool,
    drain: Option<DrainOutcome>,
    phases: Vec<Option<PhaseOutcome>>,
    current: usize,
    ending: Option<Ending>,
}

impl Machine {
    /// A running machine for a plan with `phases` stopping phases.
    ///
    /// ```
    /// use deputy_core::state::{Event, Machine};
    /// use deputy_core::{Reason, State};
    ///
    /// let mut machine = Machine::new(1);
    /// assert_eq!(machine.state(), State::Running);
    /// assert_eq!(machine.phases(), &[None]); // one phase, not run yet
    /// ```
    pub fn new(phases: usize) -> Self {
        Self {
            state: State::Running,
            reason: None,
            delay_elapsed: false,
            drain: None,
            phases: vec![None; phases],
            current: 0,
            ending: None,
        }
    }

    /// The current state.
    ///
    /// ```
    /// use deputy_core::state::{Event, Machine};
    /// use deputy_core::{Reason, State};
    ///
    /// let mut machine = Machine::new(1);
    /// machine.apply(Event::Trigger(Reason::Signal(15))).unwrap();
    /// assert_eq!(machine.state(), State::Draining);
    /// ```
    pub fn state(&self) -> State {
        self.state
    }

    /// The reason given by the trigger that started shutdown.
    ///
    /// ```
    /// use deputy_core::state::{Event, Machine};
    /// use deputy_core::{Reason, State};
    ///
    /// let mut machine = Machine::new(1);
    /// assert_eq!(machine.reason(), None);
    /// machine.apply(Event::Trigger(Reason::Signal(15))).unwrap();
    /// assert_eq!(machine.reason(), Some(&Reason::Signal(15)));
    /// ```
    pub fn reason(&self) -> Option<&Reason> {
        self.reason.as_ref()
    }

    /// Whether the drain delay has been reported as elapsed.
    ///
    /// ```
    /// use deputy_core::state::{Event, Machine};
    /// use deputy_core::{Reason, State};
    ///
    /// let mut machine = Machine::new(1);
    /// machine.apply(Event::Trigger(Reason::Signal(15))).unwrap();
    /// assert!(!machine.drain_delay_elapsed());
    /// machine.apply(Event::DrainDelayElapsed).unwrap();
    /// assert!(machine.drain_delay_elapsed());
    /// ```
    pub fn drain_delay_elapsed(&self) -> bool {
        self.delay_elapsed
    }

    /// How the drain ended, once it has.
    ///
    /// ```
    /// use deputy_core::state::{Event, Machine};
    /// use deputy_core::{DrainOutcome, Reason};
    ///
    /// let mut machine = Machine::new(1);
    /// machine.apply(Event::Trigger(Reason::Signal(15))).unwrap();
    /// assert_eq!(machine.drain(), None); // still draining
    /// machine.apply(Event::Force).unwrap();
    /// assert_eq!(machine.drain(), Some(DrainOutcome::Forced));
    /// ```
    pub fn drain(&self) -> Option<DrainOutcome> {
        self.drain
    }

    /// One entry per phase: its outcome, or `None` while it has not finished.
    ///
    /// ```
    /// use deputy_core::state::{Event, Machine};
    /// use deputy_core::{PhaseOutcome, Reason};
    ///
    /// let mut machine = Machine::new(2);
    /// machine.apply(Event::Trigger(Reason::Signal(15))).unwrap();
    /// machine.apply(Event::Force).unwrap();
    /// machine.apply(Event::PhaseFinished(PhaseOutcome::Failed)).unwrap();
    /// assert_eq!(machine.phases(), &[Some(PhaseOutcome::Failed), None]);
    /// ```
    pub fn phases(&self) -> &[Option<PhaseOutcome>] {
        &self.phases
    }

    /// The index of the phase that is running, while `Stopping`.
    ///
    /// ```
    /// use deputy_core::state::{Event, Machine};
    /// use deputy_core::{PhaseOutcome, Reason};
    ///
    /// let mut machine = Machine::new(2);
    /// machine.apply(Event::Trigger(Reason::Signal(15))).unwrap();
    /// assert_eq!(machine.current_phase(), None); // draining
    /// machine.apply(Event::Force).unwrap();
    /// assert_eq!(machine.current_phase(), Some(0));
    /// machine.apply(Event::PhaseFinished(PhaseOutcome::Completed)).unwrap();
    /// assert_eq!(machine.current_phase(), Some(1));
    /// ```
    pub fn current_phase(&self) -> Option<usize> {
        (self.state == State::Stopping).then_some(self.current)
    }

    /// How the machine reached `Done`, once it has.
    ///
    /// ```
    /// use deputy_core::state::{Event, Machine};
    /// use deputy_core::{Ending, Reason};
    ///
    /// let mut machine = Machine::new(0);
    /// machine.apply(Event::Trigger(Reason::Signal(15))).unwrap();
    /// assert_eq!(machine.ending(), None);
    /// machine.apply(Event::BudgetExhausted).unwrap();
    /// assert_eq!(machine.ending(), Some(Ending::BudgetExhausted));
    /// ```
    pub fn ending(&self) -> Option<Ending> {
        self.ending
    }

    /// Readiness as a load balancer should see it: what the service says while running,
    /// false from the first trigger on.
    ///
    /// ```
    /// use deputy_core::state::{Event, Machine};
    /// use deputy_core::{Reason, State};
    ///
    /// let mut machine = Machine::new(1);
    /// assert!(machine.is_ready(true));
    /// machine.apply(Event::Trigger(Reason::Signal(15))).unwrap();
    /// assert!(!machine.is_ready(true));
    /// ```
    pub fn is_ready(&self, service_ready: bool) -> bool {
        self.state.is_ready(service_ready)
    }

    /// Liveness: true until `Done`.
    ///
    /// ```
    /// use deputy_core::state::{Event, Machine};
    /// use deputy_core::{Reason, State};
    ///
    /// let mut machine = Machine::new(1);
    /// machine.apply(Event::Trigger(Reason::Signal(15))).unwrap();
    /// assert!(machine.is_live()); // draining: still live
    /// machine.apply(Event::Abandon).unwrap();
    /// assert!(!machine.is_live()); // done
    /// ```
    pub fn is_live(&self) -> bool {
        self.state.is_live()
    }

    /// The pure form of [`apply`](Self::apply): the machine after `event`, leaving `self` as
    /// it is.
    ///
    /// ```
    /// use deputy_core::state::{Event, Machine};
    ///
    /// let machine = Machine::new(0);
    /// let next = machine.next(Event::Trigger("test".into())).unwrap();
    /// assert_eq!(machine.state(), deputy_core::State::Running);
    /// assert_eq!(next.state(), deputy_core::State::Draining);
    /// ```
    pub fn next(&self, event: Event) -> Result<Machine, Rejection> {
        let mut next = self.clone();
        next.apply(event)?;
        Ok(next)
    }

    /// Applies `event`. On rejection the machine is unchanged (invariant 3).
    ///
    /// ```
    /// use deputy_core::state::{Event, Machine, Rejection};
    /// use deputy_core::Reason;
    ///
    /// let mut machine = Machine::new(1);
    /// assert!(machine.apply(Event::Trigger(Reason::Signal(15))).is_ok());
    /// assert_eq!(
    ///     machine.apply(Event::Trigger(Reason::Signal(15))),
    ///     Err(Rejection::AlreadyTriggered)
    /// );
    /// ```
    pub fn apply(&mut self, event: Event) -> Result<Step, Rejection> {
        let from = self.state;
        match (from, event) {
            // Invariant 2.
            (State::Done, _) => return Err(Rejection::Done),

            (State::Running, Event::Trigger(reason)) => {
                self.reason = Some(reason);
                self.state = State::Draining;
            }
            (_, Event::Trigger(_)) => return Err(Rejection::AlreadyTriggered),
            (State::Running, _) => return Err(Rejection::NotTriggered),

            (_, Event::Abandon) => self.finish_early(Ending::Abandoned),
            (_, Event::BudgetExhausted) => self.finish_early(Ending::BudgetExhausted),

            (State::Draining, Event::DrainDelayElapsed) => {
                if self.delay_elapsed {
                    return Err(Rejection::DelayAlreadyElapsed);
                }
                self.delay_elapsed = true;
            }
            (State::Draining, Event::InFlightZero) => {
                if !self.delay_elapsed {
                    return Err(Rejection::DrainDelayPending);
                }
                self.end_drain(DrainOutcome::Drained);
            }
            (State::Draining, Event::DrainTimedOut) => {
                if !self.delay_elapsed {
                    return Err(Rejection::DrainDelayPending);
                }
                self.end_drain(DrainOutcome::TimedOut);
            }
            (State::Draining, Event::Force) => self.end_drain(DrainOutcome::Forced),
            (State::Draining, Event::PhaseFinished(_)) => return Err(Rejection::NotStopping),

            (State::Stopping, Event::PhaseFinished(outcome)) => {
                if outcome == PhaseOutcome::Abandoned {
                    return Err(Rejection::InvalidOutcome);
                }
                self.phases[self.current] = Some(outcome);
                self.current += 1;
                if self.current == self.phases.len() {
                    self.finish(Ending::Finished);
                }
            }
            (State::Stopping, _) => return Err(Rejection::NotDraining),
        }
        Ok(Step {
            from,
            to: self.state,
        })
    }

    fn end_drain(&mut self, outcome: DrainOutcome) {
        self.drain = Some(outcome);
        self.state = State::Stopping;
        self.current = 0;
        if self.phases.is_empty() {
            // Nothing to stop: the plan is complete as soon as the drain is.
            self.finish(Ending::Finished);
        }
    }

    fn finish_early(&mut self, ending: Ending) {
        if self.drain.is_none() {
            self.drain = Some(DrainOutcome::Abandoned);
        }
        // Invariant 4: the phase that was running and the ones after it are accounted for.
        for outcome in &mut self.phases[self.current..] {
            outcome.get_or_insert(PhaseOutcome::Abandoned);
        }
        self.current = self.phases.len();
        self.finish(ending);
    }

    fn finish(&mut self, ending: Ending) {
        self.ending = Some(ending);
        self.state = State::Done;
    }
}

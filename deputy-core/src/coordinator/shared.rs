//! The state every handle shares: the machine, its record, and their side effects.
//!
//! # Invariants
//!
//! 1. Every state change goes through [`Shared::apply`] (or [`Shared::request`], which calls
//!    the same step), which updates the machine, the lock-free state mirror and the record
//!    under one lock, then (lock released) cancels the tokens that belong to the states
//!    entered and wakes every watcher. [`Inner`] is private to this file, so nothing else can
//!    change it.
//! 2. The state mirror is stored before the tokens are cancelled, so whoever sees the draining
//!    token cancelled also sees a state at least `Draining` (same for stopping).
//! 3. The transition log is append-only and lists every state entered, in order, once, plus
//!    one entry per phase started; so a watcher that reads it in order misses nothing.
//! 4. A phase's hooks are taken exactly once, when it starts; a hook added later is refused.
//! 5. A trigger, force or abandon request is recorded in the same critical section as the
//!    transition it causes, so whoever sees the transition (the driving future building the
//!    report) also sees the record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use event_listener::{Event, EventListener};

use super::escalation::Escalation;
use super::hook::Hook;
use super::phase::Phase;
use super::propagation::Arrivals;
use super::report::{ExitCodes, ShutdownReport, TriggerKind, TriggerRecord};
use super::status::{Status, Transition};
use crate::connections::Connections;
use crate::error::HookError;
use crate::inflight::Registry;
use crate::runtime::Runtime;
use crate::state::{Event as MachineEvent, Machine, Rejection, State, Step};
use crate::sync::{AtomicBool, AtomicU8, AtomicUsize, Mutex, Ordering};
use crate::{CancellationToken, InFlight, Readiness, Reason, Straggler};

/// How many names of work in flight a status or a report lists, the oldest first.
pub(crate) const MAX_STRAGGLERS: usize = 5;

#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) grace_period: Duration,
    pub(crate) drain_delay: Duration,
    /// With it, the drain delay measures itself: `drain_delay` is its minimum.
    pub(crate) drain_delay_max: Option<Duration>,
    pub(crate) quiet_period: Duration,
    pub(crate) drain_timeout: Duration,
    /// Over how long long-lived connections are told to move, from the end of the drain
    /// delay.
    pub(crate) disconnect_window: Duration,
    pub(crate) phases: Vec<Phase>,
    pub(crate) exit_codes: ExitCodes,
    pub(crate) readiness: Readiness,
    /// How long the start-up tasks may take, from the build.
    pub(crate) startup_timeout: Option<Duration>,
}

/// The plan and the handles every part reads; the changing state is in [`Inner`], reached
/// only through this type's methods (invariant 1).
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) plan: Plan,
    pub(crate) phase_names: Vec<Arc<str>>,
    pub(crate) draining: CancellationToken,
    pub(crate) stopping: CancellationToken,
    /// Each phase's token, for its hooks' contexts (cancelled when the phase ends before
    /// they do). Made with the coordinator, so that the way from the trigger to the first
    /// hook allocates as little as it can; a phase runs at most once (the machine only
    /// moves forward).
    pub(crate) phase_tokens: Vec<CancellationToken>,
    pub(crate) in_flight: InFlight,
    state: AtomicU8,
    service_ready: AtomicBool,
    /// Start-up: whether `ready()` has been called once, how many start-up tasks have not
    /// finished, whether start-up completed (for good), and when the start-up tasks' time
    /// is up.
    ever_ready: AtomicBool,
    pub(crate) startup_pending: AtomicUsize,
    started: AtomicBool,
    pub(crate) startup_deadline: Option<Instant>,
    /// Cleared by [`Shutdown::not_live`](crate::Shutdown::not_live): the service is stuck.
    service_live: AtomicBool,
    /// A line for people about what the service is doing (systemd's `STATUS=`).
    message: Mutex<Option<Arc<str>>>,
    /// New connections and requests after the trigger.
    pub(crate) arrivals: Arrivals,
    /// Named work in flight.
    pub(crate) named: Registry,
    /// The long-lived connections.
    pub(crate) connections: Connections,
    escalations: Mutex<u32>,
    /// Set when a coordinator that never started is dropped (a service that failed to
    /// start): its ending changes state without the log lines of a shutdown.
    quiet: AtomicBool,
    inner: Mutex<Inner>,
    hooks: Mutex<Hooks>,
    changed: Event,
}

#[derive(Debug)]
struct Inner {
    machine: Machine,
    triggered_at: Option<Instant>,
    /// When the drain ended and what was in flight then.
    drain_end: Option<(Instant, usize)>,
    /// The named work still in flight when the drain ended.
    stragglers: Vec<Straggler>,
    triggers: Vec<TriggerRecord>,
    transitions: Vec<Transition>,
    /// The exit code set by [`Shared::set_exit_code`], which the report then carries.
    exit_code: Option<i32>,
    report: Option<Arc<ShutdownReport>>,
}

/// What the report is made of, copied out under the lock in one go.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) machine: Machine,
    pub(crate) drain_end: Option<(Instant, usize)>,
    pub(crate) stragglers: Vec<Straggler>,
    pub(crate) triggers: Vec<TriggerRecord>,
    pub(crate) exit_code: Option<i32>,
}

/// A state change made under the lock, for the unlocked half to act on.
struct Change {
    step: Step,
    /// The phase running after it.
    phase: Option<usize>,
    /// The shutdown's reason, when the state changed (for the log line).
    reason: Option<Reason>,
    /// Time since the first trigger.
    at: Duration,
}

/// The next entry of the transition log for a reader at some index.
pub(crate) enum Next {
    /// The entry at that index.
    Entry(Transition),
    /// The log ended (with `Done`) before that index.
    End,
    /// Not written yet.
    Pending,
}

#[derive(Debug)]
struct Hooks {
    per_phase: Vec<Vec<Hook>>,
    /// Phases whose hooks have been taken (invariant 4).
    started: usize,
}

impl Shared {
    pub(crate) fn new(runtime: Arc<dyn Runtime>, plan: Plan) -> Self {
        let phase_names: Vec<Arc<str>> = plan.phases.iter().map(|p| p.name().into()).collect();
        let count = phase_names.len();
        let named = Registry::new(&*runtime);
        let startup_deadline = plan
            .startup_timeout
            .and_then(|timeout| runtime.now().checked_add(timeout));
        Self {
            runtime,
            plan,
            phase_names,
            draining: CancellationToken::new(),
            stopping: CancellationToken::new(),
            phase_tokens: (0..count).map(|_| CancellationToken::new()).collect(),
            in_flight: InFlight::new(),
            state: AtomicU8::new(State::Running as u8),
            service_ready: AtomicBool::new(false),
            ever_ready: AtomicBool::new(false),
            startup_pending: AtomicUsize::new(0),
            started: AtomicBool::new(false),
            startup_deadline,
            service_live: AtomicBool::new(true),
            message: Mutex::new(None),
            arrivals: Arrivals::new(),
            named,
            connections: Connections::new(),
            escalations: Mutex::new(0),
            quiet: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                machine: Machine::new(count),
                triggered_at: None,
                drain_end: None,
                stragglers: Vec::new(),
                // Room for a usual shutdown's records (a trigger, a second signal; running
                // to draining to each phase to done), so that recording them on the way
                // from the signal to the first hook allocates nothing.
                triggers: Vec::with_capacity(2),
                transitions: Vec::with_capacity(count + 3),
                exit_code: None,
                report: None,
            }),
            hooks: Mutex::new(Hooks {
                per_phase: (0..count).map(|_| Vec::new()).collect(),
                started: 0,
            }),
            changed: Event::new(),
        }
    }

    #[inline]
    pub(crate) fn state(&self) -> State {
        // Acquire: pairs with the Release store in `step` (invariant 2).
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        // Relaxed: readiness is a standalone flag, read on its own.
        self.service_ready.store(ready, Ordering::Relaxed);
        if ready {
            self.ever_ready.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        // Relaxed: as in `set_ready`.
        let ready = self.service_ready.load(Ordering::Relaxed)
            && self.startup_pending.load(Ordering::Relaxed) == 0;
        self.plan.readiness.is_ready(self.state(), ready)
    }

    /// Start-up is complete once `ready()` has been called and no start-up task is left;
    /// from then on, for good.
    pub(crate) fn is_started(&self) -> bool {
        if self.started.load(Ordering::Relaxed) {
            return true;
        }
        let started = self.ever_ready.load(Ordering::Relaxed)
            && self.startup_pending.load(Ordering::Relaxed) == 0;
        if started {
            self.started.store(true, Ordering::Relaxed);
        }
        started
    }

    pub(crate) fn set_live(&self, live: bool) {
        // Relaxed: a standalone flag, as readiness.
        self.service_live.store(live, Ordering::Relaxed);
    }

    pub(crate) fn is_live(&self) -> bool {
        self.state().is_live() && self.service_live.load(Ordering::Relaxed)
    }

    pub(crate) fn set_message(&self, message: Option<Arc<str>>) {
        *self.message.lock() = message;
    }

    pub(crate) fn listen(&self) -> EventListener {
        self.changed.listen()
    }

    /// Where the machine stands: state and phase. Changes to either wake `listen`ers.
    pub(crate) fn position(&self) -> (State, Option<usize>) {
        let inner = self.inner.lock();
        (inner.machine.state(), inner.machine.current_phase())
    }

    /// When the first trigger was accepted.
    pub(crate) fn triggered_at(&self) -> Option<Instant> {
        self.inner.lock().triggered_at
    }

    /// Why shutdown was triggered, once it was.
    pub(crate) fn reason(&self) -> Option<Reason> {
        self.inner.lock().machine.reason().cloned()
    }

    /// Whether the drain delay has been recorded as over.
    pub(crate) fn drain_delay_elapsed(&self) -> bool {
        self.inner.lock().machine.drain_delay_elapsed()
    }

    /// Entry `index` of the transition log (invariant 3).
    pub(crate) fn transition(&self, index: usize) -> Next {
        let inner = self.inner.lock();
        match inner.transitions.get(index) {
            Some(entry) => Next::Entry(entry.clone()),
            None if inner.machine.state() == State::Done => Next::End,
            None => Next::Pending,
        }
    }

    /// A snapshot for status endpoints.
    pub(crate) fn status(&self) -> Status {
        let now = self.runtime.now();
        let (state, phase, triggered_at) = {
            let inner = self.inner.lock();
            let machine = &inner.machine;
            (machine.state(), machine.current_phase(), inner.triggered_at)
        };
        Status {
            state,
            phase: phase.map(|i| self.phase_names[i].to_string()),
            in_flight: self.in_flight.count(),
            ready: self.is_ready(),
            live: state.is_live() && self.service_live.load(Ordering::Relaxed),
            message: self.message.lock().as_deref().map(str::to_owned),
            propagation: self.arrivals.get(),
            stragglers: self.named.oldest(now, MAX_STRAGGLERS),
            elapsed: triggered_at.map_or(Duration::ZERO, |t0| now.saturating_duration_since(t0)),
        }
    }

    /// What the report is built from.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let inner = self.inner.lock();
        Snapshot {
            machine: inner.machine.clone(),
            drain_end: inner.drain_end,
            stragglers: inner.stragglers.clone(),
            triggers: inner.triggers.clone(),
            exit_code: inner.exit_code,
        }
    }

    /// Silences the state changes' log lines from now on (see `quiet`).
    pub(crate) fn silence(&self) {
        self.quiet.store(true, Ordering::Relaxed);
    }

    /// The exit code the report is to carry, whatever the outcome; refused (false) once
    /// the report is made.
    pub(crate) fn set_exit_code(&self, code: i32) -> bool {
        let mut inner = self.inner.lock();
        if inner.report.is_some() {
            return false;
        }
        inner.exit_code = Some(code);
        true
    }

    /// Applies a machine event and its side effects (invariant 1).
    pub(crate) fn apply(&self, event: MachineEvent) -> Result<Step, Rejection> {
        let now = self.runtime.now();
        let change = self.step(&mut self.inner.lock(), event, now)?;
        self.after(&change);
        Ok(change.step)
    }

    /// Applies a trigger, force or abandon request and records it, both under one lock
    /// (invariant 5). Returns whether it changed anything.
    pub(crate) fn request(&self, kind: TriggerKind, reason: Reason) -> bool {
        let event = match kind {
            TriggerKind::Trigger => MachineEvent::Trigger(reason.clone()),
            TriggerKind::Force => MachineEvent::Force,
            TriggerKind::Abandon => MachineEvent::Abandon,
        };
        let now = self.runtime.now();
        let mut inner = self.inner.lock();
        let step = self.step(&mut inner, event, now);
        let at = inner
            .triggered_at
            .map_or(Duration::ZERO, |t0| now.saturating_duration_since(t0));
        inner.triggers.push(TriggerRecord {
            kind,
            reason,
            at,
            accepted: step.is_ok(),
        });
        let state = inner.machine.state();
        drop(inner);
        match step {
            Ok(change) => {
                self.after(&change);
                true
            }
            Err(_) => {
                tracing::debug!(?kind, %state, "shutdown request changed nothing");
                false
            }
        }
    }

    /// Counts escalations (signals) and applies what the count asks for (see [`Escalation`]).
    pub(crate) fn escalate(&self, reason: Reason) -> Escalation {
        let count = {
            let mut count = self.escalations.lock();
            *count += 1;
            *count
        };
        let accepted = self.request(Escalation::request_for(count), reason);
        Escalation::of(count, accepted)
    }

    /// The locked half of a state change: the machine, the times, the log and the mirror.
    fn step(
        &self,
        inner: &mut Inner,
        event: MachineEvent,
        now: Instant,
    ) -> Result<Change, Rejection> {
        let phase_before = inner.machine.current_phase();
        let step = inner.machine.apply(event)?;
        if step.from == State::Running {
            inner.triggered_at = Some(now);
            self.arrivals.triggered(now);
        }
        if step.from == State::Draining && step.to > State::Draining {
            let count = self.in_flight.count();
            inner.drain_end = Some((now, count));
            if count > 0 {
                inner.stragglers = self.named.oldest(now, MAX_STRAGGLERS);
            }
        }
        let at = now.saturating_duration_since(inner.triggered_at.unwrap_or(now));
        let phase_after = inner.machine.current_phase();
        // Invariant 3: one entry per state entered, and one per phase started.
        for state in State::ALL {
            if state > step.from && state <= step.to {
                let phase = (state == State::Stopping).then_some(phase_after).flatten();
                inner
                    .transitions
                    .push(self.transition_entry(state, phase, at));
            }
        }
        if step.from == State::Stopping && step.to == State::Stopping && phase_after != phase_before
        {
            let entry = self.transition_entry(State::Stopping, phase_after, at);
            inner.transitions.push(entry);
        }
        // Release: pairs with the Acquire load in `state` (invariant 2).
        self.state.store(step.to as u8, Ordering::Release);
        let reason = (step.from != step.to)
            .then(|| inner.machine.reason().cloned())
            .flatten();
        Ok(Change {
            step,
            phase: phase_after,
            reason,
            at,
        })
    }

    /// The unlocked half: the log line, the tokens of the states entered, then every watcher.
    fn after(&self, change: &Change) {
        let Change { step, .. } = *change;
        // Relaxed: set before the requests it silences, on the same thread.
        if step.from != step.to && !self.quiet.load(Ordering::Relaxed) {
            tracing::info!(
                from = %step.from,
                state = %step.to,
                reason = change.reason.as_ref().map(tracing::field::display),
                phase = self.phase_name(change.phase),
                in_flight = self.in_flight.count(),
                elapsed_ms = change.at.as_millis() as u64,
                "shutdown state changed"
            );
        }
        if step.from < State::Draining && step.to >= State::Draining {
            self.draining.cancel();
        }
        if step.from < State::Stopping && step.to >= State::Stopping {
            self.stopping.cancel();
        }
        self.changed.notify(usize::MAX);
    }

    fn transition_entry(&self, state: State, phase: Option<usize>, at: Duration) -> Transition {
        Transition {
            state,
            phase: self.phase_name(phase).map(str::to_owned),
            at,
        }
    }

    fn phase_name(&self, index: Option<usize>) -> Option<&str> {
        index.map(|i| &*self.phase_names[i])
    }

    pub(crate) fn add_hook(&self, phase: &str, hook: Hook) -> Result<(), HookError> {
        let Some(index) = self.phase_names.iter().position(|p| &**p == phase) else {
            return Err(HookError::UnknownPhase {
                phase: phase.to_owned(),
                known: self.phase_names.iter().map(|p| p.to_string()).collect(),
            });
        };
        let mut hooks = self.hooks.lock();
        if index < hooks.started || self.state() == State::Done {
            return Err(HookError::PhaseStarted {
                phase: phase.to_owned(),
            });
        }
        if hooks.per_phase[index].iter().any(|h| h.name == hook.name) {
            return Err(HookError::DuplicateHook {
                phase: phase.to_owned(),
                name: hook.name.to_string(),
            });
        }
        hooks.per_phase[index].push(hook);
        Ok(())
    }

    /// Takes the hooks of phase `index` (invariant 4): when it starts, or for the report
    /// once shutdown is done.
    pub(crate) fn take_hooks(&self, index: usize) -> Vec<Hook> {
        let mut hooks = self.hooks.lock();
        hooks.started = hooks.started.max(index + 1);
        std::mem::take(&mut hooks.per_phase[index])
    }

    pub(crate) fn finish(&self, report: ShutdownReport) -> Arc<ShutdownReport> {
        let report = Arc::new(report);
        self.inner.lock().report = Some(report.clone());
        self.changed.notify(usize::MAX);
        report
    }

    pub(crate) fn report(&self) -> Option<Arc<ShutdownReport>> {
        self.inner.lock().report.clone()
    }
}

//! The state every handle shares: the machine and its side effects.
//!
//! # Invariants
//!
//! 1. Every state change goes through [`Shared::apply`], which updates the machine, the
//!    lock-free state mirror and the transition log under one lock, then (lock released)
//!    cancels the tokens that belong to the states entered and wakes every watcher.
//! 2. The state mirror is stored before the tokens are cancelled, so whoever sees the draining
//!    token cancelled also sees a state at least `Draining` (same for stopping).
//! 3. The transition log is append-only and lists every state entered, in order, once, plus
//!    one entry per phase started; so a watcher that reads it in order misses nothing.
//! 4. A phase's hooks are taken exactly once, when it starts; a hook added later is refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use event_listener::{Event, EventListener};

use super::hook::Hook;
use super::phase::Phase;
use super::report::{ExitCodes, ShutdownReport, TriggerKind, TriggerRecord};
use super::watch::Transition;
use crate::error::HookError;
use crate::runtime::Runtime;
use crate::state::{Event as MachineEvent, Machine, Rejection, State, Step};
use crate::sync::{AtomicBool, AtomicU8, Mutex, Ordering};
use crate::{CancellationToken, InFlight, Reason};

#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) grace_period: Duration,
    pub(crate) drain_delay: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) phases: Vec<Phase>,
    pub(crate) exit_codes: ExitCodes,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) plan: Plan,
    pub(crate) phase_names: Vec<Arc<str>>,
    pub(crate) draining: CancellationToken,
    pub(crate) stopping: CancellationToken,
    pub(crate) in_flight: InFlight,
    state: AtomicU8,
    service_ready: AtomicBool,
    escalations: Mutex<u32>,
    inner: Mutex<Inner>,
    hooks: Mutex<Hooks>,
    changed: Event,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) machine: Machine,
    pub(crate) triggered_at: Option<Instant>,
    /// When the drain ended and what was in flight then.
    pub(crate) drain_end: Option<(Instant, usize)>,
    pub(crate) triggers: Vec<TriggerRecord>,
    pub(crate) transitions: Vec<Transition>,
    pub(crate) report: Option<Arc<ShutdownReport>>,
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
        Self {
            runtime,
            plan,
            phase_names,
            draining: CancellationToken::new(),
            stopping: CancellationToken::new(),
            in_flight: InFlight::new(),
            state: AtomicU8::new(State::Running as u8),
            service_ready: AtomicBool::new(false),
            escalations: Mutex::new(0),
            inner: Mutex::new(Inner {
                machine: Machine::new(count),
                triggered_at: None,
                drain_end: None,
                triggers: Vec::new(),
                transitions: Vec::new(),
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
        // Acquire: pairs with the Release store in `apply` (invariant 2).
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        // Relaxed: readiness is a standalone flag, read on its own.
        self.service_ready.store(ready, Ordering::Relaxed);
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.service_ready.load(Ordering::Relaxed) && self.state() == State::Running
    }

    pub(crate) fn inner(&self) -> crate::sync::MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    pub(crate) fn listen(&self) -> EventListener {
        self.changed.listen()
    }

    /// Where the machine stands: state and phase. Changes to either wake `listen`ers.
    pub(crate) fn position(&self) -> (State, Option<usize>) {
        let inner = self.inner.lock();
        (inner.machine.state(), inner.machine.current_phase())
    }

    pub(crate) fn since_trigger(&self, at: Instant) -> Duration {
        self.inner
            .lock()
            .triggered_at
            .map_or(Duration::ZERO, |t0| at.saturating_duration_since(t0))
    }

    /// Applies a machine event and its side effects (invariant 1).
    pub(crate) fn apply(&self, event: MachineEvent) -> Result<Step, Rejection> {
        let now = self.runtime.now();
        let mut inner = self.inner.lock();
        let phase_before = inner.machine.current_phase();
        let step = inner.machine.apply(event)?;
        if step.from == State::Running {
            inner.triggered_at = Some(now);
        }
        if step.from == State::Draining && step.to > State::Draining {
            inner.drain_end = Some((now, self.in_flight.count()));
        }
        let at = now.saturating_duration_since(inner.triggered_at.unwrap_or(now));
        let phase_after = inner.machine.current_phase();
        let phase_name = |index: Option<usize>| index.map(|i| self.phase_names[i].to_string());
        // Invariant 3: one entry per state entered, and one per phase started.
        for state in State::ALL {
            if state > step.from && state <= step.to {
                let phase = if state == State::Stopping {
                    phase_name(phase_after)
                } else {
                    None
                };
                inner.transitions.push(Transition { state, phase, at });
            }
        }
        if step.from == State::Stopping && step.to == State::Stopping && phase_after != phase_before
        {
            inner.transitions.push(Transition {
                state: State::Stopping,
                phase: phase_name(phase_after),
                at,
            });
        }
        // Release: pairs with the Acquire load in `state` (invariant 2).
        self.state.store(step.to as u8, Ordering::Release);
        let reason = inner.machine.reason().cloned();
        drop(inner);

        if step.from < State::Draining && step.to >= State::Draining {
            self.draining.cancel();
        }
        if step.from < State::Stopping && step.to >= State::Stopping {
            self.stopping.cancel();
        }
        if step.from != step.to {
            tracing::info!(
                from = %step.from,
                state = %step.to,
                reason = reason.as_ref().map(tracing::field::display),
                phase = phase_name(phase_after).as_deref(),
                in_flight = self.in_flight.count(),
                elapsed_ms = at.as_millis() as u64,
                "shutdown state changed"
            );
        }
        self.changed.notify(usize::MAX);
        Ok(step)
    }

    /// Applies a trigger, force or abandon request and records it.
    pub(crate) fn request(&self, kind: TriggerKind, reason: Reason) -> bool {
        let event = match kind {
            TriggerKind::Trigger => MachineEvent::Trigger(reason.clone()),
            TriggerKind::Force => MachineEvent::Force,
            TriggerKind::Abandon => MachineEvent::Abandon,
        };
        let accepted = self.apply(event).is_ok();
        let now = self.runtime.now();
        let mut inner = self.inner.lock();
        let at = inner
            .triggered_at
            .map_or(Duration::ZERO, |t0| now.saturating_duration_since(t0));
        if !accepted {
            tracing::debug!(?kind, %reason, state = %inner.machine.state(), "shutdown request changed nothing");
        }
        inner.triggers.push(TriggerRecord {
            kind,
            reason,
            at,
            accepted,
        });
        accepted
    }

    /// Counts escalations (signals): the first triggers, the second forces, the rest abandon.
    pub(crate) fn escalate(&self, reason: Reason) -> (u32, bool) {
        let count = {
            let mut count = self.escalations.lock();
            *count += 1;
            *count
        };
        let kind = match count {
            1 => TriggerKind::Trigger,
            2 => TriggerKind::Force,
            _ => TriggerKind::Abandon,
        };
        (count, self.request(kind, reason))
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

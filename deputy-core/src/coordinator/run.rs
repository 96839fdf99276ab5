//! The coordinator's driving future: waits for the trigger, then walks the machine from
//! `Draining` to `Done`, feeding it the events that time, the in-flight counter and the hooks
//! produce.
//!
//! # Invariants
//!
//! 1. Every wait also watches the grace budget and the machine's position; so a force or
//!    abandon from any handle, or the budget running out, ends the wait at once.
//! 2. A phase's deadline is the earlier of its own timeout and the budget's end, so `Done` is
//!    reached by the end of the grace period even if every hook hangs.
//! 3. Every hook registered for a phase appears in the report exactly once, with an outcome,
//!    whether it ran or not.

use std::any::Any;
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use event_listener::EventListener;
use futures::FutureExt;
use futures::future::{Either, select};
use futures::stream::{FuturesUnordered, StreamExt};

use super::hook::{Hook, HookContext};
use super::report::{DrainReport, HookOutcome, HookReport, PhaseReport, ShutdownReport};
use super::shared::Shared;
use crate::CancellationToken;
use crate::runtime::Sleep;
use crate::state::{Event, PhaseOutcome, State};
use crate::wait::poll_until;

enum Woke {
    /// The awaited future finished.
    Ready,
    /// The machine moved (another handle forced or abandoned).
    Moved,
    /// The grace budget ran out.
    Budget,
}

/// Resolves when the machine is no longer at `at` (invariant 1).
struct Moved<'a> {
    shared: &'a Shared,
    at: (State, Option<usize>),
    listener: Option<EventListener>,
}

impl Future for Moved<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let Self {
            shared,
            at,
            listener,
        } = &mut *self;
        poll_until(
            listener,
            cx,
            || shared.listen(),
            || (shared.position() != *at).then_some(()),
        )
    }
}

async fn wait(shared: &Shared, future: impl Future, budget: &mut Sleep) -> Woke {
    let at = shared.position();
    let mut future = pin!(future);
    let mut moved = Moved {
        shared,
        at,
        listener: None,
    };
    poll_fn(|cx| {
        if budget.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Woke::Budget);
        }
        if Pin::new(&mut moved).poll(cx).is_ready() {
            return Poll::Ready(Woke::Moved);
        }
        if future.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Woke::Ready);
        }
        Poll::Pending
    })
    .await
}

pub(crate) async fn run(shared: Arc<Shared>) -> Arc<ShutdownReport> {
    if let Some(report) = shared.report() {
        return report;
    }
    shared.draining.cancelled().await;
    let runtime = shared.runtime.clone();
    let plan = &shared.plan;
    let triggered_at = shared.inner().triggered_at.unwrap_or_else(|| runtime.now());
    let budget_end = triggered_at + plan.grace_period;
    let mut budget = runtime.sleep_until(budget_end);

    if shared.state() == State::Draining && !shared.inner().machine.drain_delay_elapsed() {
        tracing::debug!(
            drain_delay_ms = plan.drain_delay.as_millis() as u64,
            "draining: waiting for endpoints to stop sending traffic"
        );
        let delay = runtime.sleep_until(triggered_at + plan.drain_delay);
        on_wake(
            &shared,
            wait(&shared, delay, &mut budget).await,
            Event::DrainDelayElapsed,
        );
    }

    if shared.state() == State::Draining {
        tracing::debug!(
            in_flight = shared.in_flight.count(),
            drain_timeout_ms = plan.drain_timeout.as_millis() as u64,
            "draining: waiting for work in flight"
        );
        // From the end of the delay as planned, not from when this line runs.
        let timeout = runtime.sleep_until(triggered_at + plan.drain_delay + plan.drain_timeout);
        let drained = shared.in_flight.drained();
        let mut timed_out = false;
        let end = async {
            if let Either::Right(_) = select(drained, timeout).await {
                timed_out = true;
            }
        };
        let woke = wait(&shared, end, &mut budget).await;
        let event = if timed_out {
            Event::DrainTimedOut
        } else {
            Event::InFlightZero
        };
        on_wake(&shared, woke, event);
    }

    let mut hook_reports: Vec<Option<Vec<HookReport>>> = vec![None; plan.phases.len()];
    let mut durations = vec![Duration::ZERO; plan.phases.len()];
    while let (State::Stopping, Some(index)) = shared.position() {
        let start = runtime.now();
        let (outcome, hooks) = run_phase(&shared, index, budget_end, &mut budget).await;
        durations[index] = runtime.now().saturating_duration_since(start);
        hook_reports[index] = Some(hooks);
        match outcome {
            PhaseEnd::Finished(outcome) => {
                // Rejected only if the machine moved meanwhile; then it accounts for the phase.
                let _ = shared.apply(Event::PhaseFinished(outcome));
            }
            PhaseEnd::Budget => {
                let _ = shared.apply(Event::BudgetExhausted);
            }
            PhaseEnd::Moved => {}
        }
    }

    let report = build_report(&shared, triggered_at, hook_reports, durations);
    match report.outcome {
        super::report::Outcome::Clean => tracing::info!(
            outcome = %report.outcome,
            exit_code = report.exit_code,
            elapsed_ms = report.duration.as_millis() as u64,
            "shutdown complete"
        ),
        _ => tracing::warn!(
            outcome = %report.outcome,
            exit_code = report.exit_code,
            elapsed_ms = report.duration.as_millis() as u64,
            "shutdown complete with problems"
        ),
    }
    shared.finish(report)
}

fn on_wake(shared: &Shared, woke: Woke, event: Event) {
    let event = match woke {
        Woke::Ready => event,
        Woke::Budget => Event::BudgetExhausted,
        Woke::Moved => return,
    };
    // Rejected only if another handle moved the machine in the meantime: nothing to do.
    let _ = shared.apply(event);
}

enum PhaseEnd {
    Finished(PhaseOutcome),
    Budget,
    Moved,
}

async fn run_phase(
    shared: &Shared,
    index: usize,
    budget_end: Instant,
    budget: &mut Sleep,
) -> (PhaseEnd, Vec<HookReport>) {
    let runtime = &shared.runtime;
    let phase = &shared.plan.phases[index];
    let name = shared.phase_names[index].clone();
    let start = runtime.now();
    // Invariant 2.
    let deadline = (start + phase.timeout_duration()).min(budget_end);
    let hooks = shared.take_hooks(index);
    // Not a child of the stopping token: that one is cancelled already.
    let token = CancellationToken::new();
    let reason = shared
        .inner()
        .machine
        .reason()
        .cloned()
        .unwrap_or_else(|| "unknown".into());
    tracing::info!(phase = %name, hooks = hooks.len(), timeout_ms = phase.timeout_duration().as_millis() as u64, "phase started");

    let mut reports: Vec<HookReport> = hooks
        .iter()
        .map(|hook| HookReport {
            name: hook.name.to_string(),
            outcome: HookOutcome::Abandoned,
            duration: Duration::ZERO,
        })
        .collect();
    let mut pending = vec![true; hooks.len()];
    let mut running = FuturesUnordered::new();
    for (i, hook) in hooks.into_iter().enumerate() {
        let Hook {
            name: hook_name,
            start: start_hook,
        } = hook;
        let ctx = HookContext {
            phase: name.clone(),
            name: hook_name,
            deadline,
            token: token.clone(),
            reason: reason.clone(),
        };
        match catch_unwind(AssertUnwindSafe(|| start_hook(ctx))) {
            Ok(future) => {
                running.push(AssertUnwindSafe(future).catch_unwind().map(move |r| (i, r)))
            }
            Err(panic) => {
                pending[i] = false;
                reports[i].outcome = HookOutcome::Panicked(panic_message(&*panic));
            }
        }
    }

    let at = shared.position();
    let mut moved = Moved {
        shared,
        at,
        listener: None,
    };
    let mut timer = runtime.sleep_until(deadline);
    let end = poll_fn(|cx| {
        while let Poll::Ready(Some((i, result))) = running.poll_next_unpin(cx) {
            pending[i] = false;
            let report = &mut reports[i];
            report.duration = runtime.now().saturating_duration_since(start);
            report.outcome = match result {
                Ok(Ok(())) => HookOutcome::Completed,
                Ok(Err(error)) => HookOutcome::Failed(error),
                Err(panic) => HookOutcome::Panicked(panic_message(&*panic)),
            };
            log_hook(&name, report);
        }
        if running.is_empty() {
            return Poll::Ready(None);
        }
        if Pin::new(&mut moved).poll(cx).is_ready() {
            return Poll::Ready(Some(PhaseEnd::Moved));
        }
        if timer.as_mut().poll(cx).is_ready() || budget.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(if deadline >= budget_end {
                PhaseEnd::Budget
            } else {
                PhaseEnd::Finished(PhaseOutcome::TimedOut)
            }));
        }
        Poll::Pending
    })
    .await;
    // Invariant 3: hooks still running are dropped and accounted for.
    drop(running);

    let end = match end {
        None => PhaseEnd::Finished(
            if reports.iter().all(|r| r.outcome == HookOutcome::Completed) {
                PhaseOutcome::Completed
            } else {
                PhaseOutcome::Failed
            },
        ),
        Some(end) => {
            token.cancel();
            let (outcome, duration) = match end {
                PhaseEnd::Moved => (
                    HookOutcome::Abandoned,
                    runtime.now().saturating_duration_since(start),
                ),
                _ => (
                    HookOutcome::TimedOut,
                    deadline.saturating_duration_since(start),
                ),
            };
            for (report, _) in reports.iter_mut().zip(&pending).filter(|(_, p)| **p) {
                report.outcome = outcome.clone();
                report.duration = duration;
                log_hook(&name, report);
            }
            end
        }
    };
    (end, reports)
}

fn log_hook(phase: &str, report: &HookReport) {
    let elapsed_ms = report.duration.as_millis() as u64;
    match &report.outcome {
        HookOutcome::Completed => {
            tracing::debug!(phase, hook = %report.name, elapsed_ms, "hook completed")
        }
        HookOutcome::Failed(error) => {
            tracing::warn!(phase, hook = %report.name, elapsed_ms, error = %error, "hook failed")
        }
        HookOutcome::Panicked(message) => {
            tracing::error!(phase, hook = %report.name, elapsed_ms, panic = %message, "hook panicked")
        }
        HookOutcome::TimedOut => {
            tracing::warn!(phase, hook = %report.name, elapsed_ms, "hook timed out and was dropped")
        }
        HookOutcome::Abandoned => {
            tracing::warn!(phase, hook = %report.name, elapsed_ms, "hook abandoned")
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

fn build_report(
    shared: &Shared,
    triggered_at: Instant,
    mut hook_reports: Vec<Option<Vec<HookReport>>>,
    durations: Vec<Duration>,
) -> ShutdownReport {
    let now = shared.runtime.now();
    let plan = &shared.plan;
    // Invariant 3: phases that never started list their hooks as abandoned.
    for (index, reports) in hook_reports.iter_mut().enumerate() {
        if reports.is_none() {
            *reports = Some(
                shared
                    .take_hooks(index)
                    .into_iter()
                    .map(|hook| HookReport {
                        name: hook.name.to_string(),
                        outcome: HookOutcome::Abandoned,
                        duration: Duration::ZERO,
                    })
                    .collect(),
            );
        }
    }
    let inner = shared.inner();
    let machine = &inner.machine;
    let phases: Vec<PhaseReport> = plan
        .phases
        .iter()
        .zip(hook_reports)
        .zip(durations)
        .zip(machine.phases())
        .map(|(((phase, hooks), duration), outcome)| PhaseReport {
            name: phase.name().to_owned(),
            timeout: phase.timeout_duration(),
            outcome: outcome.unwrap_or(PhaseOutcome::Abandoned),
            duration,
            hooks: hooks.unwrap_or_default(),
        })
        .collect();
    let (drain_end, in_flight_at_end) = inner.drain_end.unwrap_or((now, shared.in_flight.count()));
    let drain = DrainReport {
        outcome: machine
            .drain()
            .unwrap_or(crate::state::DrainOutcome::Abandoned),
        duration: drain_end.saturating_duration_since(triggered_at),
        in_flight_at_end,
    };
    let ending = machine.ending().unwrap_or(crate::state::Ending::Abandoned);
    let outcome = ShutdownReport::outcome_of(ending, &drain, &phases);
    let codes = plan.exit_codes;
    let exit_code = match outcome {
        super::report::Outcome::Clean => codes.clean,
        super::report::Outcome::Failed => codes.failed,
        super::report::Outcome::TimedOut => codes.timed_out,
        super::report::Outcome::Abandoned => codes.abandoned,
    };
    ShutdownReport {
        reason: machine
            .reason()
            .cloned()
            .unwrap_or_else(|| "unknown".into()),
        triggers: inner.triggers.clone(),
        drain,
        phases,
        ending,
        outcome,
        exit_code,
        duration: now.saturating_duration_since(triggered_at),
    }
}

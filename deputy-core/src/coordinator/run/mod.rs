//! The coordinator's driving future: waits for the trigger, then walks the machine from
//! `Draining` to `Done`, feeding it the events that time, the in-flight counter and the hooks
//! produce.
//!
//! # Invariants
//!
//! 1. Every wait goes through [`wait`], which also watches the grace budget and the
//!    machine's position; so a force or abandon from any handle, or the budget running out,
//!    ends the wait at once.
//! 2. A phase's deadline is the earlier of its own timeout and the budget's end, so `Done` is
//!    reached by the end of the grace period even if every hook hangs.
//! 3. Every hook registered for a phase appears in the report exactly once, with an outcome,
//!    whether it ran or not.

mod phase;
mod report;

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use event_listener::EventListener;
use futures::future::{Either, select};

use self::phase::PhaseEnd;
pub(crate) use self::phase::panic_message;
use super::report::{HookReport, Outcome, ShutdownReport};
use super::shared::Shared;
use crate::runtime::Sleep;
use crate::state::{Event, State};
use crate::wait::poll_until;

/// How a [`wait`] ended.
enum Woke {
    /// The awaited future finished.
    Ready,
    /// The machine moved (another handle forced or abandoned).
    Moved,
    /// The grace budget ran out.
    Budget,
}

/// The grace budget: its end, and a timer for it.
struct Budget {
    end: Instant,
    timer: Sleep,
}

/// Resolves when the machine is no longer where it was when this was made (invariant 1).
struct Moved<'a> {
    shared: &'a Shared,
    at: (State, Option<usize>),
    listener: Option<EventListener>,
}

impl Future for Moved<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
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

/// Waits for `future`, unless the machine leaves `at` or the budget runs out first
/// (invariant 1): the one race of a future against the clock in the driver. `at` is where
/// the caller decided to wait, not where the machine is when this is first polled: a force
/// that lands in between ends the wait at once. The future is polled first, so work that
/// finishes at the very instant of a deadline counts as finished.
async fn wait(
    shared: &Shared,
    at: (State, Option<usize>),
    future: impl Future,
    budget: &mut Budget,
) -> Woke {
    let mut future = pin!(future);
    let mut moved = Moved {
        shared,
        at,
        listener: None,
    };
    poll_fn(|cx| {
        if future.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Woke::Ready);
        }
        if Pin::new(&mut moved).poll(cx).is_ready() {
            return Poll::Ready(Woke::Moved);
        }
        if budget.timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Woke::Budget);
        }
        Poll::Pending
    })
    .await
}

pub(crate) async fn run(shared: Arc<Shared>) -> Arc<ShutdownReport> {
    if let Some(report) = shared.report() {
        return report;
    }
    // Meanwhile, the named guards' clock is kept (`inflight/named.rs`).
    let clock = shared.named.keep_time(&*shared.runtime);
    match select(pin!(shut_down(&shared)), pin!(clock)).await {
        Either::Left((report, _)) => report,
        Either::Right((never, _)) => match never {},
    }
}

/// Waits for the trigger, then shuts down.
async fn shut_down(shared: &Shared) -> Arc<ShutdownReport> {
    shared.draining.cancelled().await;
    let triggered_at = shared
        .triggered_at()
        .unwrap_or_else(|| shared.runtime.now());
    let end = triggered_at + shared.plan.grace_period;
    let mut budget = Budget {
        end,
        timer: shared.runtime.sleep_until(end),
    };
    let delay_end = wait_drain_delay(shared, triggered_at, &mut budget).await;
    wait_in_flight(shared, triggered_at, delay_end, &mut budget).await;
    // However the drain ended, the long-lived connections still open close now.
    shared.connections.close_all();
    let phases = run_phases(shared, &mut budget).await;
    let report = report::build(shared, triggered_at, phases);
    log_outcome(&report);
    shared.finish(report)
}

/// The coordinator (or its `run()`) was dropped before `Done`: end the shutdown here, as
/// abandoned, so that `done()`, the tokens and the connections' notices resolve.
#[cold]
pub(crate) fn abandon(shared: &Shared) {
    use crate::coordinator::TriggerKind;
    // Never triggered (a service that failed to start and returned): no shutdown to tell
    // of in the logs, only an ending for whoever waits on it.
    let started = shared.triggered_at().is_some();
    if !started {
        shared.silence();
    }
    // The trigger is refused if one came first; the abandon then ends what it started.
    shared.request(TriggerKind::Trigger, "the coordinator was dropped".into());
    shared.request(TriggerKind::Abandon, "the coordinator was dropped".into());
    let triggered_at = shared
        .triggered_at()
        .unwrap_or_else(|| shared.runtime.now());
    shared.connections.close_all();
    // The phase that was running (if any) took its hooks; the others list theirs as
    // abandoned (invariant 3).
    let report = report::build(shared, triggered_at, vec![None; shared.plan.phases.len()]);
    if started {
        log_outcome(&report);
    }
    shared.finish(report);
}

/// Draining, first step: keep serving while endpoints stop sending traffic. Returns when
/// the delay ended, as planned (not when this future was last polled).
async fn wait_drain_delay(shared: &Shared, triggered_at: Instant, budget: &mut Budget) -> Instant {
    if shared.state() != State::Draining || shared.drain_delay_elapsed() {
        return shared.runtime.now();
    }
    let delay = shared.plan.drain_delay;
    tracing::debug!(
        drain_delay_ms = delay.as_millis() as u64,
        "draining: waiting for endpoints to stop sending traffic"
    );
    let mut end = triggered_at + delay;
    loop {
        // Over already (a delay of zero): no timer, which a runtime may round up to its tick
        // (tokio's is a millisecond) on the way from signal to exit.
        if shared.runtime.now() < end {
            let timer = shared.runtime.sleep_until(end);
            let woke = wait(shared, (State::Draining, None), timer, budget).await;
            if !matches!(woke, Woke::Ready) {
                on_wake(shared, woke, Event::DrainDelayElapsed);
                return end;
            }
        }
        match quiet_end(shared, triggered_at) {
            Some(later) if later > end => end = later,
            _ => break,
        }
    }
    on_wake(shared, Woke::Ready, Event::DrainDelayElapsed);
    end
}

/// With an adaptive drain delay, when it may end: a quiet period after the last new
/// connection or request (or after the trigger, if none came), at the maximum at the latest.
fn quiet_end(shared: &Shared, triggered_at: Instant) -> Option<Instant> {
    let plan = &shared.plan;
    let max = triggered_at + plan.drain_delay_max?;
    let last = shared.arrivals.last_at().unwrap_or(triggered_at);
    let end = (last + plan.quiet_period).min(max);
    tracing::debug!(
        quiet_until_ms = end.saturating_duration_since(triggered_at).as_millis() as u64,
        "draining: waiting for a quiet period after the last new traffic"
    );
    Some(end)
}

/// Draining, second step: wait for the work in flight, up to the drain timeout, while the
/// long-lived connections are told to move from `delay_end` on.
async fn wait_in_flight(
    shared: &Shared,
    triggered_at: Instant,
    delay_end: Instant,
    budget: &mut Budget,
) {
    if shared.state() != State::Draining {
        return;
    }
    let plan = &shared.plan;
    tracing::debug!(
        in_flight = shared.in_flight.count(),
        drain_timeout_ms = plan.drain_timeout.as_millis() as u64,
        "draining: waiting for work in flight"
    );
    // From the end of the delay as planned, not from when this line runs.
    let timeout = shared
        .runtime
        .sleep_until(triggered_at + plan.drain_delay + plan.drain_timeout);
    // Meanwhile the long-lived connections are told to move, spread over the window from
    // the end of the delay (which an adaptive delay decides); the spread never ends by
    // itself, so the drain's own end decides.
    let spread = shared
        .connections
        .spread(&*shared.runtime, delay_end, plan.disconnect_window);
    let mut timed_out = false;
    let end = async {
        let drained = select(shared.in_flight.drained(), timeout);
        if let Either::Left((Either::Right(_), _)) = select(drained, pin!(spread)).await {
            timed_out = true;
        }
    };
    let woke = wait(shared, (State::Draining, None), end, budget).await;
    let event = if timed_out {
        Event::DrainTimedOut
    } else {
        Event::InFlightZero
    };
    on_wake(shared, woke, event);
}

/// Feeds the machine what a wait found.
fn on_wake(shared: &Shared, woke: Woke, event: Event) {
    let event = match woke {
        Woke::Ready => event,
        Woke::Budget => Event::BudgetExhausted,
        Woke::Moved => return,
    };
    // Rejected only if another handle moved the machine in the meantime: nothing to do.
    let _ = shared.apply(event);
}

/// What each phase that ran reported: its hooks and how long it took.
type PhaseRuns = Vec<Option<(Vec<HookReport>, Duration)>>;

/// Stopping: the phases, one after another, while the machine says one is running.
async fn run_phases(shared: &Shared, budget: &mut Budget) -> PhaseRuns {
    let mut runs: PhaseRuns = vec![None; shared.plan.phases.len()];
    while let (State::Stopping, Some(index)) = shared.position() {
        let start = shared.runtime.now();
        let (end, hooks) = phase::run(shared, index, budget).await;
        let duration = shared.runtime.now().saturating_duration_since(start);
        runs[index] = Some((hooks, duration));
        // Rejected only if the machine moved meanwhile; then it accounts for the phase.
        let _ = match end {
            PhaseEnd::Finished(outcome) => shared.apply(Event::PhaseFinished(outcome)),
            PhaseEnd::Budget => shared.apply(Event::BudgetExhausted),
            PhaseEnd::Moved => continue,
        };
    }
    runs
}

fn log_outcome(report: &ShutdownReport) {
    let (outcome, exit_code) = (report.outcome, report.exit_code);
    let elapsed_ms = report.duration.as_millis() as u64;
    // This run's propagation lag, in words: what the drain delay should cover.
    let traffic = report.drain.propagation;
    let last_connection_ms = traffic.last_connection.map(|d| d.as_millis() as u64);
    let last_request_ms = traffic.last_request.map(|d| d.as_millis() as u64);
    if outcome == Outcome::Clean {
        tracing::info!(%outcome, exit_code, elapsed_ms, last_connection_ms, last_request_ms, %traffic, "shutdown complete");
    } else {
        tracing::warn!(%outcome, exit_code, elapsed_ms, last_connection_ms, last_request_ms, %traffic, "shutdown complete with problems");
    }
}

//! One stopping phase: its hooks started together, raced against the phase's deadline
//! (invariant 2 of the driver), and each accounted for (invariant 3).

use std::any::Any;
use std::future::poll_fn;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Either, select};
use futures::stream::{FuturesUnordered, StreamExt};

use super::{Budget, Shared, Woke, wait};
use crate::CancellationToken;
use crate::coordinator::hook::{Hook, HookContext};
use crate::coordinator::report::{HookOutcome, HookReport};
use crate::state::{PhaseOutcome, State};

/// How a phase ended.
pub(super) enum PhaseEnd {
    /// Its hooks all ended, or its own timeout passed.
    Finished(PhaseOutcome),
    /// The grace budget ran out.
    Budget,
    /// Another handle moved the machine (an abandon).
    Moved,
}

/// A hook's future, caught if it panics, tagged with its place in the phase.
type Running = BoxFuture<'static, (usize, std::thread::Result<Result<(), String>>)>;

/// The hooks of a phase while they run.
struct Hooks {
    phase: Arc<str>,
    start: Instant,
    reports: Vec<HookReport>,
    pending: Vec<bool>,
    running: FuturesUnordered<Running>,
}

/// Runs phase `index`: starts its hooks, waits for them until its deadline, and reports.
pub(super) async fn run(
    shared: &Shared,
    index: usize,
    budget: &mut Budget,
) -> (PhaseEnd, Vec<HookReport>) {
    let runtime = &shared.runtime;
    let timeout = shared.plan.phases[index].timeout;
    let start = runtime.now();
    // Driver invariant 2.
    let deadline = (start + timeout).min(budget.end);
    // Not a child of the stopping token: that one is cancelled already.
    let token = shared.phase_tokens[index].clone();
    let mut hooks = Hooks::start(shared, index, start, deadline, &token);
    tracing::info!(phase = %hooks.phase, hooks = hooks.reports.len(), timeout_ms = timeout.as_millis() as u64, "phase started");

    let mut finished = false;
    let race = async {
        let all = poll_fn(|cx| hooks.poll(cx, || runtime.now()));
        finished = matches!(
            select(all, runtime.sleep_until(deadline)).await,
            Either::Left(_)
        );
    };
    let end = match wait(shared, (State::Stopping, Some(index)), race, budget).await {
        Woke::Ready if finished => PhaseEnd::Finished(hooks.outcome()),
        Woke::Ready if deadline < budget.end => PhaseEnd::Finished(PhaseOutcome::TimedOut),
        Woke::Ready | Woke::Budget => PhaseEnd::Budget,
        Woke::Moved => PhaseEnd::Moved,
    };
    if !finished {
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
        hooks.end_unfinished(outcome, duration);
    }
    (end, hooks.reports)
}

impl Hooks {
    /// Starts every hook of phase `index`; a hook that panics before its first await is
    /// recorded at once.
    fn start(
        shared: &Shared,
        index: usize,
        start: Instant,
        deadline: Instant,
        token: &CancellationToken,
    ) -> Hooks {
        let phase = shared.phase_names[index].clone();
        let reason = shared.reason().unwrap_or_else(|| "unknown".into());
        let taken = shared.take_hooks(index);
        let mut hooks = Hooks {
            phase: phase.clone(),
            start,
            reports: taken.iter().map(abandoned).collect(),
            pending: vec![true; taken.len()],
            running: FuturesUnordered::new(),
        };
        for (i, Hook { name, start: begin }) in taken.into_iter().enumerate() {
            let ctx = HookContext {
                phase: phase.clone(),
                name,
                deadline,
                token: token.clone(),
                reason: reason.clone(),
            };
            match catch_unwind(AssertUnwindSafe(|| begin(ctx))) {
                Ok(future) => hooks.running.push(
                    AssertUnwindSafe(future)
                        .catch_unwind()
                        .map(move |result| (i, result))
                        .boxed(),
                ),
                Err(panic) => {
                    hooks.pending[i] = false;
                    hooks.reports[i].outcome = HookOutcome::Panicked(panic_message(&*panic));
                }
            }
        }
        hooks
    }

    /// Records the hooks that end; ready when none is left running.
    fn poll(&mut self, cx: &mut Context<'_>, now: impl Fn() -> Instant) -> Poll<()> {
        while let Poll::Ready(Some((i, result))) = self.running.poll_next_unpin(cx) {
            self.pending[i] = false;
            let report = &mut self.reports[i];
            report.duration = now().saturating_duration_since(self.start);
            report.outcome = match result {
                Ok(Ok(())) => HookOutcome::Completed,
                Ok(Err(error)) => HookOutcome::Failed(error),
                Err(panic) => HookOutcome::Panicked(panic_message(&*panic)),
            };
            log_hook(&self.phase, report);
        }
        if self.running.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// The phase's outcome once every hook has ended.
    fn outcome(&self) -> PhaseOutcome {
        if self
            .reports
            .iter()
            .all(|r| r.outcome == HookOutcome::Completed)
        {
            PhaseOutcome::Completed
        } else {
            PhaseOutcome::Failed
        }
    }

    /// Drops the hooks still running and records them (driver invariant 3).
    fn end_unfinished(&mut self, outcome: HookOutcome, duration: Duration) {
        self.running = FuturesUnordered::new();
        for (report, _) in self
            .reports
            .iter_mut()
            .zip(&self.pending)
            .filter(|(_, p)| **p)
        {
            report.outcome = outcome.clone();
            report.duration = duration;
            log_hook(&self.phase, report);
        }
    }
}

/// The report of a hook that never ended: abandoned, until it says otherwise.
pub(super) fn abandoned(hook: &Hook) -> HookReport {
    HookReport {
        name: hook.name.to_string(),
        outcome: HookOutcome::Abandoned,
        duration: Duration::ZERO,
    }
}

fn log_hook(phase: &str, report: &HookReport) {
    let elapsed_ms = report.duration.as_millis() as u64;
    let hook = &report.name;
    match &report.outcome {
        HookOutcome::Completed => tracing::debug!(phase, hook, elapsed_ms, "hook completed"),
        HookOutcome::Failed(error) => {
            tracing::warn!(phase, hook, elapsed_ms, error = %error, "hook failed")
        }
        HookOutcome::Panicked(message) => {
            tracing::error!(phase, hook, elapsed_ms, panic = %message, "hook panicked")
        }
        HookOutcome::TimedOut => {
            tracing::warn!(phase, hook, elapsed_ms, "hook timed out and was dropped")
        }
        HookOutcome::Abandoned => tracing::warn!(phase, hook, elapsed_ms, "hook abandoned"),
    }
}

/// A panic's message, for a report: its text, or a note that it had none.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

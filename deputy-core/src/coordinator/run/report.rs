//! The report, assembled at `Done` from the shared record and what each phase reported.

use std::time::Instant;

use super::PhaseRuns;
use super::phase::abandoned;
use crate::coordinator::report::{DrainReport, Outcome, PhaseReport, ShutdownReport};
use crate::coordinator::shared::{Shared, Snapshot};
use crate::state::{DrainOutcome, Ending, PhaseOutcome};

/// Builds the report at `Done`.
pub(super) fn build(shared: &Shared, triggered_at: Instant, runs: PhaseRuns) -> ShutdownReport {
    let now = shared.runtime.now();
    let phases = phase_reports(shared, runs);
    let Snapshot {
        machine,
        drain_end,
        stragglers,
        triggers,
        exit_code,
    } = shared.snapshot();
    let phases: Vec<PhaseReport> = phases
        .into_iter()
        .zip(machine.phases())
        .map(|(mut phase, outcome)| {
            phase.outcome = outcome.unwrap_or(PhaseOutcome::Abandoned);
            phase
        })
        .collect();
    let (drain_end, in_flight_at_end) = drain_end.unwrap_or((now, shared.in_flight.count()));
    let drain = DrainReport {
        outcome: machine.drain().unwrap_or(DrainOutcome::Abandoned),
        duration: drain_end.saturating_duration_since(triggered_at),
        in_flight_at_end,
        propagation: shared.arrivals.get(),
        stragglers,
        connections: shared.connections.report(),
    };
    let ending = machine.ending().unwrap_or(Ending::Abandoned);
    let outcome = ShutdownReport::outcome_of(ending, &drain, &phases);
    let codes = shared.plan.exit_codes;
    ShutdownReport {
        reason: machine
            .reason()
            .cloned()
            .unwrap_or_else(|| "unknown".into()),
        triggers,
        drain,
        phases,
        ending,
        outcome,
        exit_code: exit_code.unwrap_or(match outcome {
            Outcome::Clean => codes.clean,
            Outcome::Failed => codes.failed,
            Outcome::TimedOut => codes.timed_out,
            Outcome::Abandoned => codes.abandoned,
        }),
        duration: now.saturating_duration_since(triggered_at),
    }
}

/// Every phase with its hooks (the outcome is the machine's, filled in by the caller): a
/// phase that never started lists its hooks as abandoned (driver invariant 3).
fn phase_reports(shared: &Shared, runs: PhaseRuns) -> Vec<PhaseReport> {
    shared
        .plan
        .phases
        .iter()
        .zip(runs)
        .enumerate()
        .map(|(index, (phase, run))| {
            let (hooks, duration) = run.unwrap_or_else(|| {
                let hooks = shared.take_hooks(index).iter().map(abandoned).collect();
                (hooks, Default::default())
            });
            PhaseReport {
                name: phase.name().to_owned(),
                timeout: phase.timeout,
                outcome: PhaseOutcome::Abandoned,
                duration,
                hooks,
            }
        })
        .collect()
}

//! `/metrics` on the health server (opt-in): the shutdown in Prometheus' text format
//! (OpenMetrics), produced with the `prometheus-client` crate at each scrape from the
//! coordinator's own record, so nothing is counted twice or goes stale. Everything is
//! prefixed `deputy_`:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `deputy_state` | gauge, 1 for the current state | `state` |
//! | `deputy_ready`, `deputy_live` | gauge, 0 or 1 | |
//! | `deputy_in_flight` | gauge | |
//! | `deputy_oldest_in_flight_seconds` | gauge, age of the oldest named work in flight | |
//! | `deputy_grace_period_seconds` | gauge, the budget from the trigger to Done | |
//! | `deputy_triggers_total` | counter, accepted requests | `kind`: trigger, force, abandon |
//! | `deputy_shutdown_elapsed_seconds` | gauge, since the first trigger | |
//! | `deputy_last_new_traffic_seconds` | gauge, after the trigger (propagation) | `kind`: connection, request |
//! | `deputy_outcome` | gauge, at Done: 1 for the outcome, 0 for the others | `outcome`: clean, failed, timed out, abandoned |
//! | `deputy_drain_duration_seconds` | gauge, at Done | |
//! | `deputy_drain_left_in_flight` | gauge, at Done: work still in flight when the drain ended | |
//! | `deputy_drain_connections` | gauge, at Done: long-lived connections | `kind`: notified, moved, cut |
//! | `deputy_phase_duration_seconds` | gauge, at Done | `phase` |
//! | `deputy_phase_outcome` | gauge, 1 | `phase`, `outcome` |
//! | `deputy_hook_duration_seconds` | gauge, at Done | `phase`, `hook` |
//! | `deputy_hook_outcome` | gauge, 1 | `phase`, `hook`, `outcome` |
//! | `deputy_exit_code` | gauge, at Done | |
//!
//! The health server lingers after Done (a second by default; set it to the scrape interval
//! with [`HealthServer::linger`](crate::HealthServer::linger) or `DEPUTY_HEALTH_LINGER`), so
//! a scrape can still read the end. examples/k8s/monitoring has a dashboard and alerting rules
//! built on these.

use std::sync::atomic::AtomicU64;

use deputy_core::{HookOutcome, Outcome, Shutdown, ShutdownReport, State, TriggerKind};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The content type of [`render`]'s text.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;
type Seconds = Gauge<f64, AtomicU64>;

/// The metrics now, as text.
pub(crate) fn render(shutdown: &Shutdown) -> String {
    let mut registry = Registry::with_prefix("deputy");
    status(&mut registry, shutdown);
    triggers(&mut registry, shutdown);
    if let Some(report) = shutdown.report() {
        report_metrics(&mut registry, &report);
    }
    let mut text = String::new();
    encode(&mut text, &registry).expect("writing to a String cannot fail");
    text
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let metric = Gauge::<i64>::default();
    metric.set(value);
    registry.register(name, help, metric);
}

fn seconds(registry: &mut Registry, name: &str, help: &str, value: std::time::Duration) {
    let metric = Seconds::default();
    metric.set(value.as_secs_f64());
    registry.register(name, help, metric);
}

fn status(registry: &mut Registry, shutdown: &Shutdown) {
    let status = shutdown.status();
    let states = Family::<Labels, Gauge>::default();
    for state in State::ALL {
        let value = i64::from(state == status.state);
        states
            .get_or_create(&vec![("state", state.as_str().to_owned())])
            .set(value);
    }
    registry.register(
        "state",
        "The shutdown's state: 1 for the current one",
        states,
    );
    gauge(
        registry,
        "ready",
        "Readiness, as /health/ready answers it",
        i64::from(status.ready),
    );
    gauge(
        registry,
        "live",
        "Liveness, as /health/live answers it",
        i64::from(status.live),
    );
    gauge(
        registry,
        "in_flight",
        "Work in flight (drain guards held)",
        status.in_flight as i64,
    );
    timing(registry, shutdown, &status);
}

/// The shutdown's times: the oldest work in flight, the budget, the time since the
/// trigger, and when the last new traffic came.
fn timing(registry: &mut Registry, shutdown: &Shutdown, status: &deputy_core::Status) {
    let oldest = status
        .stragglers
        .iter()
        .map(|straggler| straggler.age)
        .max();
    seconds(
        registry,
        "oldest_in_flight_seconds",
        "How long the oldest named work in flight has been running (0 with none)",
        oldest.unwrap_or_default(),
    );
    seconds(
        registry,
        "grace_period_seconds",
        "The budget from the first trigger to Done (set it under terminationGracePeriodSeconds)",
        shutdown.grace_period(),
    );
    seconds(
        registry,
        "shutdown_elapsed_seconds",
        "Time since the first trigger (0 before it)",
        status.elapsed,
    );
    let traffic = Family::<Labels, Seconds>::default();
    let seen = status.propagation;
    for (kind, at) in [
        ("connection", seen.last_connection),
        ("request", seen.last_request),
    ] {
        if let Some(at) = at {
            traffic
                .get_or_create(&vec![("kind", kind.to_owned())])
                .set(at.as_secs_f64());
        }
    }
    registry.register(
        "last_new_traffic_seconds",
        "When the last new connection or request came, after the trigger: the propagation lag",
        traffic,
    );
}

fn triggers(registry: &mut Registry, shutdown: &Shutdown) {
    let triggers = Family::<Labels, Counter>::default();
    for kind in ["trigger", "force", "abandon"] {
        let _ = triggers.get_or_create(&vec![("kind", kind.to_owned())]);
    }
    for record in shutdown.triggers().iter().filter(|record| record.accepted) {
        let kind = match record.kind {
            TriggerKind::Trigger => "trigger",
            TriggerKind::Force => "force",
            TriggerKind::Abandon => "abandon",
        };
        triggers
            .get_or_create(&vec![("kind", kind.to_owned())])
            .inc();
    }
    registry.register(
        "triggers",
        "Accepted trigger, force and abandon requests",
        triggers,
    );
}

fn report_metrics(registry: &mut Registry, report: &ShutdownReport) {
    let outcomes = Family::<Labels, Gauge>::default();
    for outcome in Outcome::ALL {
        outcomes
            .get_or_create(&vec![("outcome", outcome.as_str().to_owned())])
            .set(i64::from(outcome == report.outcome));
    }
    registry.register(
        "outcome",
        "How the shutdown went: 1 for its outcome",
        outcomes,
    );
    seconds(
        registry,
        "drain_duration_seconds",
        "From the trigger to the end of the drain",
        report.drain.duration,
    );
    gauge(
        registry,
        "drain_left_in_flight",
        "Work still in flight when the drain ended (cut off, or left to the phases)",
        report.drain.in_flight_at_end as i64,
    );
    let connections = Family::<Labels, Gauge>::default();
    let seen = report.drain.connections;
    for (kind, count) in [
        ("notified", seen.notified),
        ("moved", seen.moved),
        ("cut", seen.cut),
    ] {
        connections
            .get_or_create(&vec![("kind", kind.to_owned())])
            .set(count as i64);
    }
    registry.register(
        "drain_connections",
        "Long-lived connections told to move, gone before the drain ended, and cut at its end",
        connections,
    );
    gauge(
        registry,
        "exit_code",
        "The exit code the shutdown maps to",
        i64::from(report.exit_code),
    );
    phase_metrics(registry, report);
}

/// Each phase's and hook's duration and outcome.
fn phase_metrics(registry: &mut Registry, report: &ShutdownReport) {
    let (phase_durations, phase_outcomes) = (
        Family::<Labels, Seconds>::default(),
        Family::<Labels, Gauge>::default(),
    );
    let (hook_durations, hook_outcomes) = (
        Family::<Labels, Seconds>::default(),
        Family::<Labels, Gauge>::default(),
    );
    for phase in &report.phases {
        let name = ("phase", phase.name.clone());
        phase_durations
            .get_or_create(&vec![name.clone()])
            .set(phase.duration.as_secs_f64());
        phase_outcomes
            .get_or_create(&vec![
                name.clone(),
                ("outcome", phase.outcome.as_str().to_owned()),
            ])
            .set(1);
        for hook in &phase.hooks {
            let labels = vec![name.clone(), ("hook", hook.name.clone())];
            hook_durations
                .get_or_create(&labels)
                .set(hook.duration.as_secs_f64());
            let mut labels = labels;
            labels.push(("outcome", hook_outcome(&hook.outcome).to_owned()));
            hook_outcomes.get_or_create(&labels).set(1);
        }
    }
    registry.register(
        "phase_duration_seconds",
        "Each phase's duration",
        phase_durations,
    );
    registry.register("phase_outcome", "Each phase's outcome: 1", phase_outcomes);
    registry.register(
        "hook_duration_seconds",
        "Each hook's duration",
        hook_durations,
    );
    registry.register("hook_outcome", "Each hook's outcome: 1", hook_outcomes);
}

/// A hook's outcome as a label value: its kind, without the error's text.
fn hook_outcome(outcome: &HookOutcome) -> &'static str {
    match outcome {
        HookOutcome::Completed => "completed",
        HookOutcome::Failed(_) => "failed",
        HookOutcome::Panicked(_) => "panicked",
        HookOutcome::TimedOut => "timed out",
        HookOutcome::Abandoned => "abandoned",
    }
}

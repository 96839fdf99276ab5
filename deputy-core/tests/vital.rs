//! Vital tasks as a service uses them, on virtual time: spawned on an executor, failing,
//! panicking, ending early, dropped, stopping in their phase or not, and groups stopped on
//! their own while the service runs on. Then start-up tasks: readiness and "started" wait
//! for them, a start-up timeout ends the run, a shutdown during start-up stops them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deputy_core::{
    Builder, CancellationToken, HookError, HookOutcome, ManualClock, Outcome, Phase, Shutdown,
    ShutdownCoordinator, ShutdownReport, State, VitalTask,
};
use futures::FutureExt;
use futures::executor::LocalPool;
use futures::future::RemoteHandle;
use futures::task::LocalSpawnExt;

const S: Duration = Duration::from_secs(1);

/// A coordinator on a manual clock (drain delay 1 s, phases `flush` then `close` of 2 s
/// each), its `run()` spawned on a local executor, the way a service spawns it.
struct Service {
    clock: ManualClock,
    pool: LocalPool,
    shutdown: Shutdown,
    run: RemoteHandle<ShutdownReport>,
}

impl Service {
    fn new() -> Self {
        Self::with(|builder| builder)
    }

    /// [`new`](Self::new), with more settings.
    fn with(settings: impl FnOnce(Builder) -> Builder) -> Self {
        let clock = ManualClock::new();
        let builder = ShutdownCoordinator::builder()
            .grace_period(10 * S)
            .drain_delay(S)
            .drain_timeout(2 * S)
            .without_default_phases()
            .phase(Phase::new("flush").timeout(2 * S))
            .phase(Phase::new("close").timeout(2 * S));
        let coordinator = settings(builder).build(clock.clone()).unwrap();
        let shutdown = coordinator.handle();
        let pool = LocalPool::new();
        let run = pool
            .spawner()
            .spawn_local_with_handle(coordinator.run())
            .unwrap();
        let mut service = Service {
            clock,
            pool,
            shutdown,
            run,
        };
        service.settle();
        service
    }

    fn spawn(&mut self, task: VitalTask) {
        self.pool.spawner().spawn_local(task).unwrap();
        self.settle();
    }

    fn settle(&mut self) {
        self.pool.run_until_stalled();
    }

    fn advance(&mut self, by: Duration) {
        self.clock.advance(by);
        self.settle();
    }

    /// Moves time on deadline by deadline until the report is ready.
    fn finish(mut self) -> ShutdownReport {
        for _ in 0..100 {
            self.settle();
            if let Some(report) = (&mut self.run).now_or_never() {
                return report;
            }
            assert!(self.clock.advance_to_next(), "stalled");
        }
        panic!("no report");
    }
}

/// The hook line of `name` in phase `phase`.
fn hook<'a>(report: &'a ShutdownReport, phase: &str, name: &str) -> &'a HookOutcome {
    let phase = report.phases.iter().find(|p| p.name == phase).unwrap();
    &phase.hooks.iter().find(|h| h.name == name).unwrap().outcome
}

/// Runs the service to its report, which must say it was shut down for `reason` and
/// failed.
fn failed_for(service: Service, reason: &str) -> ShutdownReport {
    let report = service.finish();
    assert_eq!(report.reason.to_string(), reason);
    assert_eq!(report.outcome, Outcome::Failed);
    report
}

/// A task that runs until it is told to stop, then stops at once.
async fn until_stopped(stop: CancellationToken) {
    stop.cancelled().await;
}

/// A task that runs until `now` is cancelled, then ends with `output`.
fn ends_when<T: Send + 'static>(
    now: &CancellationToken,
    output: impl FnOnce() -> T + Send + 'static,
) -> impl FnOnce(CancellationToken) -> futures::future::BoxFuture<'static, T> + Send + 'static {
    let now = now.clone();
    move |_stop| {
        async move {
            now.cancelled().await;
            output()
        }
        .boxed()
    }
}

#[test]
fn a_task_that_fails_shuts_the_service_down_naming_itself_and_its_error() {
    let mut service = Service::new();
    let fail = CancellationToken::new();
    let task = service
        .shutdown
        .vital(
            "refresher",
            "flush",
            ends_when(&fail, || Err::<(), _>("upstream unavailable")),
        )
        .unwrap();
    service.spawn(task);
    service.advance(5 * S);
    assert_eq!(service.shutdown.state(), State::Running);

    fail.cancel();
    service.settle();
    assert_eq!(service.shutdown.state(), State::Draining);
    // The drain runs as usual: its delay first.
    service.advance(S / 2);
    assert_eq!(service.shutdown.state(), State::Draining);
    let report = failed_for(service, "vital task refresher failed: upstream unavailable");
    assert_eq!(
        hook(&report, "flush", "refresher"),
        &HookOutcome::Failed("upstream unavailable".into())
    );
    assert_eq!((report.outcome, report.exit_code), (Outcome::Failed, 1));
    assert!(
        report.summary().contains("refresher"),
        "{}",
        report.summary()
    );
}

#[test]
fn a_task_that_panics_shuts_the_service_down_with_the_panic_message() {
    let mut service = Service::new();
    let now = CancellationToken::new();
    let task = service
        .shutdown
        .vital(
            "leader",
            "flush",
            ends_when(&now, || -> () { panic!("lease lost") }),
        )
        .unwrap();
    service.spawn(task);
    now.cancel();
    service.settle();
    let report = failed_for(service, "vital task leader panicked: lease lost");
    assert_eq!(
        hook(&report, "flush", "leader"),
        &HookOutcome::Panicked("lease lost".into())
    );
}

#[test]
fn a_task_that_ends_while_the_service_runs_shuts_it_down() {
    let mut service = Service::new();
    let now = CancellationToken::new();
    let task = service
        .shutdown
        .vital("consumer", "flush", ends_when(&now, || ()))
        .unwrap();
    service.spawn(task);
    now.cancel();
    service.settle();
    failed_for(
        service,
        "vital task consumer ended while the service was running",
    );
}

#[test]
fn a_task_dropped_before_it_ends_shuts_the_service_down() {
    let mut service = Service::new();
    let task = service
        .shutdown
        .vital("consumer", "flush", until_stopped)
        .unwrap();
    // Polled once (it started), then dropped: a runtime going away, an abort.
    let mut task = Box::pin(task);
    assert!((&mut task).now_or_never().is_none());
    drop(task);
    service.settle();
    failed_for(service, "vital task consumer was dropped before it ended");
}

#[test]
fn at_shutdown_a_task_is_told_to_stop_in_its_phase_and_the_report_says_it_stopped() {
    let mut service = Service::new();
    let told = Arc::new(AtomicBool::new(false));
    let seen = told.clone();
    let task = service
        .shutdown
        .vital("consumer", "close", move |stop| async move {
            stop.cancelled().await;
            seen.store(true, Ordering::SeqCst);
            Ok::<(), String>(())
        })
        .unwrap();
    service.spawn(task);
    service.shutdown.trigger("deploy");
    service.settle();
    // Through the drain, it keeps working.
    service.advance(S / 2);
    assert_eq!(service.shutdown.state(), State::Draining);
    assert!(!told.load(Ordering::SeqCst));
    let report = service.finish();
    assert!(told.load(Ordering::SeqCst));
    assert_eq!(report.reason.to_string(), "deploy");
    assert_eq!(hook(&report, "close", "consumer"), &HookOutcome::Completed);
    assert_eq!((report.outcome, report.exit_code), (Outcome::Clean, 0));
}

#[test]
fn a_task_that_does_not_stop_in_time_is_reported_timed_out() {
    let mut service = Service::new();
    let task = service
        .shutdown
        .vital("stubborn", "flush", |_stop| std::future::pending::<()>())
        .unwrap();
    service.spawn(task);
    service.shutdown.trigger("deploy");
    let report = service.finish();
    assert_eq!(hook(&report, "flush", "stubborn"), &HookOutcome::TimedOut);
    assert_eq!(report.outcome, Outcome::TimedOut);
}

#[test]
fn a_task_never_spawned_is_waited_for_until_the_phase_timeout() {
    let service = Service::new();
    let _never_spawned = service
        .shutdown
        .vital("forgotten", "flush", until_stopped)
        .unwrap();
    service.shutdown.trigger("deploy");
    let report = service.finish();
    assert_eq!(hook(&report, "flush", "forgotten"), &HookOutcome::TimedOut);
}

#[test]
fn a_task_in_an_unknown_phase_is_refused() {
    let service = Service::new();
    let error = service
        .shutdown
        .vital("x", "flsuh", until_stopped)
        .unwrap_err();
    assert!(matches!(error, HookError::UnknownPhase { .. }), "{error}");
    let error = service.shutdown.task_group("g", "flsuh").unwrap_err();
    assert!(matches!(error, HookError::UnknownPhase { .. }), "{error}");
}

#[test]
fn a_group_stops_on_its_own_while_the_service_runs_on() {
    let mut service = Service::new();
    let consumers = service.shutdown.task_group("consumers", "flush").unwrap();
    let partitions = consumers.group("partitions");
    let other = service
        .shutdown
        .vital("refresher", "flush", until_stopped)
        .unwrap();
    service.spawn(other);
    for (group, name) in [
        (&consumers, "orders"),
        (&partitions, "p0"),
        (&partitions, "p1"),
    ] {
        let task = group.vital(name, until_stopped).unwrap();
        service.spawn(task);
    }

    // The inner group alone.
    let stopped = service.pool.run_until(partitions.stop());
    let names: Vec<&str> = stopped.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["consumers/partitions/p0", "consumers/partitions/p1"]
    );
    assert!(stopped.iter().all(|t| t.outcome == HookOutcome::Completed));
    assert_eq!(service.shutdown.state(), State::Running);

    // Then the whole group: its own task, and those already stopped.
    let stopped = service.pool.run_until(consumers.stop());
    assert_eq!(stopped.len(), 3);
    assert_eq!(service.shutdown.state(), State::Running);

    // At shutdown the stopped tasks' lines say they completed; the refresher is stopped too.
    service.shutdown.trigger("deploy");
    let report = service.finish();
    for name in ["consumers/orders", "consumers/partitions/p0", "refresher"] {
        assert_eq!(
            hook(&report, "flush", name),
            &HookOutcome::Completed,
            "{name}"
        );
    }
    assert_eq!(report.outcome, Outcome::Clean);
}

#[test]
fn a_task_that_fails_while_its_group_stops_is_reported_there_not_shut_down_for() {
    let mut service = Service::new();
    let group = service.shutdown.task_group("cache", "flush").unwrap();
    let task = group
        .vital("warmer", |stop| async move {
            stop.cancelled().await;
            Err::<(), _>("flush failed")
        })
        .unwrap();
    service.spawn(task);
    let stopped = service.pool.run_until(group.stop());
    assert_eq!(
        stopped[0].outcome,
        HookOutcome::Failed("flush failed".into())
    );
    assert_eq!(service.shutdown.state(), State::Running);
}

#[test]
fn readiness_and_started_wait_for_every_start_up_task() {
    let mut service = Service::new();
    let (migrated, warmed) = (CancellationToken::new(), CancellationToken::new());
    for (name, done) in [("migrations", &migrated), ("warm-up", &warmed)] {
        let task = service
            .shutdown
            .startup(name, ends_when(done, || Ok::<(), String>(())))
            .unwrap();
        service.spawn(task);
    }
    service.shutdown.ready();
    assert!(!service.shutdown.is_ready() && !service.shutdown.is_started());
    migrated.cancel();
    service.settle();
    assert!(!service.shutdown.is_ready() && !service.shutdown.is_started());
    warmed.cancel();
    service.settle();
    assert!(service.shutdown.is_ready() && service.shutdown.is_started());
    // Started for good; readiness comes and goes.
    service.shutdown.not_ready();
    assert!(!service.shutdown.is_ready() && service.shutdown.is_started());
    service.shutdown.ready();
    // Done start-up tasks are no vital tasks: nothing is shut down.
    service.advance(60 * S);
    assert_eq!(service.shutdown.state(), State::Running);
    service.shutdown.trigger("deploy");
    let report = service.finish();
    assert_eq!(hook(&report, "flush", "warm-up"), &HookOutcome::Completed);
    assert_eq!(report.outcome, Outcome::Clean);
}

#[test]
fn a_start_up_task_past_the_start_up_timeout_ends_the_run_naming_it() {
    let mut service = Service::with(|builder| builder.startup_timeout(30 * S));
    let dropped = Arc::new(AtomicBool::new(false));
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let on_drop = SetOnDrop(dropped.clone());
    let task = service
        .shutdown
        .startup("warm-up", move |_stop| async move {
            let _on_drop = on_drop;
            std::future::pending::<()>().await
        })
        .unwrap();
    service.spawn(task);
    service.shutdown.ready();
    service.advance(29 * S);
    assert_eq!(service.shutdown.state(), State::Running);
    assert!(!service.shutdown.is_ready());
    service.advance(S);
    assert_eq!(service.shutdown.state(), State::Draining);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the task's future is dropped"
    );
    let report = failed_for(
        service,
        "start-up task warm-up was still running at the start-up timeout (30s)",
    );
    assert!(matches!(
        hook(&report, "flush", "warm-up"),
        HookOutcome::Failed(_)
    ));
    assert_eq!((report.outcome, report.exit_code), (Outcome::Failed, 1));
}

#[test]
fn a_shutdown_during_start_up_stops_the_start_up_tasks_and_exits_cleanly() {
    let mut service = Service::with(|builder| builder.startup_timeout(30 * S));
    let task = service
        .shutdown
        .startup("migrations", |stop| async move {
            stop.cancelled().await; // rolls back, then stops
            Ok::<(), String>(())
        })
        .unwrap();
    service.spawn(task);
    service.shutdown.ready();
    service.advance(5 * S);
    service.shutdown.trigger("deploy");
    service.settle();
    assert!(!service.shutdown.is_started());
    let report = service.finish();
    assert_eq!(
        hook(&report, "flush", "migrations"),
        &HookOutcome::Completed
    );
    assert_eq!((report.outcome, report.exit_code), (Outcome::Clean, 0));
}

#[test]
fn a_failing_start_up_task_ends_the_run_and_start_up_never_completes() {
    let mut service = Service::new();
    let now = CancellationToken::new();
    let task = service
        .shutdown
        .startup(
            "migrations",
            ends_when(&now, || Err::<(), _>("column exists")),
        )
        .unwrap();
    service.spawn(task);
    service.shutdown.ready();
    now.cancel();
    service.settle();
    assert!(!service.shutdown.is_started());
    let report = failed_for(service, "start-up task migrations failed: column exists");
    assert_eq!(report.exit_code, 1);
}

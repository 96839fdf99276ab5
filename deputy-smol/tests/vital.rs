//! Vital tasks on smol: spawned with `smol::spawn(..).detach()`, a failure after a while
//! ends the run; a group stopped on its own leaves the service running.

use std::time::Duration;

use deputy_core::{HookOutcome, ShutdownCoordinator, State};
use deputy_smol::AsyncIoRuntime;

#[test]
fn a_task_failing_after_a_while_shuts_the_service_down() {
    let coordinator = ShutdownCoordinator::builder()
        .drain_delay(Duration::ZERO)
        .build(AsyncIoRuntime)
        .unwrap();
    let shutdown = coordinator.handle();
    let refresher = shutdown
        .vital("refresher", "flush", |_stop| async {
            smol::Timer::after(Duration::from_millis(50)).await;
            Err::<(), _>("upstream unavailable")
        })
        .unwrap();
    smol::spawn(refresher).detach();
    let report = smol::block_on(coordinator.run());
    assert_eq!(
        report.reason.to_string(),
        "vital task refresher failed: upstream unavailable"
    );
    assert_eq!(report.exit_code, 1);
}

#[test]
fn a_group_stopped_on_its_own_leaves_the_service_running() {
    let coordinator = ShutdownCoordinator::builder()
        .build(AsyncIoRuntime)
        .unwrap();
    let shutdown = coordinator.handle();
    let consumers = shutdown.task_group("consumers", "flush").unwrap();
    for topic in ["orders", "refunds"] {
        let task = consumers
            .vital(topic, |stop| async move { stop.cancelled().await })
            .unwrap();
        smol::spawn(task).detach();
    }
    let stopped = smol::block_on(consumers.stop());
    assert_eq!(stopped.len(), 2);
    assert!(stopped.iter().all(|t| t.outcome == HookOutcome::Completed));
    assert_eq!(shutdown.state(), State::Running);
}

#[test]
fn readiness_waits_for_a_start_up_task_and_a_start_up_timeout_ends_the_run() {
    let coordinator = ShutdownCoordinator::builder()
        .drain_delay(Duration::ZERO)
        .startup_timeout(Duration::from_millis(200))
        .build(AsyncIoRuntime)
        .unwrap();
    let shutdown = coordinator.handle();
    let quick = shutdown
        .startup("migrations", |_stop| async {
            smol::Timer::after(Duration::from_millis(20)).await;
            Ok::<(), String>(())
        })
        .unwrap();
    let slow = shutdown
        .startup("warm-up", |_stop| async {
            smol::Timer::after(Duration::from_secs(60)).await;
        })
        .unwrap();
    shutdown.ready();
    let migrations = smol::spawn(quick);
    smol::spawn(slow).detach();
    smol::block_on(migrations);
    assert!(
        !shutdown.is_ready() && !shutdown.is_started(),
        "warm-up still runs"
    );
    let report = smol::block_on(coordinator.run());
    assert_eq!(
        report.reason.to_string(),
        "start-up task warm-up was still running at the start-up timeout (200ms)"
    );
    assert_eq!(report.exit_code, 1);
}

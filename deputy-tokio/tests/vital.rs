//! Vital tasks on tokio, as a service writes them: spawned with `tokio::spawn`, a failure
//! after a while, a panic on a worker thread, a task aborted through its `JoinHandle`, and
//! one that stops when told.

use std::time::Duration;

use deputy_core::{HookOutcome, Outcome, ShutdownCoordinator, ShutdownReport};
use deputy_tokio::TokioRuntime;

fn coordinator() -> ShutdownCoordinator {
    ShutdownCoordinator::builder()
        .drain_delay(Duration::ZERO)
        .build(TokioRuntime)
        .unwrap()
}

/// The hook line of `name` in the `flush` phase.
fn flush_line<'a>(report: &'a ShutdownReport, name: &str) -> &'a HookOutcome {
    let flush = report.phases.iter().find(|p| p.name == "flush").unwrap();
    &flush.hooks.iter().find(|h| h.name == name).unwrap().outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_failing_after_a_while_shuts_the_service_down() {
    let coordinator = coordinator();
    let shutdown = coordinator.handle();
    let refresher = shutdown
        .vital("refresher", "flush", |stop| async move {
            tokio::select! {
                _ = stop.cancelled() => Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(50)) => Err("upstream unavailable"),
            }
        })
        .unwrap();
    tokio::spawn(refresher);
    let report = tokio::time::timeout(Duration::from_secs(20), coordinator.run())
        .await
        .expect("the failure ends the run");
    assert_eq!(
        report.reason.to_string(),
        "vital task refresher failed: upstream unavailable"
    );
    assert_eq!(
        flush_line(&report, "refresher"),
        &HookOutcome::Failed("upstream unavailable".into())
    );
    assert_eq!(report.exit_code, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_panicking_on_a_worker_thread_shuts_the_service_down() {
    let coordinator = coordinator();
    let shutdown = coordinator.handle();
    let leader = shutdown
        .vital("leader", "flush", |_stop| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            panic!("lease lost");
        })
        .unwrap();
    let handle = tokio::spawn(leader);
    let report = tokio::time::timeout(Duration::from_secs(20), coordinator.run())
        .await
        .unwrap();
    assert_eq!(
        report.reason.to_string(),
        "vital task leader panicked: lease lost"
    );
    assert_eq!(report.outcome, Outcome::Failed);
    // The panic is the task's outcome, not the tokio task's.
    assert!(handle.await.is_ok());
}

#[tokio::test]
async fn a_task_aborted_through_its_handle_shuts_the_service_down() {
    let coordinator = coordinator();
    let shutdown = coordinator.handle();
    let consumer = shutdown
        .vital(
            "consumer",
            "flush",
            |stop| async move { stop.cancelled().await },
        )
        .unwrap();
    let handle = tokio::spawn(consumer);
    tokio::task::yield_now().await;
    handle.abort();
    let report = tokio::time::timeout(Duration::from_secs(20), coordinator.run())
        .await
        .unwrap();
    assert_eq!(
        report.reason.to_string(),
        "vital task consumer was dropped before it ended"
    );
}

#[tokio::test]
async fn a_task_that_stops_when_told_leaves_a_clean_report() {
    let coordinator = coordinator();
    let shutdown = coordinator.handle();
    let consumer = shutdown
        .vital("consumer", "flush", |stop| async move {
            stop.cancelled().await;
            tokio::time::sleep(Duration::from_millis(10)).await; // commit offsets
            Ok::<(), std::io::Error>(())
        })
        .unwrap();
    tokio::spawn(consumer);
    shutdown.trigger("deploy");
    let report = coordinator.run().await;
    assert_eq!(flush_line(&report, "consumer"), &HookOutcome::Completed);
    assert_eq!((report.outcome, report.exit_code), (Outcome::Clean, 0));
}

//! Named work in flight: what `deputy status` lists while draining, and what the report
//! names when the drain times out.

use std::time::Duration;

use deputy_core::{DrainOutcome, ManualClock, ShutdownCoordinator};
use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;

#[test]
fn status_lists_named_work_by_name_oldest_first() {
    let clock = ManualClock::new();
    let shutdown = ShutdownCoordinator::builder()
        .build(clock.clone())
        .unwrap()
        .handle();
    let _unnamed = shutdown.guard();
    let _job = shutdown.guard_named("resize");
    clock.advance(Duration::from_secs(3));
    let _a = shutdown.guard_named("GET /export");
    clock.advance(Duration::from_secs(1));
    let b = shutdown.guard_named("GET /export");
    let names: Vec<String> = (0..6).map(|n| format!("job {n}")).collect();
    let _many: Vec<_> = names
        .iter()
        .map(|n| shutdown.guard_named(n.clone()))
        .collect();
    let status = shutdown.status();
    assert_eq!(status.in_flight, 10);
    let listed: Vec<String> = status.stragglers.iter().map(ToString::to_string).collect();
    // At most five names; the unnamed guard is counted, not listed.
    assert_eq!(listed.len(), 5);
    assert_eq!(listed[..2], ["resize (4.0s)", "GET /export ×2 (1.0s)"]);
    drop(b);
    assert_eq!(shutdown.status().stragglers[1].count, 1);
}

#[test]
fn the_report_names_what_held_the_drain_when_it_timed_out() {
    let clock = ManualClock::new();
    let coordinator = ShutdownCoordinator::builder()
        .drain_delay(Duration::ZERO)
        .drain_timeout(Duration::from_secs(2))
        .build(clock.clone())
        .unwrap();
    let shutdown = coordinator.handle();
    let slow = shutdown.guard_named("GET /export");
    let here = shutdown.guard_here();
    let mut pool = LocalPool::new();
    let run = pool
        .spawner()
        .spawn_local_with_handle(coordinator.run())
        .unwrap();
    clock.advance(Duration::from_secs(1));
    shutdown.trigger("deploy");
    pool.run_until_stalled();
    clock.advance(Duration::from_secs(2));
    let report = pool.run_until(run);
    assert_eq!(report.drain.outcome, DrainOutcome::TimedOut);
    let names: Vec<String> = report
        .drain
        .stragglers
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names.contains(&"GET /export (3.0s)".to_owned()),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|name| name.starts_with("deputy-core/tests/stragglers.rs:")),
        "guard_here names its line: {names:?}"
    );
    assert!(
        report.summary().contains("still in flight: "),
        "{}",
        report.summary()
    );
    drop((slow, here));
}

#[test]
fn a_drain_that_ends_with_nothing_in_flight_names_nothing() {
    let clock = ManualClock::new();
    let coordinator = ShutdownCoordinator::builder()
        .drain_delay(Duration::ZERO)
        .build(clock.clone())
        .unwrap();
    let shutdown = coordinator.handle();
    drop(shutdown.guard_named("GET /"));
    shutdown.trigger("deploy");
    let report = futures::executor::block_on(coordinator.run());
    assert!(report.drain.stragglers.is_empty());
    assert!(!report.summary().contains("still in flight"));
}

//! The drain delay that measures itself, and the propagation it measures: on virtual time,
//! with arrivals noted as a server would.

use std::time::Duration;

use deputy_core::{Arrival, BuildError, ManualClock, Shutdown, ShutdownCoordinator, State};
use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// A coordinator with an adaptive drain delay (min 1 s, max 10 s, quiet 1 s), triggered and
/// running on `pool`.
fn adaptive(clock: &ManualClock, pool: &LocalPool) -> Shutdown {
    let coordinator = ShutdownCoordinator::builder()
        .grace_period(Duration::from_secs(60))
        .drain_delay(Duration::from_secs(1))
        .drain_delay_max(Duration::from_secs(10))
        .quiet_period(Duration::from_secs(1))
        .build(clock.clone())
        .unwrap();
    let shutdown = coordinator.handle();
    shutdown.trigger("deploy");
    pool.spawner()
        .spawn_local(async move {
            coordinator.run().await;
        })
        .unwrap();
    shutdown
}

/// Advances `clock` by `step` until the drain delay is over; returns when, after the trigger.
fn run_until_not_draining(
    clock: &ManualClock,
    pool: &mut LocalPool,
    shutdown: &Shutdown,
) -> Duration {
    let mut at = Duration::ZERO;
    pool.run_until_stalled();
    while shutdown.state() == State::Draining {
        clock.advance(MS(100));
        at += MS(100);
        pool.run_until_stalled();
        assert!(at < Duration::from_secs(60), "never ended");
    }
    at
}

#[test]
fn without_traffic_the_delay_is_its_minimum() {
    let (clock, mut pool) = (ManualClock::new(), LocalPool::new());
    let shutdown = adaptive(&clock, &pool);
    assert_eq!(
        run_until_not_draining(&clock, &mut pool, &shutdown),
        Duration::from_secs(1)
    );
    let report = shutdown.report().unwrap();
    assert_eq!(report.drain.propagation.last(), None);
}

#[test]
fn it_ends_a_quiet_period_after_the_last_arrival() {
    let (clock, mut pool) = (ManualClock::new(), LocalPool::new());
    let shutdown = adaptive(&clock, &pool);
    for _ in 0..15 {
        // A request every 100 ms until 1.5 s.
        clock.advance(MS(100));
        shutdown.arrived(Arrival::Request);
        pool.run_until_stalled();
    }
    shutdown.arrived(Arrival::Connection);
    let ended = MS(1500) + run_until_not_draining(&clock, &mut pool, &shutdown);
    assert_eq!(ended, MS(2500));
    let seen = shutdown.report().unwrap().drain.propagation;
    assert_eq!(
        (seen.last_connection, seen.last_request),
        (Some(MS(1500)), Some(MS(1500)))
    );
    assert!(
        shutdown
            .report()
            .unwrap()
            .summary()
            .contains("last new connection 1.5s, last new request 1.5s after the trigger"),
    );
}

#[test]
fn traffic_that_never_stops_ends_at_the_maximum() {
    let (clock, mut pool) = (ManualClock::new(), LocalPool::new());
    let shutdown = adaptive(&clock, &pool);
    let mut at = Duration::ZERO;
    pool.run_until_stalled();
    while shutdown.state() == State::Draining {
        clock.advance(MS(500));
        at += MS(500);
        shutdown.arrived(Arrival::Request);
        pool.run_until_stalled();
        assert!(at <= Duration::from_secs(20), "not ended at the maximum");
    }
    assert_eq!(at, Duration::from_secs(10));
}

#[test]
fn a_force_still_ends_the_adaptive_delay_at_once() {
    let (clock, mut pool) = (ManualClock::new(), LocalPool::new());
    let shutdown = adaptive(&clock, &pool);
    clock.advance(MS(1200));
    shutdown.arrived(Arrival::Request);
    pool.run_until_stalled();
    shutdown.force("second signal");
    pool.run_until_stalled();
    assert_eq!(shutdown.state(), State::Done);
}

#[test]
fn settings_that_make_no_sense_are_refused() {
    let build = |min: u64, max: u64, quiet: u64| {
        ShutdownCoordinator::builder()
            .drain_delay(Duration::from_secs(min))
            .drain_delay_max(Duration::from_secs(max))
            .quiet_period(Duration::from_secs(quiet))
            .build(ManualClock::new())
            .err()
    };
    assert!(matches!(build(5, 2, 1), Some(BuildError::DrainDelay(_))));
    assert!(matches!(build(1, 5, 0), Some(BuildError::DrainDelay(_))));
    // The budget counts the maximum: 25 s + the drain timeout and phases is over 30 s.
    assert!(matches!(
        build(1, 25, 1),
        Some(BuildError::OverBudget { .. })
    ));
    assert_eq!(build(1, 5, 1), None);
}

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

#[test]
fn requests_and_long_lived_connections_are_listed_by_name() {
    let shutdown = ShutdownCoordinator::builder()
        .build(ManualClock::new())
        .unwrap()
        .handle();
    let _request = shutdown.guard_request("GET", "/export");
    let _chat = shutdown.connection_named("WS /chat");
    let _plain = shutdown.connection();
    let mut names: Vec<String> = shutdown
        .status()
        .stragglers
        .into_iter()
        .map(|s| s.name)
        .collect();
    names.sort();
    assert_eq!(names, ["GET /export", "WS /chat", "connection"]);
    assert_eq!(shutdown.in_flight(), 3);
}

#[test]
fn a_long_name_is_listed_cut_and_says_so() {
    let shutdown = ShutdownCoordinator::builder()
        .build(ManualClock::new())
        .unwrap()
        .handle();
    let path = format!("/reports/{}", "ü".repeat(60));
    let _request = shutdown.guard_request("GET", &path);
    let name = shutdown.status().stragglers[0].name.clone();
    assert!(name.starts_with("GET /reports/üü"), "{name}");
    assert!(name.ends_with('…'), "{name}");
    assert!(name.len() <= 4 + 56 + '…'.len_utf8(), "{name}");
}

/// Guards taken on many threads and dropped on others: each is listed while alive, in the
/// registry of its own coordinator only, and gone once dropped.
#[test]
fn named_guards_taken_and_dropped_across_threads_are_counted_right() {
    let shutdown = ShutdownCoordinator::builder()
        .build(ManualClock::new())
        .unwrap()
        .handle();
    let other = ShutdownCoordinator::builder()
        .build(ManualClock::new())
        .unwrap()
        .handle();
    let _elsewhere = other.guard_named("not mine");
    let guards: Vec<_> = (0..8)
        .map(|t| {
            let shutdown = shutdown.clone();
            std::thread::spawn(move || {
                (0..100)
                    .map(|_| shutdown.guard_named(format!("job {}", t % 2)))
                    .collect::<Vec<_>>()
            })
        })
        .flat_map(|thread| thread.join().unwrap())
        .collect();
    let status = shutdown.status();
    assert_eq!(status.in_flight, 800);
    let counts: Vec<(String, usize)> = status
        .stragglers
        .iter()
        .map(|s| (s.name.clone(), s.count))
        .collect();
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(counts.iter().all(|(_, count)| *count == 400), "{counts:?}");
    // Dropped on other threads than took them.
    let mut halves = guards;
    let second = halves.split_off(400);
    let dropper = std::thread::spawn(move || drop(second));
    drop(halves);
    dropper.join().unwrap();
    assert!(shutdown.status().stragglers.is_empty());
    assert_eq!(other.status().stragglers[0].name, "not mine");
}

/// A coordinator on `clock` whose `run()` the returned pool polls (already once), and its
/// handle.
fn running(clock: &ManualClock) -> (deputy_core::Shutdown, LocalPool) {
    let coordinator = ShutdownCoordinator::builder().build(clock.clone()).unwrap();
    let shutdown = coordinator.handle();
    let mut pool = LocalPool::new();
    pool.spawner()
        .spawn_local(async move {
            coordinator.run().await;
        })
        .unwrap();
    pool.run_until_stalled();
    (shutdown, pool)
}

/// While the coordinator's `run()` is polled, named guards read its clock, kept to a
/// tenth of a second; ages stay right within that.
#[test]
fn ages_stay_right_while_the_coordinator_keeps_the_clock() {
    let clock = ManualClock::new();
    let (shutdown, mut pool) = running(&clock);
    clock.advance(Duration::from_secs(5));
    pool.run_until_stalled();
    let first = shutdown.guard_named("first");
    for _ in 0..30 {
        clock.advance(Duration::from_millis(100));
        pool.run_until_stalled();
    }
    let second = shutdown.guard_named("second");
    clock.advance(Duration::from_millis(1_050));
    let ages: Vec<(String, Duration)> = shutdown
        .status()
        .stragglers
        .into_iter()
        .map(|s| (s.name, s.age))
        .collect();
    assert_eq!(ages[0].0, "first");
    assert_eq!(ages[1].0, "second");
    let within_a_tick =
        |age: Duration, want: Duration| age >= want && age <= want + Duration::from_millis(100);
    assert!(
        within_a_tick(ages[0].1, Duration::from_millis(4_050)),
        "{ages:?}"
    );
    assert!(
        within_a_tick(ages[1].1, Duration::from_millis(1_050)),
        "{ages:?}"
    );
    drop((first, second));
}

/// A coordinator without named guards keeps no clock: its task sets no timer before a
/// trigger (`deputy run`'s does not wake ten times a second for nothing); the first named
/// guard starts the clock.
#[test]
fn the_clock_is_kept_only_once_a_named_guard_wants_it() {
    use deputy_core::runtime::Runtime;
    let clock = ManualClock::new();
    let (shutdown, mut pool) = running(&clock);
    let _unnamed = shutdown.guard();
    pool.run_until_stalled();
    assert_eq!(clock.next_deadline(), None, "a timer with no named guard");
    let _named = shutdown.guard_named("job");
    pool.run_until_stalled();
    assert_eq!(
        clock.next_deadline(),
        Some(clock.now() + Duration::from_millis(100))
    );
}

//! Long-lived connections on virtual time: when each is told to move (spread evenly over the
//! disconnect window after the drain delay), that it counts as in flight, that the drain
//! timeout tells those left to close, and what the report counts.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use deputy_core::runtime::Runtime;
use deputy_core::{
    BuildError, Builder, Connection, ManualClock, Notice, Shutdown, ShutdownCoordinator, State,
};
use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// Drain delay 1 s, drain timeout 10 s, disconnect window 4 s, running on `pool`.
fn coordinator(clock: &ManualClock, pool: &LocalPool) -> Shutdown {
    running(
        ShutdownCoordinator::builder()
            .drain_delay(Duration::from_secs(1))
            .disconnect_window(Duration::from_secs(4)),
        clock,
        pool,
    )
}

/// `builder` with a 30 s grace period and a 10 s drain timeout, running on `pool`.
fn running(builder: Builder, clock: &ManualClock, pool: &LocalPool) -> Shutdown {
    let coordinator = builder
        .grace_period(Duration::from_secs(30))
        .drain_timeout(Duration::from_secs(10))
        .build(clock.clone())
        .unwrap();
    let shutdown = coordinator.handle();
    pool.spawner()
        .spawn_local(async move {
            coordinator.run().await;
        })
        .unwrap();
    shutdown
}

/// `count` connections, each in a task that records when (after the trigger) it got its
/// notice and then closes, as a client that moves at once would.
fn connections_that_move(
    shutdown: &Shutdown,
    pool: &LocalPool,
    clock: &ManualClock,
    count: usize,
) -> Rc<RefCell<Vec<Duration>>> {
    let noticed = Rc::new(RefCell::new(Vec::new()));
    let start = clock.now();
    for _ in 0..count {
        let connection = shutdown.connection();
        let (noticed, clock) = (noticed.clone(), clock.clone());
        pool.spawner()
            .spawn_local(async move {
                assert_eq!(connection.notice().await, Notice::Move);
                noticed.borrow_mut().push(clock.now() - start);
            })
            .unwrap();
    }
    noticed
}

/// Steps virtual time by 10 ms until the coordinator is done.
fn run_to_done(clock: &ManualClock, pool: &mut LocalPool, shutdown: &Shutdown) {
    pool.run_until_stalled();
    for _ in 0..10_000 {
        if shutdown.state() == State::Done {
            return;
        }
        clock.advance(MS(10));
        pool.run_until_stalled();
    }
    panic!("never done: {:?}", shutdown.state());
}

#[test]
fn notices_are_spread_evenly_over_the_window_after_the_delay() {
    let (clock, mut pool) = (ManualClock::new(), LocalPool::new());
    let shutdown = coordinator(&clock, &pool);
    let noticed = connections_that_move(&shutdown, &pool, &clock, 40);
    pool.run_until_stalled();
    assert_eq!(shutdown.in_flight(), 40, "a connection counts as in flight");
    shutdown.trigger("deploy");
    run_to_done(&clock, &mut pool, &shutdown);

    let noticed = noticed.borrow();
    assert_eq!(noticed.len(), 40);
    // The i-th of 40 falls in the i-th 100 ms slice of the window, which starts at 1 s.
    for (i, at) in noticed.iter().enumerate() {
        let slice = MS(1000 + 100 * i as u64)..=MS(1000 + 100 * (i as u64 + 1));
        assert!(slice.contains(at), "notice {i} at {at:?}, not in {slice:?}");
    }
    let report = shutdown.report().unwrap();
    assert_eq!(report.exit_code, 0);
    let connections = report.drain.connections;
    assert_eq!(
        (connections.notified, connections.moved, connections.cut),
        (40, 40, 0)
    );
    // The drain ended when the last one moved, within the window.
    assert!(
        report.drain.duration <= MS(5010),
        "{:?}",
        report.drain.duration
    );
    assert!(
        report
            .summary()
            .contains("40 long-lived connections told to move, 40 moved, 0 cut")
    );
}

#[test]
fn nothing_is_noticed_during_the_drain_delay() {
    let (clock, mut pool) = (ManualClock::new(), LocalPool::new());
    let shutdown = coordinator(&clock, &pool);
    let connection = shutdown.connection();
    shutdown.trigger("deploy");
    pool.run_until_stalled();
    clock.advance(MS(990));
    pool.run_until_stalled();
    assert_eq!(
        connection.notice_now(),
        None,
        "told before endpoints propagated"
    );
    // One connection: its notice lands somewhere in the 4 s window.
    clock.advance(MS(4020));
    pool.run_until_stalled();
    assert_eq!(connection.notice_now(), Some(Notice::Move));
}

#[test]
fn a_connection_that_comes_during_the_window_is_told_at_once() {
    let (clock, mut pool) = (ManualClock::new(), LocalPool::new());
    let shutdown = coordinator(&clock, &pool);
    let _held = shutdown.connection();
    shutdown.trigger("deploy");
    pool.run_until_stalled();
    clock.advance(MS(1010));
    pool.run_until_stalled();
    let late = shutdown.connection();
    assert_eq!(late.notice_now(), Some(Notice::Move));
}

#[test]
fn those_left_at_the_drain_timeout_are_told_to_close_and_counted_cut() {
    let (clock, mut pool) = (ManualClock::new(), LocalPool::new());
    let shutdown = coordinator(&clock, &pool);
    let moves = connections_that_move(&shutdown, &pool, &clock, 3);
    // Two stubborn clients: they ignore the notice to move, and close only when told to.
    let closed = Rc::new(RefCell::new(Vec::new()));
    for _ in 0..2 {
        let connection: Connection = shutdown.connection();
        let (closed, clock) = (closed.clone(), clock.clone());
        let start = clock.now();
        pool.spawner()
            .spawn_local(async move {
                connection.closing().await;
                assert_eq!(connection.notice_now(), Some(Notice::Close));
                closed.borrow_mut().push(clock.now() - start);
            })
            .unwrap();
    }
    shutdown.trigger("deploy");
    run_to_done(&clock, &mut pool, &shutdown);
    assert_eq!(moves.borrow().len(), 3);
    // Told to close when the drain timeout ended: 1 s delay + 10 s.
    assert_eq!(*closed.borrow(), vec![MS(11_000), MS(11_000)]);
    let report = shutdown.report().unwrap();
    let connections = report.drain.connections;
    assert_eq!(
        (connections.notified, connections.moved, connections.cut),
        (5, 3, 2)
    );
    assert_eq!(report.drain.in_flight_at_end, 2);
}

#[test]
fn a_force_skips_the_window_and_closes_them_all() {
    let (clock, mut pool) = (ManualClock::new(), LocalPool::new());
    let shutdown = coordinator(&clock, &pool);
    let connection = shutdown.connection();
    shutdown.trigger("deploy");
    pool.run_until_stalled();
    shutdown.force("second Ctrl-C");
    pool.run_until_stalled();
    assert_eq!(connection.notice_now(), Some(Notice::Close));
    let connections = shutdown.connection();
    assert_eq!(
        connections.notice_now(),
        Some(Notice::Close),
        "one that comes after the cut"
    );
}

#[test]
fn dropping_a_connection_ends_its_in_flight_count() {
    let (clock, pool) = (ManualClock::new(), LocalPool::new());
    let shutdown = coordinator(&clock, &pool);
    let connections: Vec<Connection> = (0..100).map(|_| shutdown.connection()).collect();
    assert_eq!(shutdown.in_flight(), 100);
    drop(connections);
    assert_eq!(shutdown.in_flight(), 0);
}

#[test]
fn a_window_longer_than_the_drain_timeout_is_refused() {
    let error = ShutdownCoordinator::builder()
        .drain_timeout(Duration::from_secs(10))
        .disconnect_window(Duration::from_secs(11))
        .build(ManualClock::new())
        .unwrap_err();
    assert!(matches!(error, BuildError::DisconnectWindow { .. }));
    assert_eq!(
        error.to_string(),
        "the disconnect window (11s) must not be longer than the drain timeout (10s) it runs within"
    );
}

#[test]
fn the_default_window_is_half_the_drain_timeout() {
    let (clock, mut pool) = (ManualClock::new(), LocalPool::new());
    let builder = ShutdownCoordinator::builder().drain_delay(Duration::ZERO);
    let shutdown = running(builder, &clock, &pool);
    let noticed = connections_that_move(&shutdown, &pool, &clock, 10);
    shutdown.trigger("deploy");
    run_to_done(&clock, &mut pool, &shutdown);
    let last = *noticed.borrow().iter().max().unwrap();
    assert!(
        last > MS(4500) && last <= MS(5000),
        "last notice at {last:?}"
    );
}

#[test]
fn a_mover_tells_a_connection_to_move_before_any_shutdown_and_the_report_does_not_count_it() {
    let (clock, mut pool) = (ManualClock::new(), LocalPool::new());
    let shutdown = coordinator(&clock, &pool);
    // A stream whose transport reaches its age: told to move by the server, now, while
    // the service is running; its task wakes and sees Move.
    let aged = shutdown.connection();
    let mover = aged.mover();
    let woke = Rc::new(RefCell::new(None));
    {
        let woke = woke.clone();
        pool.spawner()
            .spawn_local(async move {
                *woke.borrow_mut() = Some(aged.notice().await);
                // It ignores the notice, and stays until told to close.
                aged.closing().await;
            })
            .unwrap();
    }
    pool.run_until_stalled();
    assert_eq!(*woke.borrow(), None);
    assert!(mover.move_now());
    assert!(!mover.move_now(), "once");
    pool.run_until_stalled();
    assert_eq!(*woke.borrow(), Some(Notice::Move));
    assert_eq!(shutdown.state(), State::Running);

    // One that moves at its age and is gone before the shutdown; one told by the shutdown.
    let gone = shutdown.connection();
    assert!(gone.mover().move_now());
    drop(gone);
    let moves = connections_that_move(&shutdown, &pool, &clock, 1);
    shutdown.trigger("deploy");
    run_to_done(&clock, &mut pool, &shutdown);
    assert_eq!(moves.borrow().len(), 1);
    assert!(mover.is_gone());
    // The shutdown told one to move (it did); the aged one still there at the drain's end
    // was cut; the one gone before the shutdown is not in it.
    let connections = shutdown.report().unwrap().drain.connections;
    assert_eq!(
        (connections.notified, connections.moved, connections.cut),
        (1, 1, 1)
    );
}

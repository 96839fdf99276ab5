//! The ways users write shutdown code on tokio, against the public API only: futures stored,
//! spawned, pinned in a `select!` loop or made anew each turn; a guard held across an
//! `.await`; a hook added by a library from a cloned handle; a trigger from a signal task
//! while `run()` is polled elsewhere; `done()` awaited from several tasks; handles and the
//! coordinator dropped early. `idioms_smol.rs` holds the same on smol.
//!
//! Every wait is bounded (2 s, far above what any of these takes); a future that never
//! resolves fails its test instead of hanging the suite.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deputy_core::{
    CancellationToken, HookOutcome, Notice, Outcome, Phase, Shutdown, ShutdownCoordinator,
};
use deputy_tokio::TokioRuntime;

const BOUND: Duration = Duration::from_secs(2);

/// `future`'s output, or a failure naming `what` after [`BOUND`].
async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(BOUND, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what}: still pending after {BOUND:?}"),
    }
}

/// A coordinator on tokio with no drain delay, so a trigger goes straight to the drain.
fn coordinator() -> ShutdownCoordinator {
    ShutdownCoordinator::builder()
        .grace_period(Duration::from_secs(20))
        .drain_delay(Duration::ZERO)
        .drain_timeout(Duration::from_secs(5))
        .build(TokioRuntime)
        .unwrap()
}

#[tokio::test]
async fn a_stored_draining_future_resolves_after_the_trigger() {
    let coordinator = coordinator();
    let shutdown = coordinator.handle();
    let run = tokio::spawn(coordinator.run());
    let draining = shutdown.draining_token().cancelled();
    let stopping = shutdown.stopping_token().cancelled();
    shutdown.trigger("test");
    within("stored draining_token().cancelled()", draining).await;
    within("stored stopping_token().cancelled()", stopping).await;
    within("run", run).await.unwrap();
}

#[tokio::test]
async fn a_spawned_draining_future_resolves_after_the_trigger() {
    let coordinator = coordinator();
    let shutdown = coordinator.handle();
    let run = tokio::spawn(coordinator.run());
    let draining = tokio::spawn(shutdown.draining_token().cancelled());
    let stopping = tokio::spawn(shutdown.stopping_token().cancelled());
    shutdown.trigger("test");
    within("spawned draining_token().cancelled()", draining)
        .await
        .unwrap();
    within("spawned stopping_token().cancelled()", stopping)
        .await
        .unwrap();
    within("run", run).await.unwrap();
}

#[tokio::test]
async fn the_canonical_worker_loop_stops() {
    let coordinator = coordinator();
    let shutdown = coordinator.handle();
    let run = tokio::spawn(coordinator.run());
    let (jobs, mut queue) = tokio::sync::mpsc::unbounded_channel::<u32>();
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel::<u32>();
    let worker = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let stop = shutdown.draining_token().cancelled();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => break "stopped",
                    Some(job) = queue.recv() => done_tx.send(job).unwrap(),
                }
            }
        }
    });
    for job in [1, 2, 3] {
        jobs.send(job).unwrap();
        assert_eq!(within("a job done", done.recv()).await, Some(job));
    }
    shutdown.trigger("test");
    assert_eq!(within("the worker loop", worker).await.unwrap(), "stopped");
    within("run", run).await.unwrap();
}

#[tokio::test]
async fn a_future_made_anew_each_turn_of_a_loop_sees_the_trigger() {
    let coordinator = coordinator();
    let shutdown = coordinator.handle();
    let run = tokio::spawn(coordinator.run());
    let (tick_tx, mut ticks) = tokio::sync::mpsc::unbounded_channel::<()>();
    let worker = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let mut turns = 0;
            loop {
                tokio::select! {
                    _ = shutdown.draining_token().cancelled() => break turns,
                    Some(()) = ticks.recv() => turns += 1,
                }
            }
        }
    });
    tick_tx.send(()).unwrap();
    tick_tx.send(()).unwrap();
    shutdown.trigger("test");
    let turns = within("the loop with a new future per turn", worker)
        .await
        .unwrap();
    assert!(turns <= 2);
    within("run", run).await.unwrap();
}

#[tokio::test]
async fn a_child_of_a_temporary_token_is_reached_by_its_root() {
    let root = CancellationToken::new();
    let stored = root.child().cancelled();
    let grandchild = root.child().child().cancelled();
    let spawned = tokio::spawn(root.child().cancelled());
    root.cancel();
    within("root.child().cancelled()", stored).await;
    within("root.child().child().cancelled()", grandchild).await;
    within("spawned root.child().cancelled()", spawned)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_guard_held_across_an_await_holds_the_drain() {
    let coordinator = coordinator();
    let shutdown = coordinator.handle();
    let run = tokio::spawn(coordinator.run());
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let (taken_tx, taken) = tokio::sync::oneshot::channel::<()>();
    let request = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let _guard = shutdown.guard();
            taken_tx.send(()).unwrap();
            released.await.unwrap(); // an .await with the guard held
        }
    });
    within("the guard taken", taken).await.unwrap();
    shutdown.trigger("test");
    let mut transitions = shutdown.transitions();
    use futures::StreamExt;
    let first = within("the first transition", transitions.next())
        .await
        .unwrap();
    assert_eq!(first.state, deputy_core::State::Draining);
    assert_eq!(shutdown.in_flight(), 1);
    assert!(shutdown.report().is_none(), "the drain did not wait");
    release.send(()).unwrap();
    within("the request", request).await.unwrap();
    let report = within("run", run).await.unwrap();
    assert_eq!(report.outcome, Outcome::Clean);
    assert_eq!(report.drain.in_flight_at_end, 0);
}

/// What a library does: it is handed a cloned handle and adds its own hook, without owning
/// `main` or knowing the application's phases.
fn start_metrics_library(shutdown: Shutdown, flushed: Arc<Mutex<bool>>) {
    shutdown
        .hook("flush", "metrics", move |_ctx| async move {
            *flushed.lock().unwrap() = true;
            Ok::<(), std::io::Error>(())
        })
        .unwrap();
}

#[tokio::test]
async fn a_library_adds_a_hook_from_a_cloned_handle() {
    let coordinator = coordinator();
    let flushed = Arc::new(Mutex::new(false));
    start_metrics_library(coordinator.handle().clone(), flushed.clone());
    let shutdown = coordinator.handle();
    let run = tokio::spawn(coordinator.run());
    shutdown.trigger("test");
    let report = within("run", run).await.unwrap();
    assert!(*flushed.lock().unwrap());
    let flush = report.phases.iter().find(|p| p.name == "flush").unwrap();
    assert_eq!(flush.hooks[0].name, "metrics");
    assert_eq!(flush.hooks[0].outcome, HookOutcome::Completed);
}

#[tokio::test]
async fn a_signal_task_triggers_while_run_is_polled_elsewhere() {
    let coordinator = coordinator();
    let shutdown = coordinator.handle();
    // A real signal, delivered to this process: SIGUSR2, used by no other test here.
    let signals = deputy_tokio::handle_signals(shutdown.clone(), [libc_sigusr2()]).unwrap();
    tokio::spawn(signals);
    let run = tokio::spawn(coordinator.run());
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGUSR2).unwrap();
    let report = within("run after the signal", run).await.unwrap();
    assert_eq!(report.outcome, Outcome::Clean);
    assert_eq!(report.reason.to_string(), "signal SIGUSR2");
}

fn libc_sigusr2() -> i32 {
    nix::sys::signal::Signal::SIGUSR2 as i32
}

#[tokio::test]
async fn done_is_awaited_from_several_tasks() {
    let coordinator = coordinator();
    let shutdown = coordinator.handle();
    let waiters: Vec<_> = (0..4).map(|_| tokio::spawn(shutdown.done())).collect();
    let borrowed = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { shutdown.done().await.exit_code })
    };
    let run = tokio::spawn(coordinator.run());
    shutdown.trigger("test");
    within("run", run).await.unwrap();
    for waiter in waiters {
        let report = within("done() in a task", waiter).await.unwrap();
        assert_eq!(report.outcome, Outcome::Clean);
    }
    assert_eq!(within("done() borrowed", borrowed).await.unwrap(), 0);
    // Made after the end: resolves at once.
    assert_eq!(within("done() late", shutdown.done()).await.exit_code, 0);
}

#[tokio::test]
async fn a_dropped_run_ends_the_shutdown_as_abandoned() {
    let coordinator = ShutdownCoordinator::builder()
        .grace_period(Duration::from_secs(60))
        .drain_delay(Duration::from_secs(30))
        .allow_over_budget()
        .build(TokioRuntime)
        .unwrap();
    let shutdown = coordinator.handle();
    let done = tokio::spawn(shutdown.done());
    let stopping = tokio::spawn(shutdown.stopping_token().cancelled());
    let connection = shutdown.connection();
    let run = tokio::spawn(coordinator.run());
    shutdown.trigger("test");
    run.abort(); // the runtime shutting down, or a select! that dropped it
    let report = within("done() after run() was dropped", done)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Abandoned);
    within("the stopping token after run() was dropped", stopping)
        .await
        .unwrap();
    within("closing() after run() was dropped", connection.closing()).await;
    assert_eq!(connection.notice_now(), Some(Notice::Close));
}

#[tokio::test]
async fn a_connection_registered_before_its_handle_is_dropped_still_gets_notices() {
    let coordinator = ShutdownCoordinator::builder()
        .grace_period(Duration::from_secs(20))
        .drain_delay(Duration::ZERO)
        .drain_timeout(Duration::from_secs(4))
        .disconnect_window(Duration::ZERO)
        .build(TokioRuntime)
        .unwrap();
    let trigger = coordinator.handle();
    let connection = {
        let shutdown = coordinator.handle();
        shutdown.connection() // the handle is dropped here
    };
    let task = tokio::spawn(async move {
        let notice = connection.notice().await;
        drop(connection);
        notice
    });
    let run = tokio::spawn(coordinator.run());
    trigger.trigger("test");
    assert_eq!(within("notice()", task).await.unwrap(), Notice::Move);
    let report = within("run", run).await.unwrap();
    assert_eq!(report.drain.connections.notified, 1);
}

#[tokio::test]
async fn stopping_and_serve_end_when_the_coordinator_is_dropped() {
    let coordinator = coordinator();
    let shutdown = coordinator.handle();
    let stop_serving = tokio::spawn(deputy_tokio::stopping(&shutdown));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let server = tokio::spawn(deputy_tokio::serve(listener, shutdown.clone(), app));
    drop(coordinator);
    within("stopping() after the coordinator was dropped", stop_serving)
        .await
        .unwrap();
    within("serve() after the coordinator was dropped", server)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_hook_that_only_panics_compiles_and_is_reported() {
    let coordinator = ShutdownCoordinator::builder()
        .grace_period(Duration::from_secs(10))
        .drain_delay(Duration::ZERO)
        .drain_timeout(Duration::from_secs(1))
        .phase(Phase::new("flush").timeout(Duration::from_secs(1)))
        .build(TokioRuntime)
        .unwrap();
    coordinator
        .hook("flush", "explodes", |_ctx| async { panic!("x") })
        .unwrap();
    let shutdown = coordinator.handle();
    let run = tokio::spawn(coordinator.run());
    shutdown.trigger("test");
    let report = within("run", run).await.unwrap();
    let flush = report.phases.iter().find(|p| p.name == "flush").unwrap();
    assert_eq!(flush.hooks[0].outcome, HookOutcome::Panicked("x".into()));
    assert_eq!(report.outcome, Outcome::Failed);
}

#[tokio::test]
async fn transitions_end_when_the_coordinator_is_dropped() {
    use futures::StreamExt;
    let coordinator = coordinator();
    let transitions = coordinator.handle().transitions();
    let watcher = tokio::spawn(transitions.collect::<Vec<_>>());
    drop(coordinator); // never run
    let seen = within("transitions() after the coordinator was dropped", watcher)
        .await
        .unwrap();
    let states: Vec<_> = seen.iter().map(|t| t.state).collect();
    assert_eq!(states.first(), Some(&deputy_core::State::Draining));
    assert_eq!(states.last(), Some(&deputy_core::State::Done));
}

#[tokio::test]
async fn until_notice_made_after_the_notice_ends_with_the_farewell() {
    use futures::StreamExt;
    let coordinator = ShutdownCoordinator::builder()
        .grace_period(Duration::from_secs(20))
        .drain_delay(Duration::ZERO)
        .drain_timeout(Duration::from_secs(5))
        .disconnect_window(Duration::ZERO)
        .build(TokioRuntime)
        .unwrap();
    let shutdown = coordinator.handle();
    let connection = shutdown.connection();
    let run = tokio::spawn(coordinator.run());
    shutdown.trigger("test");
    // The notice comes first; the stream is made after it.
    assert_eq!(within("notice()", connection.notice()).await, Notice::Move);
    let events = futures::stream::iter(["tick"]).chain(futures::stream::pending());
    let stream = connection.until_notice(events, |_| "farewell");
    let items: Vec<_> = within("until_notice after the notice", stream.collect()).await;
    assert_eq!(items.last(), Some(&"farewell"));
    within("run", run).await.unwrap();
}

#[tokio::test]
async fn drained_and_track_outlive_their_handles() {
    let coordinator = coordinator();
    let counter = coordinator.handle().in_flight_counter();
    // Tracked from here, though spawned later and polled later still.
    let job = counter.track(async { 42 });
    assert_eq!(counter.count(), 1);
    let drained = counter.drained();
    drop(counter);
    drop(coordinator); // the handle and the coordinator are gone
    let spawned = tokio::spawn(job);
    assert_eq!(within("the tracked job", spawned).await.unwrap(), 42);
    within("drained() after its handles are gone", drained).await;
}

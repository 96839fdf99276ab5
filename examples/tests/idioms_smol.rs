//! The ways users write shutdown code on smol (async-io's timer, any executor), against the
//! public API only; the same idioms as `idioms_tokio.rs`, written as smol users write them
//! (`smol::spawn`, `futures::select!`, `futures_lite::future::or`).
//!
//! Every wait is bounded (2 s, far above what any of these takes); a future that never
//! resolves fails its test instead of hanging the suite.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deputy_core::{
    CancellationToken, HookOutcome, Notice, Outcome, Phase, Shutdown, ShutdownCoordinator,
};
use deputy_smol::AsyncIoRuntime;
use futures::{FutureExt, StreamExt};

const BOUND: Duration = Duration::from_secs(2);

/// `future`'s output, or a failure naming `what` after [`BOUND`].
async fn within<F: Future>(what: &str, future: F) -> F::Output {
    let timeout = async {
        async_io::Timer::after(BOUND).await;
        panic!("{what}: still pending after {BOUND:?}")
    };
    smol::future::or(future, timeout).await
}

fn coordinator() -> ShutdownCoordinator {
    ShutdownCoordinator::builder()
        .grace_period(Duration::from_secs(20))
        .drain_delay(Duration::ZERO)
        .drain_timeout(Duration::from_secs(5))
        .build(AsyncIoRuntime)
        .unwrap()
}

#[test]
fn a_stored_or_spawned_draining_future_resolves_after_the_trigger() {
    smol::block_on(async {
        let coordinator = coordinator();
        let shutdown = coordinator.handle();
        let run = smol::spawn(coordinator.run());
        let draining = shutdown.draining_token().cancelled();
        let stopping = shutdown.stopping_token().cancelled();
        let spawned = smol::spawn(shutdown.draining_token().cancelled());
        shutdown.trigger("test");
        within("stored draining_token().cancelled()", draining).await;
        within("stored stopping_token().cancelled()", stopping).await;
        within("spawned draining_token().cancelled()", spawned).await;
        within("run", run).await;
    });
}

#[test]
fn the_worker_loop_with_select_stops() {
    smol::block_on(async {
        let coordinator = coordinator();
        let shutdown = coordinator.handle();
        let run = smol::spawn(coordinator.run());
        let (jobs, queue) = async_channel::unbounded::<u32>();
        let (done_tx, done) = async_channel::unbounded::<u32>();
        let worker = smol::spawn({
            let shutdown = shutdown.clone();
            async move {
                let mut stop = shutdown.draining_token().cancelled().fuse();
                loop {
                    futures::select! {
                        _ = stop => break "stopped",
                        job = queue.recv().fuse() => done_tx.send(job.unwrap()).await.unwrap(),
                    }
                }
            }
        });
        for job in [1, 2, 3] {
            jobs.send(job).await.unwrap();
            assert_eq!(within("a job done", done.recv()).await, Ok(job));
        }
        shutdown.trigger("test");
        assert_eq!(within("the worker loop", worker).await, "stopped");
        within("run", run).await;
    });
}

#[test]
fn a_future_made_anew_each_turn_sees_the_trigger() {
    smol::block_on(async {
        let coordinator = coordinator();
        let shutdown = coordinator.handle();
        let run = smol::spawn(coordinator.run());
        let (ticks_tx, ticks) = async_channel::unbounded::<()>();
        let worker = smol::spawn({
            let shutdown = shutdown.clone();
            async move {
                let mut turns = 0;
                loop {
                    let stop = shutdown.draining_token().cancelled().map(|()| None);
                    let tick = ticks.recv().map(Result::ok);
                    match smol::future::or(stop, tick).await {
                        Some(()) => turns += 1,
                        None => break turns,
                    }
                }
            }
        });
        ticks_tx.send(()).await.unwrap();
        shutdown.trigger("test");
        assert!(within("the loop with a new future per turn", worker).await <= 1);
        within("run", run).await;
    });
}

#[test]
fn a_child_of_a_temporary_token_is_reached_by_its_root() {
    smol::block_on(async {
        let root = CancellationToken::new();
        let stored = root.child().cancelled();
        let spawned = smol::spawn(root.child().child().cancelled());
        root.cancel();
        within("root.child().cancelled()", stored).await;
        within("spawned root.child().child().cancelled()", spawned).await;
    });
}

#[test]
fn a_guard_held_across_an_await_holds_the_drain() {
    smol::block_on(async {
        let coordinator = coordinator();
        let shutdown = coordinator.handle();
        let run = smol::spawn(coordinator.run());
        let (release, released) = async_channel::bounded::<()>(1);
        let (taken_tx, taken) = async_channel::bounded::<()>(1);
        let request = smol::spawn({
            let shutdown = shutdown.clone();
            async move {
                let _guard = shutdown.guard();
                taken_tx.send(()).await.unwrap();
                released.recv().await.unwrap(); // an .await with the guard held
            }
        });
        within("the guard taken", taken.recv()).await.unwrap();
        shutdown.trigger("test");
        let mut transitions = shutdown.transitions();
        let first = within("the first transition", transitions.next())
            .await
            .unwrap();
        assert_eq!(first.state, deputy_core::State::Draining);
        assert!(shutdown.report().is_none(), "the drain did not wait");
        release.send(()).await.unwrap();
        within("the request", request).await;
        let report = within("run", run).await;
        assert_eq!(report.outcome, Outcome::Clean);
        assert_eq!(report.drain.in_flight_at_end, 0);
    });
}

/// A library handed a cloned handle adds its own hook.
fn start_cache_library(shutdown: Shutdown, saved: Arc<Mutex<bool>>) {
    shutdown
        .hook("flush", "cache", move |_ctx| async move {
            *saved.lock().unwrap() = true;
        })
        .unwrap();
}

#[test]
fn a_library_adds_a_hook_and_several_tasks_await_done() {
    smol::block_on(async {
        let coordinator = coordinator();
        let saved = Arc::new(Mutex::new(false));
        start_cache_library(coordinator.handle().clone(), saved.clone());
        let shutdown = coordinator.handle();
        let waiters: Vec<_> = (0..4).map(|_| smol::spawn(shutdown.done())).collect();
        // The trigger from another task while run() is polled by this one.
        let trigger = smol::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.trigger("from another task") }
        });
        let report = within("run", coordinator.run()).await;
        assert!(within("the trigger", trigger).await);
        assert!(*saved.lock().unwrap());
        assert_eq!(report.outcome, Outcome::Clean);
        for waiter in waiters {
            assert_eq!(within("done() in a task", waiter).await.exit_code, 0);
        }
    });
}

#[test]
fn a_dropped_run_ends_the_shutdown_as_abandoned() {
    smol::block_on(async {
        let coordinator = ShutdownCoordinator::builder()
            .grace_period(Duration::from_secs(60))
            .drain_delay(Duration::from_secs(30))
            .allow_over_budget()
            .build(AsyncIoRuntime)
            .unwrap();
        let shutdown = coordinator.handle();
        let done = smol::spawn(shutdown.done());
        let connection = shutdown.connection();
        let run = smol::spawn(coordinator.run());
        shutdown.trigger("test");
        drop(run); // a smol task is cancelled when its handle is dropped
        let report = within("done() after run() was dropped", done).await;
        assert_eq!(report.outcome, Outcome::Abandoned);
        within("closing() after run() was dropped", connection.closing()).await;
        assert_eq!(connection.notice_now(), Some(Notice::Close));
    });
}

#[test]
fn a_hook_that_only_panics_compiles_and_is_reported() {
    smol::block_on(async {
        let coordinator = ShutdownCoordinator::builder()
            .grace_period(Duration::from_secs(10))
            .drain_delay(Duration::ZERO)
            .drain_timeout(Duration::from_secs(1))
            .phase(Phase::new("flush").timeout(Duration::from_secs(1)))
            .build(AsyncIoRuntime)
            .unwrap();
        coordinator
            .hook("flush", "explodes", |_ctx| async { panic!("x") })
            .unwrap();
        coordinator.handle().trigger("test");
        let report = within("run", coordinator.run()).await;
        let flush = report.phases.iter().find(|p| p.name == "flush").unwrap();
        assert_eq!(flush.hooks[0].outcome, HookOutcome::Panicked("x".into()));
    });
}

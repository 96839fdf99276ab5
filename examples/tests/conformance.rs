//! One conformance suite, written once, run on every runtime: tokio current-thread, tokio
//! multi-thread, smol, and a plain futures executor with async-io. Each scenario is an async
//! function of an [`Env`] (how to build a coordinator and how to sleep on that runtime); a
//! scenario that behaves differently on one runtime fails there.
//!
//! Durations are real but short; assertions are about order and outcomes, never about how
//! long something took.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deputy_core::state::{DrainOutcome, Ending, PhaseOutcome};
use deputy_core::{Builder, HookOutcome, Outcome, Phase, ShutdownCoordinator, State};

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a scenario needs from the runtime under test.
#[derive(Clone, Copy)]
struct Env {
    build: fn(Builder) -> ShutdownCoordinator,
    sleep: fn(Duration) -> BoxFuture,
}

const MS: Duration = Duration::from_millis(1);

fn base() -> Builder {
    ShutdownCoordinator::builder()
        .grace_period(Duration::from_secs(20))
        .drain_delay(Duration::ZERO)
        .drain_timeout(Duration::from_secs(5))
}

async fn phases_run_in_order_and_hooks_concurrently(env: Env) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let coordinator = (env.build)(base());
    for (phase, hook, ms) in [
        ("close", "c", 10),
        ("flush", "f1", 60),
        ("flush", "f2", 10),
        ("stop-accepting", "s", 10),
    ] {
        let log = log.clone();
        coordinator
            .hook(phase, hook, move |_| async move {
                log.lock().unwrap().push(format!("{hook}+"));
                (env.sleep)(ms * MS).await;
                log.lock().unwrap().push(format!("{hook}-"));
            })
            .unwrap();
    }
    coordinator.handle().trigger("conformance");
    let report = coordinator.run().await;
    assert_eq!(
        *log.lock().unwrap(),
        ["s+", "s-", "f1+", "f2+", "f2-", "f1-", "c+", "c-"]
    );
    assert_eq!(report.outcome, Outcome::Clean);
}

async fn a_phase_timeout_drops_the_hook_and_the_next_phase_runs(env: Env) {
    let coordinator = (env.build)(base().phase(Phase::new("flush").timeout(50 * MS)));
    coordinator
        .hook("flush", "slow", move |_| {
            (env.sleep)(Duration::from_secs(30))
        })
        .unwrap();
    let ran = Arc::new(Mutex::new(false));
    let flag = ran.clone();
    coordinator
        .hook("close", "after", move |_| async move {
            *flag.lock().unwrap() = true
        })
        .unwrap();
    coordinator.handle().trigger("conformance");
    let report = coordinator.run().await;
    assert_eq!(report.phases[1].outcome, PhaseOutcome::TimedOut);
    assert_eq!(report.phases[1].hooks[0].outcome, HookOutcome::TimedOut);
    assert!(*ran.lock().unwrap());
    assert_eq!((report.outcome, report.exit_code), (Outcome::TimedOut, 2));
}

async fn failures_and_panics_are_recorded_and_others_run(env: Env) {
    let coordinator = (env.build)(base());
    coordinator
        .hook("flush", "fails", |_| async { Err::<(), _>("nope") })
        .unwrap();
    coordinator
        .hook("flush", "panics", |_| async { panic!("boom") as () })
        .unwrap();
    coordinator
        .hook("flush", "fine", move |_| (env.sleep)(5 * MS))
        .unwrap();
    coordinator.handle().trigger("conformance");
    let report = coordinator.run().await;
    let outcomes: Vec<_> = report.phases[1]
        .hooks
        .iter()
        .map(|h| h.outcome.clone())
        .collect();
    assert_eq!(
        outcomes,
        [
            HookOutcome::Failed("nope".into()),
            HookOutcome::Panicked("boom".into()),
            HookOutcome::Completed
        ]
    );
    assert_eq!((report.outcome, report.exit_code), (Outcome::Failed, 1));
}

async fn force_skips_the_drain(env: Env) {
    let coordinator = (env.build)(
        base()
            .grace_period(Duration::from_secs(30))
            .drain_delay(Duration::from_secs(10)),
    );
    let shutdown = coordinator.handle();
    let run = coordinator.run();
    let force = async {
        shutdown.trigger("first");
        (env.sleep)(20 * MS).await;
        assert_eq!(shutdown.state(), State::Draining);
        shutdown.force("second");
    };
    let (report, ()) = futures::future::join(run, force).await;
    assert_eq!(report.drain.outcome, DrainOutcome::Forced);
    assert!(
        report
            .phases
            .iter()
            .all(|p| p.outcome == PhaseOutcome::Completed)
    );
    assert_eq!(report.outcome, Outcome::Clean); // nothing was in flight
}

async fn the_budget_ends_a_shutdown_whose_hooks_hang(env: Env) {
    let builder = base()
        .grace_period(200 * MS)
        .drain_timeout(50 * MS)
        .allow_over_budget();
    let coordinator = (env.build)(builder);
    for phase in ["stop-accepting", "flush", "close"] {
        coordinator
            .hook(phase, "hangs", |_| futures::future::pending::<()>())
            .unwrap();
    }
    let _stuck = coordinator.handle().guard();
    coordinator.handle().trigger("conformance");
    let report = coordinator.run().await;
    assert_eq!(report.drain.outcome, DrainOutcome::TimedOut);
    assert_eq!(report.ending, Ending::BudgetExhausted);
    assert_eq!(report.outcome, Outcome::Abandoned);
    assert!(
        report
            .phases
            .iter()
            .all(|p| p.outcome == PhaseOutcome::Abandoned)
    );
}

async fn guards_hold_the_drain_open(env: Env) {
    let coordinator = (env.build)(base());
    let shutdown = coordinator.handle();
    let request = shutdown.guard();
    let run = coordinator.run();
    let serve = async {
        shutdown.trigger("conformance");
        (env.sleep)(30 * MS).await;
        // Still draining: the request is in flight; a late one is still counted.
        assert_eq!(shutdown.state(), State::Draining);
        let late = shutdown.guard();
        drop(request);
        (env.sleep)(30 * MS).await;
        assert_eq!(shutdown.state(), State::Draining);
        drop(late);
    };
    let (report, ()) = futures::future::join(run, serve).await;
    assert_eq!(report.drain.outcome, DrainOutcome::Drained);
    assert_eq!(report.drain.in_flight_at_end, 0);
}

fn tokio_sleep(d: Duration) -> BoxFuture {
    Box::pin(tokio::time::sleep(d))
}

fn async_io_sleep(d: Duration) -> BoxFuture {
    Box::pin(async move {
        async_io::Timer::after(d).await;
    })
}

const TOKIO: Env = Env {
    build: |b| b.build(deputy_tokio::TokioRuntime).unwrap(),
    sleep: tokio_sleep,
};

const ASYNC_IO: Env = Env {
    build: |b| b.build(deputy_smol::AsyncIoRuntime).unwrap(),
    sleep: async_io_sleep,
};

fn on_tokio_current_thread(scenario: BoxFuture) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario);
}

fn on_tokio_multi_thread(scenario: BoxFuture) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { tokio::spawn(scenario).await.unwrap() });
}

fn on_smol(scenario: BoxFuture) {
    let executor = smol::Executor::new();
    smol::block_on(executor.run(executor.spawn(scenario)));
}

fn on_futures_executor(scenario: BoxFuture) {
    futures::executor::block_on(scenario);
}

macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod tokio_current_thread {
            $(#[test] fn $scenario() { super::on_tokio_current_thread(Box::pin(super::$scenario(super::TOKIO))) })*
        }
        mod tokio_multi_thread {
            $(#[test] fn $scenario() { super::on_tokio_multi_thread(Box::pin(super::$scenario(super::TOKIO))) })*
        }
        mod smol_executor {
            $(#[test] fn $scenario() { super::on_smol(Box::pin(super::$scenario(super::ASYNC_IO))) })*
        }
        mod futures_executor_async_io {
            $(#[test] fn $scenario() { super::on_futures_executor(Box::pin(super::$scenario(super::ASYNC_IO))) })*
        }
    };
}

conformance!(
    phases_run_in_order_and_hooks_concurrently,
    a_phase_timeout_drops_the_hook_and_the_next_phase_runs,
    failures_and_panics_are_recorded_and_others_run,
    force_skips_the_drain,
    the_budget_ends_a_shutdown_whose_hooks_hang,
    guards_hold_the_drain_open,
);

//! The coordinator on virtual time: every test drives a `ManualClock`, so timeouts are exact
//! and nothing sleeps.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use deputy_core::runtime::Runtime;
use deputy_core::state::{DrainOutcome, Ending, PhaseOutcome};
use deputy_core::{
    BuildError, Builder, Escalation, ExitCodes, HookError, HookOutcome, ManualClock, Outcome,
    Phase, Reason, Shutdown, ShutdownCoordinator, ShutdownReport, State, TriggerKind,
};
use futures::FutureExt;
use futures::executor::LocalPool;
use futures::future::RemoteHandle;
use futures::task::LocalSpawnExt;

const S: Duration = Duration::from_secs(1);

struct Harness {
    clock: ManualClock,
    pool: LocalPool,
    shutdown: Shutdown,
    run: Option<RemoteHandle<ShutdownReport>>,
}

impl Harness {
    /// A coordinator from `builder` with its run future spawned, plus `setup` to add hooks.
    fn new(builder: Builder, setup: impl FnOnce(&ShutdownCoordinator, &ManualClock)) -> Self {
        let clock = ManualClock::new();
        let coordinator = builder.build(clock.clone()).unwrap();
        setup(&coordinator, &clock);
        let shutdown = coordinator.handle();
        let pool = LocalPool::new();
        let run = pool
            .spawner()
            .spawn_local_with_handle(coordinator.run())
            .unwrap();
        let mut harness = Self {
            clock,
            pool,
            shutdown,
            run: Some(run),
        };
        harness.settle();
        harness
    }

    fn settle(&mut self) {
        self.pool.run_until_stalled();
    }

    fn advance(&mut self, by: Duration) {
        self.clock.advance(by);
        self.settle();
    }

    /// Moves virtual time forward deadline by deadline until the report is ready.
    fn finish(&mut self) -> ShutdownReport {
        let mut run = self.run.take().expect("finish called once");
        for _ in 0..1000 {
            self.settle();
            if let Some(report) = (&mut run).now_or_never() {
                return report;
            }
            assert!(
                self.clock.advance_to_next(),
                "stalled with nothing to wait for"
            );
        }
        panic!("no report after 1000 deadlines");
    }

    fn elapsed_since(&self, start: std::time::Instant) -> Duration {
        self.clock.now() - start
    }
}

fn quick() -> Builder {
    ShutdownCoordinator::builder()
        .drain_delay(Duration::ZERO)
        .drain_timeout(5 * S)
}

type Log = Arc<Mutex<Vec<String>>>;

fn sleeper(clock: &ManualClock, by: Duration) -> impl Future<Output = ()> + Send + 'static {
    let clock = clock.clone();
    async move { clock.sleep_until(clock.now() + by).await }
}

#[test]
fn phases_run_in_order_and_the_hooks_of_a_phase_concurrently() {
    let log: Log = Arc::default();
    let builder = quick()
        .without_default_phases()
        .phase(Phase::new("a").timeout(5 * S))
        .phase(Phase::new("b").timeout(5 * S));
    let mut h = Harness::new(builder, |c, clock| {
        for (phase, hook) in [("b", "b1"), ("a", "a1"), ("a", "a2")] {
            let (log, sleep) = (log.clone(), sleeper(clock, S));
            c.hook(phase, hook, move |_| async move {
                log.lock().unwrap().push(format!("{hook} start"));
                sleep.await;
                log.lock().unwrap().push(format!("{hook} end"));
            })
            .unwrap();
        }
    });
    let start = h.clock.now();
    h.shutdown.trigger("test");
    let report = h.finish();
    assert_eq!(
        *log.lock().unwrap(),
        [
            "a1 start", "a2 start", "a1 end", "a2 end", "b1 start", "b1 end"
        ]
    );
    // Concurrent hooks: phase a took one second, not two.
    assert_eq!(report.phases[0].duration, S);
    assert_eq!(report.phases[1].duration, S);
    assert_eq!(h.elapsed_since(start), 2 * S);
    assert_eq!(report.outcome, Outcome::Clean);
    assert_eq!(report.exit_code, 0);
}

#[test]
fn a_hook_past_its_phase_timeout_is_dropped_and_the_next_phase_runs() {
    struct DropFlag(Arc<Mutex<bool>>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = true;
        }
    }
    let dropped = Arc::new(Mutex::new(false));
    let token_seen = Arc::new(Mutex::new(None));
    let builder = quick()
        .without_default_phases()
        .phase(Phase::new("slow").timeout(2 * S))
        .phase(Phase::new("after").timeout(2 * S));
    let after_ran = Arc::new(Mutex::new(false));
    let mut h = Harness::new(builder, |c, _| {
        let (dropped, token_seen) = (dropped.clone(), token_seen.clone());
        c.hook("slow", "hangs", move |ctx| async move {
            let _flag = DropFlag(dropped);
            *token_seen.lock().unwrap() = Some(ctx.token().clone());
            futures::future::pending::<()>().await;
        })
        .unwrap();
        let after_ran = after_ran.clone();
        c.hook("after", "quick", move |_| async move {
            *after_ran.lock().unwrap() = true;
        })
        .unwrap();
    });
    h.shutdown.trigger("test");
    h.settle();
    h.advance(2 * S - Duration::from_millis(1));
    assert!(!*dropped.lock().unwrap());
    let token = token_seen.lock().unwrap().clone().unwrap();
    assert!(!token.is_cancelled());
    h.advance(Duration::from_millis(1));
    assert!(
        *dropped.lock().unwrap(),
        "the hook was not dropped at its timeout"
    );
    assert!(token.is_cancelled(), "the hook's token was not cancelled");
    assert!(*after_ran.lock().unwrap());
    let report = h.finish();
    assert_eq!(report.phases[0].outcome, PhaseOutcome::TimedOut);
    assert_eq!(report.phases[0].hooks[0].outcome, HookOutcome::TimedOut);
    assert_eq!(report.phases[0].hooks[0].duration, 2 * S);
    assert_eq!(report.phases[1].outcome, PhaseOutcome::Completed);
    assert_eq!(report.outcome, Outcome::TimedOut);
    assert_eq!(report.exit_code, 2);
}

#[test]
fn failing_and_panicking_hooks_are_recorded_and_the_others_still_run() {
    let ran = Arc::new(Mutex::new(0));
    let mut h = Harness::new(quick(), |c, _| {
        c.hook("flush", "errs", |_| async { Err::<(), _>("disk full") })
            .unwrap();
        c.hook("flush", "panics", |_| async { panic!("bad state") as () })
            .unwrap();
        c.hook(
            "flush",
            "panics-before-await",
            |_| -> futures::future::Ready<()> { panic!("bad setup") },
        )
        .unwrap();
        for phase in ["flush", "close"] {
            let ran = ran.clone();
            c.hook(phase, "fine", move |_| async move {
                *ran.lock().unwrap() += 1;
            })
            .unwrap();
        }
    });
    h.shutdown.trigger("test");
    let report = h.finish();
    assert_eq!(*ran.lock().unwrap(), 2);
    let flush = &report.phases[1];
    assert_eq!(flush.outcome, PhaseOutcome::Failed);
    let outcomes: Vec<_> = flush
        .hooks
        .iter()
        .map(|h| (h.name.as_str(), h.outcome.clone()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("errs", HookOutcome::Failed("disk full".into())),
            ("panics", HookOutcome::Panicked("bad state".into())),
            (
                "panics-before-await",
                HookOutcome::Panicked("bad setup".into())
            ),
            ("fine", HookOutcome::Completed),
        ]
    );
    assert_eq!(report.phases[2].outcome, PhaseOutcome::Completed);
    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(report.exit_code, 1);
    assert_eq!(report.problems().count(), 3);
}

#[test]
fn the_drain_waits_for_the_delay_then_for_guards_including_late_ones() {
    let builder = ShutdownCoordinator::builder()
        .drain_delay(5 * S)
        .drain_timeout(10 * S);
    let mut h = Harness::new(builder, |_, _| {});
    let early = h.shutdown.guard();
    let start = h.clock.now();
    h.shutdown.trigger(Reason::Signal(15));
    assert_eq!(h.shutdown.state(), State::Draining);
    drop(early);
    h.advance(4 * S);
    assert_eq!(
        h.shutdown.state(),
        State::Draining,
        "the delay was cut short"
    );
    let late = h.shutdown.guard(); // a request that arrived while draining
    h.advance(S);
    assert_eq!(
        h.shutdown.state(),
        State::Draining,
        "a late request was ignored"
    );
    h.advance(3 * S);
    assert_eq!(h.shutdown.state(), State::Draining);
    drop(late);
    h.settle();
    assert!(h.shutdown.state() >= State::Stopping);
    let report = h.finish();
    assert_eq!(report.drain.outcome, DrainOutcome::Drained);
    assert_eq!(report.drain.duration, 8 * S);
    assert_eq!(report.drain.in_flight_at_end, 0);
    assert_eq!(h.elapsed_since(start), 8 * S);
    assert_eq!(report.exit_code, 0);
}

#[test]
fn the_drain_times_out_with_work_in_flight() {
    let builder = ShutdownCoordinator::builder()
        .drain_delay(2 * S)
        .drain_timeout(3 * S);
    let mut h = Harness::new(builder, |_, _| {});
    let _stuck = h.shutdown.guard();
    h.shutdown.trigger("test");
    h.advance(5 * S - Duration::from_millis(1));
    assert_eq!(h.shutdown.state(), State::Draining);
    h.advance(Duration::from_millis(1));
    let report = h.finish();
    assert_eq!(report.drain.outcome, DrainOutcome::TimedOut);
    assert_eq!(report.drain.duration, 5 * S);
    assert_eq!(report.drain.in_flight_at_end, 1);
    assert_eq!(report.outcome, Outcome::TimedOut);
}

#[test]
fn a_second_signal_forces_and_a_third_abandons() {
    let started = Arc::new(Mutex::new(false));
    let mut h = Harness::new(ShutdownCoordinator::builder(), |c, _| {
        let started = started.clone();
        c.hook("stop-accepting", "hangs", move |_| async move {
            *started.lock().unwrap() = true;
            futures::future::pending::<()>().await
        })
        .unwrap();
        c.hook("close", "never-runs", |_| async {}).unwrap();
    });
    let _request = h.shutdown.guard();
    assert_eq!(
        h.shutdown.escalate(Reason::Signal(2)),
        Escalation::Triggered
    );
    h.advance(S);
    assert_eq!(h.shutdown.state(), State::Draining);
    assert_eq!(h.shutdown.escalate(Reason::Signal(2)), Escalation::Forced);
    h.settle();
    assert_eq!(h.shutdown.state(), State::Stopping);
    assert!(*started.lock().unwrap(), "phases did not start after force");
    assert_eq!(
        h.shutdown.escalate(Reason::Signal(2)),
        Escalation::Abandoned
    );
    let report = h.finish();
    assert_eq!(report.drain.outcome, DrainOutcome::Forced);
    assert_eq!(report.ending, Ending::Abandoned);
    assert_eq!(report.outcome, Outcome::Abandoned);
    assert_eq!(report.exit_code, 3);
    // Every phase and hook is still in the report.
    let phases: Vec<_> = report
        .phases
        .iter()
        .map(|p| (p.name.as_str(), p.outcome))
        .collect();
    assert_eq!(
        phases,
        [
            ("stop-accepting", PhaseOutcome::Abandoned),
            ("flush", PhaseOutcome::Abandoned),
            ("close", PhaseOutcome::Abandoned),
        ]
    );
    assert_eq!(report.phases[0].hooks[0].outcome, HookOutcome::Abandoned);
    assert_eq!(report.phases[2].hooks[0].name, "never-runs");
    assert_eq!(report.phases[2].hooks[0].outcome, HookOutcome::Abandoned);
    let kinds: Vec<_> = report
        .triggers
        .iter()
        .map(|t| (t.kind, t.accepted))
        .collect();
    assert_eq!(
        kinds,
        [
            (TriggerKind::Trigger, true),
            (TriggerKind::Force, true),
            (TriggerKind::Abandon, true),
        ]
    );
}

#[test]
fn a_signal_after_a_trigger_from_elsewhere_does_not_force() {
    let mut h = Harness::new(ShutdownCoordinator::builder(), |_, _| {});
    let _request = h.shutdown.guard();
    assert!(h.shutdown.trigger(Reason::Ipc)); // the preStop hook
    assert_eq!(
        h.shutdown.escalate(Reason::Signal(15)), // then the kubelet's SIGTERM
        Escalation::Ignored { count: 1 }
    );
    h.settle();
    assert_eq!(h.shutdown.state(), State::Draining);
}

#[test]
fn the_grace_period_ends_in_done_even_if_every_hook_hangs() {
    let builder = ShutdownCoordinator::builder()
        .grace_period(10 * S)
        .drain_delay(2 * S)
        .drain_timeout(4 * S)
        .phase(Phase::new("stop-accepting").timeout(5 * S))
        .allow_over_budget();
    let mut h = Harness::new(builder, |c, _| {
        for phase in ["stop-accepting", "flush", "close"] {
            c.hook(phase, "hangs", |_| futures::future::pending::<()>())
                .unwrap();
        }
    });
    let _stuck = h.shutdown.guard();
    let start = h.clock.now();
    h.shutdown.trigger("test");
    let report = h.finish();
    // drain 2 + 4 = 6 s, then stop-accepting would need 5 s but only 4 s are left.
    assert_eq!(h.elapsed_since(start), 10 * S);
    assert_eq!(report.duration, 10 * S);
    assert_eq!(report.ending, Ending::BudgetExhausted);
    assert_eq!(report.phases[0].outcome, PhaseOutcome::Abandoned);
    assert_eq!(report.phases[0].duration, 4 * S);
    assert_eq!(report.phases[1].outcome, PhaseOutcome::Abandoned);
    assert_eq!(report.outcome, Outcome::Abandoned);
    assert_eq!(h.shutdown.state(), State::Done);
}

#[test]
fn budget_ends_a_drain_that_would_outlast_it() {
    let builder = ShutdownCoordinator::builder()
        .grace_period(3 * S)
        .drain_delay(S)
        .drain_timeout(10 * S)
        .allow_over_budget();
    let mut h = Harness::new(builder, |_, _| {});
    let _stuck = h.shutdown.guard();
    h.shutdown.trigger("test");
    let report = h.finish();
    assert_eq!(report.duration, 3 * S);
    assert_eq!(report.drain.outcome, DrainOutcome::Abandoned);
    assert_eq!(report.ending, Ending::BudgetExhausted);
}

#[test]
fn tokens_readiness_and_liveness_follow_the_states() {
    let mut h = Harness::new(quick().drain_delay(S), |_, _| {});
    let draining = h.shutdown.draining_token();
    let stopping = h.shutdown.stopping_token();
    assert!(!h.shutdown.is_ready(), "ready before ready() was called");
    h.shutdown.ready();
    assert!(h.shutdown.is_ready() && h.shutdown.is_live());
    assert!(!draining.is_cancelled());
    h.shutdown.trigger("test");
    assert!(draining.is_cancelled() && !stopping.is_cancelled());
    assert!(!h.shutdown.is_ready() && h.shutdown.is_live());
    h.shutdown.ready(); // a late ready() does not turn readiness back on
    assert!(!h.shutdown.is_ready());
    h.advance(S);
    assert!(stopping.is_cancelled());
    h.finish();
    assert!(!h.shutdown.is_live());
    assert!(h.shutdown.report().is_some());
}

#[test]
fn transitions_list_every_state_and_phase_in_order_even_when_read_late() {
    use futures::StreamExt;
    let mut h = Harness::new(quick().drain_delay(S), |_, _| {});
    let early = h.shutdown.transitions();
    h.shutdown.trigger("test");
    h.finish();
    let late = h.shutdown.transitions();
    for stream in [early, late] {
        let seen: Vec<_> = futures::executor::block_on(stream.collect::<Vec<_>>())
            .into_iter()
            .map(|t| (t.state, t.phase, t.at))
            .collect();
        assert_eq!(
            seen,
            [
                (State::Draining, None, Duration::ZERO),
                (State::Stopping, Some("stop-accepting".into()), S),
                (State::Stopping, Some("flush".into()), S),
                (State::Stopping, Some("close".into()), S),
                (State::Done, None, S),
            ]
        );
    }
}

#[test]
fn hooks_can_be_added_from_a_cloned_handle_on_another_thread() {
    let ran = Arc::new(Mutex::new(false));
    let mut h = Harness::new(quick(), |_, _| {});
    let handle = h.shutdown.clone();
    let flag = ran.clone();
    std::thread::spawn(move || {
        handle
            .hook("close", "library-pool", move |_| async move {
                *flag.lock().unwrap() = true;
            })
            .unwrap();
    })
    .join()
    .unwrap();
    h.shutdown.trigger("test");
    let report = h.finish();
    assert!(*ran.lock().unwrap());
    assert_eq!(report.phases[2].hooks[0].name, "library-pool");
}

#[test]
fn hook_errors_are_values() {
    let mut h = Harness::new(quick().drain_delay(S), |_, _| {});
    let err = h.shutdown.hook("nope", "x", |_| async {}).unwrap_err();
    assert_eq!(
        err,
        HookError::UnknownPhase {
            phase: "nope".into(),
            known: vec!["stop-accepting".into(), "flush".into(), "close".into()],
        }
    );
    assert_eq!(
        err.to_string(),
        "no phase is named `nope` (phases: stop-accepting, flush, close)"
    );
    h.shutdown.trigger("test");
    h.advance(S);
    // The phases have all run (they have no hooks), so a hook now would never run.
    h.finish();
    assert!(matches!(
        h.shutdown.hook("close", "late", |_| async {}),
        Err(HookError::PhaseStarted { .. })
    ));
}

#[test]
fn a_hook_added_while_an_earlier_phase_runs_still_runs() {
    let ran = Arc::new(Mutex::new(false));
    let mut h = Harness::new(quick(), |c, clock| {
        let sleep = sleeper(clock, S);
        c.hook("stop-accepting", "slow", move |_| sleep).unwrap();
    });
    h.shutdown.trigger("test");
    h.settle();
    assert_eq!(h.shutdown.status().phase.as_deref(), Some("stop-accepting"));
    let flag = ran.clone();
    h.shutdown
        .hook("close", "added-late", move |_| async move {
            *flag.lock().unwrap() = true;
        })
        .unwrap();
    assert!(
        h.shutdown
            .hook("stop-accepting", "too-late", |_| async {})
            .is_err()
    );
    h.finish();
    assert!(*ran.lock().unwrap());
}

#[test]
fn hook_context_carries_deadline_and_reason() {
    let seen = Arc::new(Mutex::new(None));
    let mut h = Harness::new(quick().phase(Phase::new("flush").timeout(4 * S)), |c, _| {
        let seen = seen.clone();
        c.hook("flush", "ctx", move |ctx| async move {
            *seen.lock().unwrap() =
                Some((ctx.deadline(), ctx.reason().clone(), ctx.phase().to_owned()));
        })
        .unwrap();
    });
    let start = h.clock.now();
    h.shutdown.trigger(Reason::Ipc);
    h.finish();
    let (deadline, reason, phase) = seen.lock().unwrap().clone().unwrap();
    assert_eq!(deadline - start, 4 * S);
    assert_eq!(reason, Reason::Ipc);
    assert_eq!(phase, "flush");
}

#[test]
fn exit_codes_are_configurable() {
    let codes = ExitCodes {
        failed: 70,
        ..ExitCodes::default()
    };
    let mut h = Harness::new(quick().exit_codes(codes), |c, _| {
        c.hook("close", "fails", |_| async { Err::<(), _>("x") })
            .unwrap();
    });
    h.shutdown.trigger("test");
    assert_eq!(h.finish().exit_code, 70);
}

#[test]
fn a_trigger_before_run_is_polled_is_not_lost() {
    let clock = ManualClock::new();
    let coordinator = quick().build(clock).unwrap();
    let shutdown = coordinator.handle();
    assert!(shutdown.trigger("early"));
    let report = futures::executor::block_on(coordinator.run());
    assert_eq!(report.reason, Reason::from("early"));
    assert_eq!(report.exit_code, 0);
    assert_eq!(
        futures::executor::block_on(shutdown.done()).exit_code,
        report.exit_code
    );
}

#[test]
fn build_rejects_bad_plans_with_values() {
    let clock = ManualClock::new;
    assert_eq!(
        ShutdownCoordinator::builder()
            .grace_period(Duration::ZERO)
            .build(clock())
            .unwrap_err(),
        BuildError::ZeroGracePeriod
    );
    assert_eq!(
        ShutdownCoordinator::builder()
            .phase(Phase::new(""))
            .build(clock())
            .unwrap_err(),
        BuildError::EmptyPhaseName
    );
    assert_eq!(
        ShutdownCoordinator::builder()
            .phase_after("flush", Phase::new("close"))
            .build(clock())
            .unwrap_err(),
        BuildError::DuplicatePhase("close".into())
    );
    assert_eq!(
        ShutdownCoordinator::builder()
            .phase_after("nope", Phase::new("x"))
            .build(clock())
            .unwrap_err(),
        BuildError::UnknownPhase("nope".into())
    );
    let over = ShutdownCoordinator::builder()
        .grace_period(20 * S)
        .build(clock())
        .unwrap_err();
    assert_eq!(
        over,
        BuildError::OverBudget {
            planned: 29 * S,
            grace_period: 20 * S
        }
    );
    assert!(over.to_string().contains("more than the grace period"));
    // The defaults fit the default grace period (Kubernetes' 30 s).
    assert!(ShutdownCoordinator::builder().build(clock()).is_ok());
}

#[test]
fn no_phases_at_all_is_a_valid_plan() {
    let mut h = Harness::new(quick().without_default_phases(), |_, _| {});
    h.shutdown.trigger("test");
    let report = h.finish();
    assert!(report.phases.is_empty());
    assert_eq!(report.outcome, Outcome::Clean);
    assert_eq!(h.shutdown.state(), State::Done);
}

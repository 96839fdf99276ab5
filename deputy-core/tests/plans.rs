//! Plans and hooks as users write them: any duration is either accepted and works, or
//! refused with an error naming the setting; hooks with the same name are refused; the
//! report reads one way for people.

use std::time::Duration;

use deputy_core::{
    BuildError, Builder, HookError, MAX_DURATION, ManualClock, Outcome, Phase, ShutdownCoordinator,
};
use futures::executor::block_on;

fn refused(builder: Builder) -> BuildError {
    builder
        .allow_over_budget()
        .build(ManualClock::new())
        .expect_err("the plan was accepted")
}

#[test]
fn every_setting_refuses_durations_no_clock_can_add() {
    let base = ShutdownCoordinator::builder;
    let cases: [(Builder, &str); 7] = [
        (base().grace_period(Duration::MAX), "grace period"),
        (base().drain_delay(Duration::MAX), "drain delay"),
        (base().drain_timeout(Duration::MAX), "drain timeout"),
        (
            base()
                .drain_delay_max(Duration::MAX)
                .quiet_period(Duration::from_secs(1)),
            "drain delay's maximum",
        ),
        (
            base()
                .drain_delay_max(Duration::from_secs(10))
                .quiet_period(Duration::MAX),
            "quiet period",
        ),
        (
            base()
                .drain_timeout(MAX_DURATION)
                .disconnect_window(Duration::MAX),
            "disconnect window",
        ),
        (
            base().phase(Phase::new("flush").timeout(Duration::MAX)),
            "timeout of phase `flush`",
        ),
    ];
    for (builder, setting) in cases {
        let error = refused(builder);
        assert!(
            matches!(&error, BuildError::TooLong { setting: s, .. } if s == setting),
            "{setting}: {error:?}"
        );
        assert!(error.to_string().starts_with(&format!("the {setting} of ")));
    }
}

#[test]
fn the_longest_accepted_durations_build_and_run_without_panicking() {
    let clock = ManualClock::new();
    let coordinator = ShutdownCoordinator::builder()
        .grace_period(MAX_DURATION)
        .drain_delay(MAX_DURATION)
        .drain_timeout(MAX_DURATION)
        .phase(Phase::new("flush").timeout(MAX_DURATION))
        .allow_over_budget()
        .build(clock.clone())
        .unwrap();
    let shutdown = coordinator.handle();
    assert!(shutdown.trigger("test"));
    shutdown.abandon("enough");
    let report = block_on(coordinator.run());
    assert_eq!(report.outcome, Outcome::Abandoned);
}

#[test]
fn a_grace_period_near_the_maximum_survives_the_trigger() {
    let coordinator = ShutdownCoordinator::builder()
        .grace_period(MAX_DURATION)
        .drain_delay(Duration::ZERO)
        .build(ManualClock::new())
        .unwrap();
    coordinator.handle().trigger("test");
    assert_eq!(block_on(coordinator.run()).outcome, Outcome::Clean);
}

#[test]
fn two_hooks_of_one_name_in_a_phase_are_refused() {
    let coordinator = ShutdownCoordinator::builder()
        .build(ManualClock::new())
        .unwrap();
    coordinator.hook("flush", "kafka", |_| async {}).unwrap();
    let error = coordinator
        .hook("flush", "kafka", |_| async {})
        .unwrap_err();
    assert_eq!(
        error,
        HookError::DuplicateHook {
            phase: "flush".into(),
            name: "kafka".into()
        }
    );
    assert_eq!(
        error.to_string(),
        "phase `flush` already has a hook named `kafka`"
    );
    // The same name in another phase is another hook.
    coordinator.hook("close", "kafka", |_| async {}).unwrap();
}

#[test]
fn the_report_writes_outcome_and_duration_before_the_message() {
    let coordinator = ShutdownCoordinator::builder()
        .drain_delay(Duration::ZERO)
        .without_default_phases()
        .phase(Phase::new("flush"))
        .build(ManualClock::new())
        .unwrap();
    coordinator
        .hook("flush", "fails", |_| async { Err::<(), _>("disk full") })
        .unwrap();
    coordinator.handle().trigger("deploy");
    let report = block_on(coordinator.run());
    let text = report.to_string();
    assert!(
        text.contains("    hook fails: failed in 0.0s: disk full\n"),
        "{text}"
    );
    assert!(text.contains("  phase flush: failed in 0.0s\n"), "{text}");
    assert!(text.starts_with("shutdown failed in 0.0s (reason: deploy, exit code"));
    assert!(
        report
            .summary()
            .contains("phase flush: failed in 0.0s (hook fails: failed in 0.0s: disk full)")
    );
}

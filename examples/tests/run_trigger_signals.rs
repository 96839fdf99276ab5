//! `deputy run --trigger-signal`: the signals that start the shutdown, for a pod whose
//! `lifecycle.stopSignal` (or an image whose STOPSIGNAL) is not SIGTERM. Such a signal
//! drains like SIGTERM (readiness off, the drain delay, then the child stopped its own way),
//! and the child never receives it; without the flag it goes straight to the child.

use rustix::process::Signal as Sig;

mod support;

use support::run::{assert_said, deputy_run, deputy_run_with_env};
use support::{free_port, http_status};

/// A child that says which signals it gets, and ends on TERM.
const SAYS_ITS_SIGNALS: &str = "trap 'echo got QUIT' QUIT; trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.05; done";

#[test]
fn quit_drains_when_it_is_a_trigger_signal_and_the_child_never_gets_it() {
    let health = free_port();
    let health_arg = health.to_string();
    let mut deputy = deputy_run(&[
        "--trigger-signal",
        "TERM",
        "--trigger-signal",
        "INT",
        "--trigger-signal",
        "QUIT",
        "--drain-delay",
        "1s",
        "--health-port",
        &health_arg,
        "--",
        "sh",
        "-c",
        SAYS_ITS_SIGNALS,
    ]);
    deputy.expect_out("ready");
    deputy.signal(Sig::QUIT);
    deputy.expect_err("readiness off, stopping process");
    // Draining: readiness is off at once, and the child still runs.
    assert_eq!(http_status(health, "GET", "/health/ready"), 503);
    deputy.expect_out("got TERM");
    let ended = deputy.finish();
    assert_eq!(ended.code, 0, "{}", ended.err());
    assert!(!ended.out().contains("got QUIT"), "{}", ended.out());
    assert_said(&ended.err(), &["SIGQUIT", "sent SIGTERM to process"]);
}

/// The variable, as `--help` documents it: a comma-separated list.
#[test]
fn the_trigger_signals_come_from_deputy_trigger_signals_too() {
    let mut deputy = deputy_run_with_env(
        &["--drain-delay", "0s", "--", "sh", "-c", SAYS_ITS_SIGNALS],
        &[("DEPUTY_TRIGGER_SIGNALS", "TERM,INT,QUIT")],
    );
    deputy.expect_out("ready");
    deputy.signal(Sig::QUIT);
    deputy.expect_out("got TERM");
    let ended = deputy.finish();
    assert_eq!(ended.code, 0, "{}", ended.err());
    assert!(!ended.out().contains("got QUIT"), "{}", ended.out());
}

/// Without the flag QUIT is the child's, at once, as before.
#[test]
fn by_default_quit_goes_to_the_child() {
    let mut deputy = deputy_run(&["--drain-delay", "0s", "--", "sh", "-c", SAYS_ITS_SIGNALS]);
    deputy.expect_out("ready");
    deputy.signal(Sig::QUIT);
    deputy.expect_out("got QUIT");
    deputy.signal(Sig::TERM);
    let ended = deputy.finish();
    assert_eq!(ended.code, 0, "{}", ended.err());
}

/// Escalation counts every trigger signal: QUIT starts the shutdown, a TERM after it skips
/// the rest of a long drain delay.
#[test]
fn every_trigger_signal_counts_towards_the_escalation() {
    let mut deputy = deputy_run(&[
        "--trigger-signal",
        "QUIT",
        "--trigger-signal",
        "TERM",
        "--drain-delay",
        "100s",
        "--grace",
        "200s",
        "--",
        "sh",
        "-c",
        SAYS_ITS_SIGNALS,
    ]);
    deputy.expect_out("ready");
    deputy.signal(Sig::QUIT);
    deputy.expect_err("readiness off");
    deputy.signal(Sig::TERM);
    // Without the skip this would wait 100 s and the bound would fail the test.
    let ended = deputy.finish();
    assert_eq!(ended.code, 0, "{}", ended.err());
    assert_said(&ended.err(), &["SIGTERM: skipping the rest of the drain"]);
}

#[test]
fn a_signal_that_cannot_start_a_shutdown_is_refused_by_name() {
    for (value, said) in [
        ("CHLD", "reaps"),
        ("SEGV", "cannot start"),
        ("NOPE", "not a signal"),
    ] {
        let ended = deputy_run(&["--trigger-signal", value, "--", "true"]).finish();
        assert_eq!(ended.code, 2, "{value}: {}", ended.err());
        assert!(ended.err().contains(said), "{value}: {}", ended.err());
    }
}

//! `deputy run`'s way out: a child that ignores SIGTERM is killed at the end of the grace
//! period, and the child's exit code (or 128 + the signal that killed it) is deputy's.

use std::time::{Duration, Instant};

mod support;

use rustix::process::Signal as Sig;
use support::run::{IGNORES_TERM, assert_said, deputy_run, run_to_end};

#[test]
fn a_child_that_ignores_term_is_killed_when_the_grace_period_is_over() {
    let mut deputy = deputy_run(&[
        "--no-control-socket",
        "--grace",
        "1s",
        "--drain-delay",
        "200ms",
        "--",
        "sh",
        "-c",
        IGNORES_TERM,
    ]);
    deputy.expect_out("ready");
    let sent = Instant::now();
    deputy.signal(Sig::TERM);
    let (code, _, err) = deputy.finish().texts();
    assert_eq!(code, 137, "{err}");
    assert_said(
        &err,
        &[
            "sent SIGTERM to process",
            "the grace period of 1s is over: killing process group",
            "was killed by SIGKILL",
        ],
    );
    assert!(
        sent.elapsed() >= Duration::from_secs(1),
        "killed before the grace period"
    );
}

#[test]
fn exit_codes_pass_through_and_a_signal_becomes_128_plus_it() {
    let quiet = ["--no-control-socket", "--"];
    let with = |options: &[&str], command: &[&str]| {
        let args: Vec<&str> = options
            .iter()
            .chain(&quiet)
            .chain(command)
            .copied()
            .collect();
        run_to_end(&args)
    };
    assert_eq!(with(&[], &["true"]).0, 0);
    assert_eq!(with(&[], &["sh", "-c", "exit 3"]).0, 3);
    let (code, _, err) = with(&[], &["sh", "-c", "kill -USR1 $$"]);
    assert_eq!(code, 128 + 10);
    assert_said(&err, &["was killed by SIGUSR1"]);
    assert_eq!(with(&["--map-exit", "3=0"], &["sh", "-c", "exit 3"]).0, 0);
    assert_eq!(with(&["--map-exit", "4=9"], &["sh", "-c", "exit 4"]).0, 9);
    assert_eq!(
        with(&["--map-exit", "138"], &["sh", "-c", "kill -USR1 $$"]).0,
        0
    );
    assert_eq!(with(&["--map-exit", "3=0"], &["sh", "-c", "exit 5"]).0, 5);

    let (code, _, err) = with(&[], &["deputy-no-such-command"]);
    assert_eq!(code, 127);
    assert_said(&err, &["command not found"]);
    let dir = tempfile::tempdir().unwrap();
    let not_executable = dir.path().join("script");
    std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
    let (code, _, err) = with(&[], &[not_executable.to_str().unwrap()]);
    assert_eq!(code, 126, "{err}");

    // Bad command lines: clap's code 2, one line saying what is wrong.
    for bad in [
        &["--drain-delay", "30s", "--grace", "10s"][..],
        &["--grace", "10"],
        &["--stop-signal", "KILL"],
        &["--stop-signal", "NOPE"],
        &["--map-exit", "300"],
    ] {
        let (code, _, err) = with(bad, &["true"]);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(!err.is_empty(), "{bad:?} said nothing");
    }
}

//! No panics, no hangs, as a careless or hostile user would find them: durations no clock
//! can add, output into a closed pipe, a service that takes the connection and never
//! answers. Each case ends with one clear line and a documented exit code.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{Proc, assert_no_panic, deputy, example, text};

const HUGE: [&str; 3] = ["18446744073709551615s", "300000000000y", "36501days"];

/// Runs `command` to its end; its exit code and stderr, which must show no panic.
fn refused(mut command: Command) -> (i32, String) {
    let out = command.output().unwrap();
    let err = text(&out.stderr);
    assert_no_panic(&err);
    (out.status.code().unwrap_or(-1), err)
}

#[test]
fn durations_no_clock_can_add_are_refused_by_deputy() {
    let cases: [&[&str]; 7] = [
        &["run", "--grace"],
        &["run", "--drain-delay"],
        &["run", "--drain-delay-max"],
        &["run", "--quiet-period"],
        &["run", "--stop-timeout"],
        &["run", "--cleanup-timeout"],
        &["terminate", "--timeout"],
    ];
    for args in cases {
        for value in HUGE {
            let mut command = Command::new(deputy());
            command.args(args).arg(value);
            if args[0] == "run" {
                command.args(["--", "true"]);
            }
            let (code, err) = refused(command);
            assert_eq!(code, 2, "{args:?} {value}: {err}");
            assert!(err.contains("longer than"), "{args:?} {value}: {err}");
        }
    }
}

#[test]
fn durations_no_clock_can_add_are_refused_by_the_services() {
    for option in [
        "--drain-delay",
        "--drain-timeout",
        "--drain-delay-max",
        "--grace-period",
    ] {
        let mut command = Command::new(example("http-service"));
        command.args([option, HUGE[0]]);
        let (code, err) = refused(command);
        assert_eq!(code, 2, "{option}: {err}");
        assert!(err.contains("longer than"), "{option}: {err}");
    }
}

#[test]
fn the_longest_accepted_durations_survive_a_shutdown() {
    // 100 years each: accepted, and nothing overflows at the signal.
    let mut command = Command::new(deputy());
    command.args([
        "run",
        "--no-control-socket",
        "--drain-delay",
        "0s",
        "--grace",
        "36500days",
        "--stop-timeout",
        "36499days",
        "--cleanup-timeout",
        "36500days",
        "--",
        "sh",
        "-c",
        "trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done",
    ]);
    let mut run = Proc::spawn(command);
    run.expect_out("ready");
    run.signal(rustix::process::Signal::TERM);
    let ended = run.finish();
    assert_eq!(ended.code, 0, "{}", ended.err());
}

/// ipc-service in a fresh directory, once it listens.
fn ipc_service(dir: &std::path::Path) -> Proc {
    let mut command = Command::new(example("ipc-service"));
    command.arg("--ipc-dir").arg(dir);
    let mut service = Proc::spawn(command);
    service.expect_out("listening on");
    service
}

/// A pipe whose reading end is already closed: every write to it fails with EPIPE.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Stdio::from(writer)
}

#[test]
fn a_closed_stdout_is_no_panic_and_the_work_is_still_done() {
    let dir = tempfile::tempdir().unwrap();
    let service = ipc_service(dir.path());
    // `deputy status | true`
    let status = Command::new(deputy())
        .args(["status", "--ipc-dir"])
        .arg(dir.path())
        .stdout(closed_pipe())
        .output()
        .unwrap();
    assert_no_panic(&text(&status.stderr));
    assert_eq!(status.status.code(), Some(0), "{status:?}");
    // `deputy terminate | (sleep .1; true)`: the shutdown is waited for all the same.
    let terminate = Command::new(deputy())
        .args(["terminate", "--ipc-dir"])
        .arg(dir.path())
        .stdout(closed_pipe())
        .output()
        .unwrap();
    assert_no_panic(&text(&terminate.stderr));
    assert_eq!(terminate.status.code(), Some(0), "{terminate:?}");
    assert_eq!(service.finish().code, 0);
}

#[test]
fn a_service_that_never_answers_is_not_waited_for_without_limit() {
    let dir = tempfile::tempdir().unwrap();
    let service = ipc_service(dir.path());
    // Stopped: the kernel still accepts connections into its backlog, nobody answers.
    service.signal(rustix::process::Signal::STOP);
    for args in [&["terminate", "--no-wait"][..], &["terminate"], &["status"]] {
        let start = Instant::now();
        let mut command = Command::new(deputy());
        command.args(args).arg("--ipc-dir").arg(dir.path());
        let (code, err) = refused(command);
        assert_eq!(code, 5, "{args:?}: {err}");
        assert!(err.contains("did not answer within 10s"), "{args:?}: {err}");
        // A generous bound: the limit is 10 s; without one this never returns.
        assert!(start.elapsed() < Duration::from_secs(30), "{args:?}");
    }
    service.signal(rustix::process::Signal::CONT);
}

//! The termination message: at Done, a service (the http-service example) and `deputy run`
//! write why the run ended to `$DEPUTY_TERMINATION_LOG` (in a pod, /dev/termination-log,
//! which `kubectl describe pod` shows), at most 4,096 bytes.

use std::path::{Path, PathBuf};
use std::process::Command;

mod support;

use rustix::process::Signal;
use support::{Proc, deputy, example, free_port};

/// `program ARGS` with DEPUTY_TERMINATION_LOG set to `log`.
fn with_log(program: PathBuf, args: &[&str], log: &Path) -> Proc {
    let mut command = Command::new(program);
    command.args(args).env("DEPUTY_TERMINATION_LOG", log);
    Proc::spawn(command)
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_else(|e| panic!("no {}: {e}", log.display()))
}

#[test]
fn a_service_writes_its_outcome_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("termination-log");
    let port = free_port().to_string();
    let mut service = Command::new(example("http-service"));
    service
        .args(["--port", &port, "--drain-delay", "0s"])
        .env("DEPUTY_TERMINATION_LOG", &log)
        .env("DEPUTY_IPC_DIR", dir.path())
        .env("DEPUTY_HEALTH_CHECK_PORT", free_port().to_string());
    let mut service = Proc::spawn(service);
    service.expect_out("http-service: serving");
    service.signal(Signal::TERM);
    let ended = service.finish();
    assert_eq!(ended.code, 0, "{}", ended.err());
    let message = read(&log);
    assert!(
        message.starts_with("exit code 0: shutdown clean in "),
        "{message}"
    );
    assert!(message.contains("(reason: signal SIGTERM)"), "{message}");
    assert!(message.contains("drain: "), "{message}");
}

#[test]
fn deputy_run_says_how_the_child_ended() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("termination-log");
    let ipc = dir.path().to_str().unwrap();
    let args = [
        "run",
        "--drain-delay",
        "0s",
        "--ipc-dir",
        ipc,
        "--",
        "sh",
        "-c",
        "echo ready; exec sleep 1000",
    ];
    let mut run = with_log(deputy(), &args, &log);
    // The child runs (and deputy's signal handling is set up before it starts).
    run.expect_out("ready");
    run.signal(Signal::TERM);
    let ended = run.finish();
    assert_eq!(ended.code, 128 + 15, "{}", ended.err());
    let message = read(&log);
    let first = message.lines().next().unwrap_or_default();
    assert!(first.starts_with("process "), "{message}");
    assert!(
        first.ends_with("was killed by SIGTERM; deputy run exits with code 143"),
        "{message}"
    );
    assert!(message.contains("(reason: signal SIGTERM)"), "{message}");
}

#[test]
fn deputy_run_says_when_the_child_crashed_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("termination-log");
    let ipc = dir.path().to_str().unwrap();
    let args = [
        "run",
        "--ipc-dir",
        ipc,
        "--map-exit",
        "3=4",
        "--",
        "sh",
        "-c",
        "exit 3",
    ];
    let ended = with_log(deputy(), &args, &log).finish();
    assert_eq!(ended.code, 4, "{}", ended.err());
    let message = read(&log);
    assert!(
        message
            .lines()
            .next()
            .is_some_and(|line| line.ends_with("exited with code 3; deputy run exits with code 4")),
        "{message}"
    );
    assert!(
        message.contains("exited)"),
        "the reason names the exit: {message}"
    );
}

#[test]
fn deputy_run_keeps_the_childs_own_message_after_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("termination-log");
    let ipc = dir.path().to_str().unwrap();
    let script = "echo 'exit code 2: shutdown failed (hook db: failed)' > \"$DEPUTY_TERMINATION_LOG\"; exit 2";
    let args = ["run", "--ipc-dir", ipc, "--", "sh", "-c", script];
    let ended = with_log(deputy(), &args, &log).finish();
    assert_eq!(ended.code, 2, "{}", ended.err());
    let message = read(&log);
    let (ours, child) = message
        .split_once("the child's own message:\n")
        .unwrap_or_else(|| panic!("no child's message in: {message}"));
    assert!(
        ours.contains("exited with code 2; deputy run exits with code 2"),
        "{message}"
    );
    assert_eq!(child, "exit code 2: shutdown failed (hook db: failed)\n");
}

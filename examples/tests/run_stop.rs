//! How `deputy run` stops its child: after the drain delay, over its control socket (or a
//! descendant's), with the stop signal (to its group with --group); the second signal skips
//! the delay, the third kills; and a preStop reaches the supervisor as PID 1.

use std::process::Command;

mod support;

use rustix::process::Signal as Sig;
use support::run::{IGNORES_TERM, assert_said, deputy_run, deputy_run_as_pid_1, prestop};
use support::{Proc, can_unshare, deputy as deputy_bin, example, free_port, http_status, text};

#[test]
fn the_child_keeps_serving_during_the_drain_delay_then_gets_the_stop_signal() {
    let (port, health) = (free_port(), free_port());
    let mut deputy = deputy_run(&[
        "--no-control-socket",
        "--drain-delay",
        "1500ms",
        "--health-port",
        &health.to_string(),
        "--",
        example("plain-server").to_str().unwrap(),
        "--port",
        &port.to_string(),
    ]);
    deputy.expect_out("plain-server: listening");
    assert_eq!(http_status(health, "GET", "/health/ready"), 200);
    deputy.signal(Sig::TERM);
    deputy.expect_err("readiness off, stopping process");
    assert_eq!(http_status(health, "GET", "/health/ready"), 503);
    assert_eq!(http_status(health, "GET", "/health/live"), 200);
    // During the delay, the child still answers.
    assert_eq!(http_status(port, "GET", "/"), 200);
    deputy.expect_err("sent SIGTERM to process");
    let (code, _, err) = deputy.finish().texts();
    assert_eq!(code, 128 + 15, "{err}");
}

#[test]
fn a_child_with_a_control_socket_is_stopped_over_it_and_terminate_reaches_the_supervisor() {
    let dir = tempfile::tempdir().unwrap();
    let mut deputy = deputy_run(&[
        "--ipc-dir",
        dir.path().to_str().unwrap(),
        "--drain-delay",
        "0s",
        "--",
        example("http-service").to_str().unwrap(),
        "--port",
        &free_port().to_string(),
        "--health-port",
        &free_port().to_string(),
        "--drain-delay",
        "0s",
    ]);
    deputy.expect_out("http-service: serving");
    // The entrypoint pid file names the supervisor, not the child (DEPUTY_ENTRYPOINT=0).
    assert_eq!(deputy_ipc::entrypoint_pid(dir.path()), Some(deputy.pid()));

    let status = Command::new(deputy_bin())
        .args(["status", "--ipc-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        text(&status.stdout).contains("running, ready"),
        "{status:?}"
    );
    prestop(Command::new(deputy_bin()), dir.path());

    let (code, out, err) = deputy.finish().texts();
    assert_eq!(code, 0, "{err}");
    assert_said(&err, &["over its control socket"]);
    assert!(!err.contains("sent SIGTERM"), "{err}");
    // The child's own report says why it stopped.
    assert!(out.contains("reason: control socket request"), "{out}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "files left in the control directory"
    );
}

#[test]
fn a_service_under_a_shell_without_exec_is_stopped_over_its_control_socket() {
    // K8sDeputy.jl's advice, `sh -c "julia entrypoint.jl; sleep 1"`: the service is a
    // grandchild of deputy, and the shell would die of a SIGTERM without passing it on.
    let dir = tempfile::tempdir().unwrap();
    let service = format!(
        "{} --port {} --health-port {} --drain-delay 0s; echo \"service exited with $?\"",
        example("http-service").display(),
        free_port(),
        free_port()
    );
    let mut deputy = deputy_run(&[
        "--ipc-dir",
        dir.path().to_str().unwrap(),
        "--drain-delay",
        "0s",
        "--",
        "sh",
        "-c",
        &service,
    ]);
    deputy.expect_out("http-service: serving");
    deputy.signal(Sig::TERM);
    let (code, out, err) = deputy.finish().texts();
    assert_eq!(code, 0, "{err}");
    assert_said(&err, &["over its control socket"]);
    assert!(!err.contains("sent SIGTERM"), "{err}");
    assert!(out.contains("reason: control socket request"), "{out}");
    assert!(out.contains("service exited with 0"), "{out}");
}

#[test]
fn stop_signal_quit_is_what_the_child_gets() {
    let mut deputy = deputy_run(&[
        "--no-control-socket",
        "--drain-delay",
        "0s",
        "--stop-signal",
        "QUIT",
        "--",
        "sh",
        "-c",
        "trap 'echo got QUIT; exit 0' QUIT; trap 'echo got TERM; exit 1' TERM; \
         echo ready; while :; do sleep 0.1; done",
    ]);
    deputy.expect_out("ready");
    deputy.signal(Sig::TERM);
    let (code, out, err) = deputy.finish().texts();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("got QUIT") && !out.contains("got TERM"),
        "{out}"
    );
    assert_said(&err, &["sent SIGQUIT to process"]);
}

/// deputy running `script` (which prints "ready"), in the 100 s drain delay of a first
/// SIGTERM: a test that needs deputy to go on before then fails at the bound, not later.
fn in_a_long_drain_delay(script: &str) -> Proc {
    let mut deputy = deputy_run(&[
        "--no-control-socket",
        "--drain-delay",
        "100s",
        "--grace",
        "200s",
        "--",
        "sh",
        "-c",
        script,
    ]);
    deputy.expect_out("ready");
    deputy.signal(Sig::TERM);
    deputy.expect_err("stopping process");
    deputy
}

/// A shell with a background sleep that takes 0.3 s to stop on SIGTERM (ample time for a
/// SIGTERM sent to its group to end the sleep); prints "ready" once both run.
const SHELL_WITH_A_CHILD: &str = "sleep 1000 & trap 'sleep 0.3; exit 0' TERM; echo ready; wait";

#[test]
fn with_group_the_stop_signal_reaches_the_whole_process_group() {
    let stop = |group: bool| {
        let mut args = vec!["--no-control-socket", "--drain-delay", "0s"];
        if group {
            args.push("--group");
        }
        args.extend([
            "--cleanup-timeout",
            "200ms",
            "--",
            "sh",
            "-c",
            SHELL_WITH_A_CHILD,
        ]);
        let mut deputy = deputy_run(&args);
        deputy.expect_out("ready");
        deputy.signal(Sig::TERM);
        deputy.finish().texts()
    };
    // Without --group the shell alone gets SIGTERM; its sleep is left for the cleanup.
    let (code, _, err) = stop(false);
    assert_eq!(code, 0, "{err}");
    assert_said(&err, &["sent SIGTERM to process ", "1 process left behind"]);
    // With it, the sleep gets it too, and nothing is left.
    let (code, _, err) = stop(true);
    assert_eq!(code, 0, "{err}");
    assert_said(&err, &["sent SIGTERM to process group"]);
    assert!(!err.contains("left behind"), "{err}");
}

#[test]
fn a_second_signal_skips_the_drain_delay() {
    let deputy = in_a_long_drain_delay("echo ready; exec sleep 1000");
    deputy.signal(Sig::INT);
    // Without the skip this would wait 100 s and the bound would fail the test.
    let (code, _, err) = deputy.finish().texts();
    assert_eq!(code, 128 + 15, "{err}");
    assert_said(&err, &["SIGINT: skipping the rest of the drain"]);
}

#[test]
fn a_child_that_exits_during_the_drain_delay_ends_it() {
    let deputy =
        in_a_long_drain_delay("trap 'exit 4' HUP; echo ready; while :; do sleep 0.1; done");
    // The child goes on its own (here on a forwarded SIGHUP): without the skip, deputy
    // would wait out the 100 s delay and the bound would fail the test.
    deputy.signal(Sig::HUP);
    let (code, _, err) = deputy.finish().texts();
    assert_eq!(code, 4, "{err}");
    assert_said(&err, &["exited with code 4"]);
}

#[test]
fn a_third_signal_kills_at_once() {
    let mut deputy = deputy_run(&[
        "--no-control-socket",
        "--drain-delay",
        "0s",
        "--grace",
        "200s",
        "--",
        "sh",
        "-c",
        IGNORES_TERM,
    ]);
    deputy.expect_out("ready");
    deputy.signal(Sig::TERM);
    deputy.expect_err("sent SIGTERM");
    deputy.signal(Sig::TERM);
    deputy.expect_err("SIGTERM: the drain is already over");
    deputy.signal(Sig::TERM);
    let (code, _, err) = deputy.finish().texts();
    assert_eq!(code, 137, "{err}");
    assert_said(&err, &["SIGTERM: exiting at once: killing process group"]);
}

#[test]
fn as_pid_1_a_prestop_terminate_reaches_the_supervisor() {
    if !can_unshare() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut deputy = deputy_run_as_pid_1(&[
        "--ipc-dir",
        dir.path().to_str().unwrap(),
        "--drain-delay",
        "300ms",
        "--map-exit",
        "143",
        "--",
        example("plain-server").to_str().unwrap(),
        "--port",
        &port.to_string(),
    ]);
    deputy.expect_out("plain-server: listening");
    assert_eq!(deputy_ipc::entrypoint_pid(dir.path()), Some(1));
    // The kubelet's exec runs inside the namespace; when PID 1 exits, whatever is left in it
    // is killed, so the preStop must be done first, and cleanly.
    let mut nsenter = Command::new("nsenter");
    nsenter
        .args(["--target", &deputy.pid().to_string(), "--pid", "--"])
        .arg(deputy_bin());
    prestop(nsenter, dir.path());
    let (code, _, err) = deputy.finish().texts();
    // plain-server dies of the SIGTERM (143), mapped to 0.
    assert_eq!(code, 0, "{err}");
    assert_said(
        &err,
        &[
            "control socket request: readiness off",
            "was killed by SIGTERM",
        ],
    );
}

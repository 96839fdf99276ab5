//! Yes-or-no settings as people write them (`DEPUTY_METRICS=1`, as README and `--help` do;
//! `yes`, `On`, `FALSE`...): every binary that documents a boolean variable takes every
//! spelling, the setting takes effect, and anything else is refused with one clear line.

use std::process::Command;

mod support;

use support::{Proc, deputy, example, free_port, http_status};

const YES: [&str; 5] = ["1", "true", "YES", "On", "TRUE"];
const NO: [&str; 4] = ["0", "false", "no", "OFF"];

/// Starts `service` (one of the examples with a health port) with `DEPUTY_METRICS=value`,
/// waits for its first line, and returns what `/metrics` answers on its health port.
fn metrics_status(service: &str, value: &str) -> u16 {
    let dir = tempfile::tempdir().unwrap();
    let health = free_port();
    let mut command = Command::new(example(service));
    if service != "ipc-service" {
        command.args(["--port", &free_port().to_string()]);
    }
    command
        .args(["--health-port", &health.to_string(), "--ipc-dir"])
        .arg(dir.path())
        .env("DEPUTY_METRICS", value);
    let mut process = Proc::spawn(command);
    let first = if service == "ipc-service" {
        "listening on"
    } else {
        "serving on"
    };
    process.expect_out(first);
    http_status(health, "GET", "/metrics")
    // Dropping the process kills it: its shutdown is not what this test is about.
}

#[test]
fn the_services_take_deputy_metrics_as_people_write_it() {
    for service in [
        "http-service",
        "ipc-service",
        "stream-service",
        "grpc-service",
    ] {
        for value in ["1", "On"] {
            assert_eq!(metrics_status(service, value), 200, "{service} {value}");
        }
        assert_eq!(metrics_status(service, "off"), 404, "{service} off");
    }
}

#[test]
fn the_services_refuse_a_deputy_metrics_that_is_neither_yes_nor_no() {
    for service in [
        "http-service",
        "ipc-service",
        "stream-service",
        "grpc-service",
    ] {
        let out = Command::new(example(service))
            .env("DEPUTY_METRICS", "maybe")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{service}: {err}");
        assert!(
            err.contains("`maybe` is not a yes or no"),
            "{service}: {err}"
        );
    }
}

/// `deputy run` with `variable=value`, running `sh -c script`; its exit code and output.
fn run_with(variable: &str, value: &str, script: &str) -> (i32, String, String) {
    let out = Command::new(deputy())
        .args(["run", "--drain-delay", "0s", "--ipc-dir"])
        .arg(std::env::temp_dir())
        .args(["--", "sh", "-c", script])
        .env(variable, value)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn deputy_run_takes_every_boolean_variable_as_people_write_it() {
    for variable in [
        "DEPUTY_NOTIFY",
        "DEPUTY_GROUP",
        "DEPUTY_NO_CONTROL_SOCKET",
        "DEPUTY_NO_SUBREAPER",
        "DEPUTY_RAISE_CHILD_NOFILE",
        "DEPUTY_METRICS",
    ] {
        for value in YES.iter().chain(&NO) {
            let (code, _, err) = run_with(variable, value, "exit 0");
            assert_eq!(code, 0, "{variable}={value}: {err}");
        }
        let (code, _, err) = run_with(variable, "maybe", "exit 0");
        if variable == "DEPUTY_METRICS" {
            // Without --health-port there is no /metrics to serve: the child's business.
            assert_eq!(code, 0, "{variable}=maybe: {err}");
            continue;
        }
        assert_eq!(code, 2, "{variable}=maybe: {err}");
        assert!(
            err.contains("`maybe` is not a yes or no"),
            "{variable}: {err}"
        );
    }
}

#[test]
fn deputy_run_boolean_variables_take_effect() {
    // DEPUTY_NOTIFY=1: the child gets NOTIFY_SOCKET; =0: it does not.
    let (_, out, _) = run_with(
        "DEPUTY_NOTIFY",
        "1",
        "echo \"notify=${NOTIFY_SOCKET:+set}\"",
    );
    assert!(out.contains("notify=set"), "{out}");
    let (_, out, _) = run_with(
        "DEPUTY_NOTIFY",
        "0",
        "echo \"notify=${NOTIFY_SOCKET:+set}\"",
    );
    assert!(
        out.contains("notify=\n") || out.ends_with("notify="),
        "{out}"
    );
    // DEPUTY_NO_CONTROL_SOCKET=yes: no socket of deputy's in the directory while it runs.
    let dir = tempfile::tempdir().unwrap();
    let script = format!("ls {}", dir.path().display());
    for (value, sockets) in [("yes", 0), ("no", 1)] {
        let out = Command::new(deputy())
            .args(["run", "--ipc-dir"])
            .arg(dir.path())
            .args(["--", "sh", "-c", &script])
            .env("DEPUTY_NO_CONTROL_SOCKET", value)
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&out.stdout);
        let count = listed.lines().filter(|l| l.ends_with(".sock")).count();
        assert_eq!(count, sockets, "DEPUTY_NO_CONTROL_SOCKET={value}: {listed}");
    }
}

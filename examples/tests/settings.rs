//! Settings that do what they say: the README's Dockerfile setup (a deputy service under
//! `deputy run` with `DEPUTY_HEALTH_CHECK_PORT`), the propagation deputy cannot see said as
//! "not measured", and JSON log lines whose level tells a kill from a progress line.

use std::process::Command;

mod support;

use support::{Proc, deputy, example, free_port, http_status, text};

#[test]
fn a_deputy_service_under_deputy_run_with_the_health_port_variable_starts() {
    // README: `ENV DEPUTY_HEALTH_CHECK_PORT=8081 ...` with `deputy run` as entrypoint, and a
    // service on the deputy library as the command. The child must not take deputy's port.
    let dir = tempfile::tempdir().unwrap();
    let health = free_port();
    let port = free_port();
    let mut command = Command::new(deputy());
    command
        .args(["run", "--drain-delay", "0s", "--ipc-dir"])
        .arg(dir.path())
        .env("DEPUTY_HEALTH_CHECK_PORT", health.to_string())
        .arg("--")
        .arg(example("http-service"))
        .args(["--port", &port.to_string(), "--drain-delay", "0s"]);
    let mut run = Proc::spawn(command);
    let serving = run.expect_out("serving on");
    assert!(serving.contains("no health endpoints"), "{serving}");
    assert_eq!(http_status(health, "GET", "/health/ready"), 200);
    assert_eq!(http_status(port, "GET", "/"), 200);
    run.signal(rustix::process::Signal::TERM);
    let ended = run.finish();
    assert_eq!(ended.code, 0, "{}", ended.err());
}

#[test]
fn traffic_deputy_cannot_see_is_not_measured() {
    for (options, said) in [
        (&[][..], "new traffic after the trigger not measured"),
        (
            &["--ready-port", "PORT"][..],
            "no new connection or request after the trigger",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("termination-log");
        let port = free_port();
        let options: Vec<String> = options
            .iter()
            .map(|o| o.replace("PORT", &port.to_string()))
            .collect();
        let mut command = Command::new(deputy());
        command
            .args(["run", "--drain-delay", "20s", "--ipc-dir"])
            .arg(dir.path())
            .args(&options)
            .env("DEPUTY_TERMINATION_LOG", &log)
            .env("PORT", port.to_string())
            .arg("--")
            .arg(example("plain-server"));
        let mut run = Proc::spawn(command);
        run.expect_out("listening on");
        if !options.is_empty() {
            run.expect_err("ready:");
        }
        run.signal(rustix::process::Signal::TERM);
        run.expect_err("readiness off");
        let now = support::deputy_status(dir.path());
        assert!(now.contains(said), "{options:?}: {now}");
        // The second signal skips the rest of the drain delay.
        run.signal(rustix::process::Signal::TERM);
        run.finish();
        let message = std::fs::read_to_string(&log).unwrap();
        assert!(message.contains(said), "{options:?}: {message}");
    }
}

#[test]
fn json_lines_say_warn_for_a_kill_and_error_for_what_failed() {
    let out = Command::new(deputy())
        .args(["run", "--grace", "1s", "--drain-delay", "0s"])
        .args(["--no-control-socket", "--", "sh", "-c"])
        .arg("trap '' TERM; kill -TERM $PPID; while :; do sleep 0.05; done")
        .env("DEPUTY_LOG_FORMAT", "json")
        .output()
        .unwrap();
    let lines: Vec<serde_json::Value> = text(&out.stderr)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let level_of = |part: &str| {
        lines
            .iter()
            .find(|line| line["fields"]["message"].as_str().unwrap().contains(part))
            .map(|line| line["level"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no line with {part:?} in {lines:?}"))
    };
    assert_eq!(level_of("readiness off"), "INFO");
    assert_eq!(level_of("killing process group"), "WARN");
    let out = Command::new(deputy())
        .args(["run", "--no-control-socket", "--", "/no/such/program"])
        .env("DEPUTY_LOG_FORMAT", "json")
        .output()
        .unwrap();
    let line: serde_json::Value = serde_json::from_str(text(&out.stderr).trim()).unwrap();
    assert_eq!(line["level"], "ERROR", "{line}");
    assert_eq!(out.status.code(), Some(127));
}

/// `--port 0` takes any free port: each service says the one it got, and it answers there.
#[test]
fn with_port_0_each_service_says_the_port_it_got() {
    for service in ["http-service", "stream-service", "grpc-service"] {
        let dir = tempfile::tempdir().unwrap();
        let health = free_port().to_string();
        let mut proc = Proc::start(
            example(service),
            [
                "--port",
                "0",
                "--health-port",
                &health,
                "--drain-delay",
                "0s",
                "--ipc-dir",
            ]
            .into_iter()
            .map(str::to_owned)
            .chain([dir.path().display().to_string()]),
        );
        let line = proc.expect_out("serving on");
        let port: u16 = line
            .split("localhost:")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|digits| digits.parse().ok())
            .unwrap_or_else(|| panic!("{service}: no port in {line:?}"));
        assert_ne!(port, 0, "{service}: {line}");
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "{service}: nothing on port {port}: {line}"
        );
        proc.signal(rustix::process::Signal::TERM);
        assert_eq!(proc.finish().code, 0, "{service}");
    }
}

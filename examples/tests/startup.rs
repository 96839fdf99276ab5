//! The start-up half, from outside: http-service's `--startup` (a start-up task, `warm-up`)
//! holds `/health/started` and `/health/ready` at 503 until it is done, `--startup-timeout`
//! ends the run naming it, a SIGTERM during start-up exits cleanly; `deputy run` answers
//! `/health/started` once its child is ready.

use std::time::{Duration, Instant};

mod support;

use rustix::process::Signal as Sig;
use support::run::deputy_run;
use support::{BOUND, Proc, free_port, http_status};

/// http-service with `options` and its termination log in `dir`, once it serves: it and
/// its health port.
fn http_service(dir: &std::path::Path, options: &[&str]) -> (Proc, u16) {
    let log = dir.join("termination-log");
    let env = [("DEPUTY_TERMINATION_LOG", log.as_os_str())];
    let (service, _, health) = support::http_service_with_health(dir, options, &env);
    (service, health)
}

/// Polls `path` on `port` until it answers `status` (bounded); how long that took.
fn until(port: u16, path: &str, status: u16) -> Duration {
    let start = Instant::now();
    while http_status(port, "GET", path) != status {
        assert!(start.elapsed() < BOUND, "{path} never answered {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// [`until`] 200.
fn until_ok(port: u16, path: &str) -> Duration {
    until(port, path, 200)
}

#[test]
fn started_and_ready_answer_503_until_the_warm_up_is_done_then_started_stays() {
    let dir = tempfile::tempdir().unwrap();
    let (service, health) = http_service(dir.path(), &["--startup", "2s", "--drain-delay", "1s"]);
    assert_eq!(http_status(health, "GET", "/health/started"), 503);
    assert_eq!(http_status(health, "GET", "/health/ready"), 503);
    assert_eq!(http_status(health, "GET", "/health/live"), 200);
    let waited = until_ok(health, "/health/started");
    assert!(waited > Duration::from_millis(1000), "{waited:?}");
    assert_eq!(http_status(health, "GET", "/health/ready"), 200);
    // Shutting down: not ready any more, but started for good.
    service.signal(Sig::TERM);
    until(health, "/health/ready", 503);
    assert_eq!(http_status(health, "GET", "/health/started"), 200);
    let ended = service.finish();
    assert_eq!(ended.code, 0, "{}", ended.err());
    assert!(
        ended.out().contains("hook warm-up: completed"),
        "{}",
        ended.out()
    );
}

#[test]
fn a_warm_up_past_the_start_up_timeout_ends_the_run_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (service, health) = http_service(
        dir.path(),
        &[
            "--startup",
            "30s",
            "--startup-timeout",
            "1s",
            "--drain-delay",
            "0s",
        ],
    );
    assert_eq!(http_status(health, "GET", "/health/started"), 503);
    let ended = service.finish();
    assert_eq!(ended.code, 1, "{}", ended.out());
    let why = "start-up task warm-up was still running at the start-up timeout (1s)";
    assert!(
        ended.out().contains(&format!("reason: {why}")),
        "{}",
        ended.out()
    );
    assert!(ended.err().contains(why), "{}", ended.err());
    let message = std::fs::read_to_string(dir.path().join("termination-log")).unwrap();
    assert!(message.contains(why), "{message}");
}

#[test]
fn a_sigterm_during_start_up_stops_the_warm_up_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (service, health) = http_service(
        dir.path(),
        &[
            "--startup",
            "30s",
            "--startup-timeout",
            "60s",
            "--drain-delay",
            "0s",
        ],
    );
    service.signal(Sig::TERM);
    let ended = service.finish();
    assert_eq!(ended.code, 0, "{}\n{}", ended.out(), ended.err());
    assert!(
        ended.out().contains("hook warm-up: completed"),
        "{}",
        ended.out()
    );
    assert_eq!(http_status(health, "GET", "/health/started"), 0, "gone");
}

#[test]
fn deputy_run_answers_started_once_its_child_is_ready() {
    let (health, port) = (free_port(), free_port());
    // A child that listens on `port` after a second.
    let child = format!(
        "import socket, time\n\
         time.sleep(1)\n\
         s = socket.socket()\n\
         s.bind(('127.0.0.1', {port}))\n\
         s.listen()\n\
         print('listening', flush=True)\n\
         time.sleep(1000)"
    );
    let mut deputy = deputy_run(&[
        "--no-control-socket",
        "--health-port",
        &health.to_string(),
        "--ready-port",
        &port.to_string(),
        "--drain-delay",
        "0s",
        "--",
        "python3",
        "-c",
        &child,
    ]);
    // The health port is up before the child listens.
    let start = Instant::now();
    while http_status(health, "GET", "/health/live") != 200 {
        assert!(start.elapsed() < BOUND);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(http_status(health, "GET", "/health/started"), 503);
    deputy.expect_out("listening");
    until_ok(health, "/health/started");
    deputy.signal(Sig::TERM);
    assert_eq!(deputy.finish().code, 128 + 15);
}

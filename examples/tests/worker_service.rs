//! worker-service, the deputy side of the README's comparison with tokio-graceful-shutdown:
//! two vital tasks, an HTTP server and a flush phase, on SIGTERM, on a task's failure, with
//! a hung task, and as a preStop target.

use std::process::Command;
use std::time::{Duration, Instant};

mod support;

use rustix::process::Signal as Sig;
use support::run::prestop;
use support::{Proc, deputy, example, free_port, http_status};

/// worker-service with `options`, drain delay 0.5 s; once it serves: it and its port.
fn worker_service(dir: &std::path::Path, options: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let mut command = Command::new(example("worker-service"));
    command
        .args(["--port", &port.to_string(), "--health-port"])
        .arg(free_port().to_string())
        .args(["--drain-delay", "500ms", "--ipc-dir"])
        .arg(dir)
        .args(options);
    let mut service = Proc::spawn(command);
    service.expect_out("worker-service: serving");
    (service, port)
}

#[test]
fn on_sigterm_every_task_stops_in_its_phase_and_the_exit_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (service, port) = worker_service(dir.path(), &[]);
    assert_eq!(http_status(port, "GET", "/"), 200);
    service.signal(Sig::TERM);
    let ended = service.finish();
    assert_eq!(ended.code, 0, "{}", ended.out());
    for line in [
        "hook server: completed",
        "hook consumer: completed",
        "hook buffer: completed",
        "hook refresher: completed",
    ] {
        assert!(ended.out().contains(line), "no {line:?} in {}", ended.out());
    }
}

#[test]
fn a_failing_task_drains_the_service_and_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (service, _) = worker_service(dir.path(), &["--fail-after", "1s"]);
    let ended = service.finish();
    assert_eq!(ended.code, 1, "{}", ended.out());
    let why = "vital task consumer failed: queue: connection reset by broker";
    assert!(ended.out().contains(why), "{}", ended.out());
    // The others still stopped in their phases.
    assert!(
        ended.out().contains("hook refresher: completed"),
        "{}",
        ended.out()
    );
}

#[test]
fn a_hung_task_times_out_in_its_phase_and_the_service_still_ends_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let (service, _) = worker_service(dir.path(), &["--hang", "--grace-period", "25s"]);
    let start = Instant::now();
    service.signal(Sig::TERM);
    let ended = service.finish();
    assert_eq!(ended.code, 2, "{}", ended.out());
    assert!(
        ended.out().contains("hook refresher: timed out"),
        "{}",
        ended.out()
    );
    // Drain delay, then `close`'s 3 s, then the linger: well inside the grace period.
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn as_a_prestop_target_terminate_returns_once_the_service_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let (service, _) = worker_service(dir.path(), &[]);
    prestop(Command::new(deputy()), dir.path());
    let ended = service.finish();
    assert_eq!(ended.code, 0, "{}", ended.out());
}

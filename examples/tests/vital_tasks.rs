//! http-service's vital task, `refresher` (`--fail-after`, `--panic-after`): the service
//! serves until the task fails, then drains as usual (requests still answered through the
//! drain delay) and exits 1, its report, its log and its termination message naming the
//! task and the error.

use std::time::Duration;

mod support;

use support::{http_service, http_status};

/// http-service with `flag 1s` and a drain delay of 1 s, run to its end: its exit code,
/// stdout, stderr and termination message, and whether it answered a request before the
/// failure and one during the drain.
fn run_until_the_task_fails(flag: &str) -> (i32, String, String, String, [u16; 2]) {
    let dir = tempfile::tempdir().unwrap();
    let termination = dir.path().join("termination-log");
    let (mut service, port) = http_service(
        dir.path(),
        &[flag, "1s", "--drain-delay", "1s"],
        &[("DEPUTY_TERMINATION_LOG", termination.as_os_str())],
    );
    let before = http_status(port, "GET", "/");
    service.expect_err("vital task refresher");
    let during = http_status(port, "GET", "/");
    // With --panic-after, the panic's own message is on stderr too.
    let ended = service.finish_even_panicking();
    let message = std::fs::read_to_string(&termination).unwrap_or_default();
    let (code, out, err) = ended.texts();
    (code, out, err, message, [before, during])
}

#[test]
fn a_failing_vital_task_drains_the_service_and_exits_1_naming_it() {
    let (code, out, err, message, answers) = run_until_the_task_fails("--fail-after");
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(
        answers,
        [200, 200],
        "served before the failure and through the drain delay"
    );
    let why = "vital task refresher failed: cache refresh: upstream unavailable";
    assert!(out.contains(&format!("reason: {why}")), "{out}");
    assert!(out.contains("hook refresher: failed"), "{out}");
    assert!(out.contains("drain: drained"), "{out}");
    assert!(
        err.contains(&format!("{why} (--fail-after); shutting down")),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(message.starts_with("exit code 1"), "{message}");
    assert!(message.contains(why), "{message}");
}

#[test]
fn a_panicking_vital_task_drains_the_service_and_exits_1_naming_it() {
    let (code, out, err, message, answers) = run_until_the_task_fails("--panic-after");
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(answers, [200, 200]);
    let why = "vital task refresher panicked: cache refresh: index out of range";
    assert!(out.contains(&format!("reason: {why}")), "{out}");
    assert!(out.contains("hook refresher: panicked"), "{out}");
    assert!(err.contains(why), "{err}");
    assert!(message.contains(why), "{message}");
}

#[test]
fn without_the_flags_there_is_no_vital_task_and_a_shutdown_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (service, _) = http_service(dir.path(), &["--drain-delay", "0s"], &[]);
    std::thread::sleep(Duration::from_millis(1500)); // past when a refresher would fail
    service.signal(rustix::process::Signal::TERM);
    let ended = service.finish();
    assert_eq!(ended.code, 0, "{}", ended.err());
    assert!(!ended.out().contains("refresher"), "{}", ended.out());
}

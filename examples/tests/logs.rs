//! Logs fit for a cluster: no colour escapes when stderr is not a terminal (a container's
//! log file), and one JSON object per line with `DEPUTY_LOG_FORMAT=json`, from the examples
//! (tracing-subscriber) and from `deputy run`'s own lines alike.

use std::ffi::OsStr;
use std::process::Command;

mod support;

use rustix::process::Signal;
use support::deputy;

/// http-service's stderr, from start to a SIGTERM's end, with `env` set.
fn http_service_logs(env: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(&str, &OsStr)> = env.iter().map(|(k, v)| (*k, OsStr::new(*v))).collect();
    let (service, _) = support::http_service(dir.path(), &["--drain-delay", "0s"], &env);
    service.signal(Signal::TERM);
    let ended = service.finish();
    assert_eq!(ended.code, 0, "{}", ended.err());
    ended.err
}

/// Fails unless every line is a JSON object in tracing-subscriber's layout; returns the
/// messages.
fn messages(lines: &[String]) -> Vec<String> {
    assert!(!lines.is_empty(), "no log lines");
    lines
        .iter()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
            for key in ["timestamp", "level"] {
                assert!(value[key].is_string(), "no {key} in {line}");
            }
            value["fields"]["message"]
                .as_str()
                .unwrap_or_else(|| panic!("no fields.message in {line}"))
                .to_owned()
        })
        .collect()
}

#[test]
fn logs_have_no_colour_escapes_off_a_terminal() {
    let lines = http_service_logs(&[]);
    let text = lines.join("\n");
    assert!(text.contains("shutdown complete"), "{text}");
    assert!(!text.contains('\u{1b}'), "escape sequences in:\n{text:?}");
}

#[test]
fn deputy_log_format_json_gives_one_object_per_line() {
    let lines = http_service_logs(&[("DEPUTY_LOG_FORMAT", "json")]);
    let messages = messages(&lines);
    assert!(
        messages.iter().any(|m| m == "shutdown complete"),
        "{messages:?}"
    );
}

#[test]
fn deputy_runs_own_lines_follow_the_format_too() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(deputy())
        .args(["run", "--ipc-dir"])
        .arg(dir.path())
        .args(["--", "sh", "-c", "exit 3"])
        .env("DEPUTY_LOG_FORMAT", "json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_owned)
        .collect();
    let messages = messages(&lines);
    assert!(
        messages.iter().any(|m| m.ends_with("exited with code 3")),
        "{messages:?}"
    );
    // A bad value is said, and text is written.
    let out = Command::new(deputy())
        .args(["run", "--ipc-dir"])
        .arg(dir.path())
        .args(["--", "sh", "-c", "exit 3"])
        .env("DEPUTY_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("DEPUTY_LOG_FORMAT=xml is not a log format"),
        "{err}"
    );
    assert!(err.contains("deputy: process "), "{err}");
}

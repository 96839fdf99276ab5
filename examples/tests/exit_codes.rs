//! Exit codes that tell the truth: what `deputy terminate` (the preStop) and `/shutdown`
//! report is the code `deputy run` then exits with. (That `deputy terminate` exits 0 only
//! for a shutdown that was done cleanly is in ipc.rs, with the connection dropped.)

use std::path::Path;
use std::process::{Command, Output};

mod support;

use support::{Proc, deputy, free_port, http_request, text};

/// `deputy run` in `dir` with `options`, running `sh -c script`, once the child said `ready`.
fn supervise(dir: &Path, options: &[&str], script: &str) -> Proc {
    let mut command = Command::new(deputy());
    command
        .args(["run", "--drain-delay", "0s", "--ipc-dir"])
        .arg(dir)
        .args(options)
        .args(["--", "sh", "-c", script]);
    let mut run = Proc::spawn(command);
    run.expect_out("ready");
    run
}

/// `deputy terminate --ipc-dir DIR`, as the preStop hook runs it.
fn terminate(dir: &Path) -> Output {
    Command::new(deputy())
        .args(["terminate", "--ipc-dir"])
        .arg(dir)
        .output()
        .unwrap()
}

/// A child that loops until a signal; `on_term` is its TERM trap (empty: none).
fn child(on_term: &str) -> String {
    let trap = if on_term.is_empty() {
        String::new()
    } else {
        format!("trap '{on_term}' TERM; ")
    };
    format!("{trap}echo ready; while :; do sleep 0.05; done")
}

#[test]
fn the_prestop_reports_the_code_deputy_run_exits_with() {
    for (on_term, options, code) in [
        // Killed by SIGTERM: 128 + 15, unmapped.
        ("", &[][..], 143),
        // Exits 3 on TERM.
        ("exit 3", &[], 3),
        // Mapped to success.
        ("", &["--map-exit", "143"], 0),
        // Ignores TERM: SIGKILL at the end of the grace period, 128 + 9.
        ("", &["--grace", "1s"][..], 137),
    ] {
        let on_term = if code == 137 { "" } else { on_term };
        let script = if code == 137 {
            "trap '' TERM; echo ready; while :; do sleep 0.05; done".to_owned()
        } else {
            child(on_term)
        };
        let dir = tempfile::tempdir().unwrap();
        let run = supervise(dir.path(), options, &script);
        let out = terminate(dir.path());
        let said = text(&out.stdout);
        let ended = run.finish();
        assert_eq!(ended.code, code, "{options:?} {on_term}: {}", ended.err());
        assert!(
            said.contains(&format!("exit code {code}")),
            "deputy run exited {code}; the preStop said: {said}"
        );
    }
}

#[test]
fn the_shutdown_endpoint_reports_the_code_deputy_run_exits_with() {
    let dir = tempfile::tempdir().unwrap();
    let health = free_port();
    let token = "a-token-of-sixteen-or-more";
    let mut command = Command::new(deputy());
    command
        .args(["run", "--drain-delay", "0s", "--health-port"])
        .arg(health.to_string())
        .arg("--ipc-dir")
        .arg(dir.path())
        .env("DEPUTY_SHUTDOWN_TOKEN", token)
        .args(["--", "sh", "-c", &child("exit 3")]);
    let mut run = Proc::spawn(command);
    run.expect_out("ready");
    let (status, body) = http_request(health, "POST", "/shutdown", &[("x-deputy-token", token)]);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(answer["exit_code"], 3, "{body}");
    assert_eq!(run.finish().code, 3);
}

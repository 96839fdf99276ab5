//! `deputy run --stop-command` and `--stop-url`: the child is asked to stop its own way, and
//! deputy falls back to the stop signal when that fails. The children are Python programs
//! that say how they were asked: a signal (USR1 is their own way, TERM the fallback), or a
//! POST to their own shutdown endpoint.

use std::path::PathBuf;
use std::process::Command;

mod support;

use rustix::process::Signal as Sig;
use support::{Proc, deputy, free_port};

/// `signals.py`: exits 3 on SIGUSR1 (its own way), 99 on SIGTERM (the fallback).
const SIGNALS: &str = r#"
import signal, sys, time
def on(number, frame):
    print("child: got", signal.Signals(number).name, flush=True)
    sys.exit(3 if number == signal.SIGUSR1 else 99)
signal.signal(signal.SIGUSR1, on)
signal.signal(signal.SIGTERM, on)
print("child: started", flush=True)
while True:
    time.sleep(1)
"#;

/// `quit-server.py PORT`: POST /quitquitquit answers 200 and exits 5; anything else 404;
/// SIGTERM exits 99.
const QUIT_SERVER: &str = r#"
import http.server, os, signal, sys, threading
def on_term(number, frame):
    print("child: got SIGTERM", flush=True)
    os._exit(99)
signal.signal(signal.SIGTERM, on_term)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        quit = self.path == "/quitquitquit"
        self.send_response(200 if quit else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()
        if quit:
            print("child: got POST", self.path, flush=True)
            threading.Timer(0.2, lambda: os._exit(5)).start()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print("child: started", flush=True)
server.serve_forever()
"#;

/// `script` written to a temporary directory (kept alive by the returned guard), or `None`
/// (said) without python3.
fn python(name: &str, script: &str) -> Option<(tempfile::TempDir, PathBuf)> {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipped: needs python3");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, script).unwrap();
    Some((dir, path))
}

/// `deputy run --drain-delay 0s --no-control-socket ARGS -- python3 SCRIPT CHILD_ARGS`,
/// stopped with SIGTERM once the child has started: the exit code, stdout and stderr.
fn stop_with(args: &[&str], script: &PathBuf, child_args: &[&str]) -> (i32, String, String) {
    let mut run = Command::new(deputy());
    run.args(["run", "--drain-delay", "0s", "--no-control-socket"])
        .args(args)
        .args(["--", "python3"])
        .arg(script)
        .args(child_args);
    let mut deputy = Proc::spawn(run);
    deputy.expect_out("child: started");
    deputy.signal(Sig::TERM);
    deputy.finish().texts()
}

#[test]
fn stop_command_asks_the_child_its_own_way() {
    let Some((_dir, script)) = python("signals.py", SIGNALS) else {
        return;
    };
    let command = "sh -c 'kill -USR1 $DEPUTY_CHILD_PID'";
    let (code, out, err) = stop_with(&["--stop-command", command], &script, &[]);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(out.contains("child: got SIGUSR1"), "{out}");
    assert!(!out.contains("SIGTERM"), "{out}");
    assert!(
        err.contains("ran `sh -c 'kill -USR1 $DEPUTY_CHILD_PID'` to stop process"),
        "{err}"
    );
}

#[test]
fn a_failing_stop_command_falls_back_to_the_stop_signal() {
    let Some((_dir, script)) = python("signals.py", SIGNALS) else {
        return;
    };
    for (command, said) in [
        ("false", "`false` failed (exit code 1)"),
        (
            "no-such-command --now",
            "cannot run no-such-command: command not found",
        ),
    ] {
        let (code, out, err) = stop_with(&["--stop-command", command], &script, &[]);
        assert_eq!(code, 99, "{command}: {out}\n{err}");
        assert!(out.contains("child: got SIGTERM"), "{command}: {out}");
        assert!(
            err.contains(said) && err.contains("sent SIGTERM"),
            "{command}: {err}"
        );
    }
}

#[test]
fn stop_url_posts_to_the_childs_own_endpoint() {
    let Some((_dir, script)) = python("quit-server.py", QUIT_SERVER) else {
        return;
    };
    let port = free_port().to_string();
    let url = format!("http://127.0.0.1:{port}/quitquitquit");
    let (code, out, err) = stop_with(&["--stop-url", &url], &script, &[&port]);
    assert_eq!(code, 5, "{out}\n{err}");
    assert!(out.contains("child: got POST /quitquitquit"), "{out}");
    assert!(!out.contains("SIGTERM"), "{out}");
    assert!(err.contains("answered 200 OK"), "{err}");
}

#[test]
fn a_stop_url_that_does_not_answer_2xx_falls_back_to_the_stop_signal() {
    let Some((_dir, script)) = python("quit-server.py", QUIT_SERVER) else {
        return;
    };
    let port = free_port().to_string();
    let url = format!("http://127.0.0.1:{port}/nope");
    let (code, out, err) = stop_with(&["--stop-url", &url], &script, &[&port]);
    assert_eq!(code, 99, "{out}\n{err}");
    assert!(
        err.contains("answered 404 Not Found") && err.contains("sent SIGTERM"),
        "{err}"
    );
}

#[test]
fn stop_ways_are_checked_before_the_child_starts() {
    for (args, said) in [
        (
            &["--stop-command", "a", "--stop-url", "http://127.0.0.1:1/"][..],
            "cannot be used with",
        ),
        (&["--stop-url", "https://127.0.0.1/quit"], "only http://"),
        (&["--stop-command", "sh -c 'unclosed"], "--stop-command"),
        (&["--stop-timeout", "0s"], "more than 0s"),
    ] {
        let out = Command::new(deputy())
            .arg("run")
            .args(args)
            .args(["--", "sh", "-c", "echo started"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(said), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: the child started");
    }
}

//! `deputy run --notify`: systemd's notify protocol, with a stand-in child in Python that
//! sends, as datagrams to `$NOTIFY_SOCKET`, the lines the test writes to its stdin (as any
//! sd_notify client would), and on SIGTERM exits, ignores it, or asks for more time.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{ChildStdin, Command};

mod support;

use rustix::process::Signal as Sig;
use support::{Proc, deputy, free_port, http_request, http_status};

/// `notify-child.py ON_TERM`: sends each stdin line (`\n` written as `\\n` for a datagram of
/// several lines) to NOTIFY_SOCKET. ON_TERM: `exit` (exit 99), `ignore`, or `extend USEC
/// SECONDS` (send EXTEND_TIMEOUT_USEC=USEC, exit 7 after SECONDS).
const CHILD: &str = r#"
import os, signal, socket, sys, time
address = os.environ["NOTIFY_SOCKET"]
def send(message):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), address)
def on_term(number, frame):
    print("notify-child: got TERM", flush=True)
    if sys.argv[1] == "exit":
        sys.exit(99)
    if sys.argv[1] == "extend":
        send(f"EXTEND_TIMEOUT_USEC={sys.argv[2]}")
        time.sleep(float(sys.argv[3]))
        sys.exit(7)
signal.signal(signal.SIGTERM, on_term)
print("notify-child: started", os.environ.get("WATCHDOG_USEC", "-"), flush=True)
for line in sys.stdin:
    send(line.rstrip("\n").replace("\\n", "\n"))
while True:
    time.sleep(1)
"#;

/// A `deputy run --notify` with the stand-in, its stdin, and the control directory.
struct Notified {
    deputy: Proc,
    child: ChildStdin,
    dir: tempfile::TempDir,
    /// The child's first line (it shows its WATCHDOG_USEC).
    started: String,
}

impl Notified {
    /// `deputy run --notify --drain-delay 0s --ipc-dir DIR ARGS -- python3 CHILD ON_TERM`, once
    /// the child has started; `None` (said) without python3.
    fn start(args: &[&str], on_term: &[&str]) -> Option<Notified> {
        if Command::new("python3").arg("--version").output().is_err() {
            eprintln!("skipped: needs python3 for the sd_notify stand-in");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("notify-child.py");
        std::fs::write(&script, CHILD).unwrap();
        let mut run = Command::new(deputy());
        run.args(["run", "--notify", "--drain-delay", "0s", "--ipc-dir"])
            .arg(dir.path())
            .args(args)
            .args(["--", "python3"])
            .arg(&script)
            .args(on_term);
        let (mut deputy, child) = Proc::spawn_with_stdin(run);
        let started = deputy.expect_out("notify-child: started");
        Some(Notified {
            deputy,
            child,
            dir,
            started,
        })
    }

    /// The child sends `message` (one datagram).
    fn send(&mut self, message: &str) {
        writeln!(self.child, "{message}").unwrap();
    }

    /// `deputy status` for this deputy: its line.
    fn status(&self) -> String {
        let out = Command::new(deputy())
            .args(["status", "--ipc-dir"])
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// SIGTERM, then the exit code and stderr.
    fn stop(self) -> (i32, String) {
        self.deputy.signal(Sig::TERM);
        let ended = self.deputy.finish();
        (ended.code, ended.err())
    }
}

#[test]
fn readiness_waits_for_ready_and_status_and_stopping_are_heard() {
    let health = free_port();
    let Some(mut run) = Notified::start(&["--health-port", &health.to_string()], &["exit"]) else {
        return;
    };
    run.send("STATUS=loading 3 of 7 models");
    let deadline = std::time::Instant::now() + support::BOUND;
    while !run.status().contains("loading 3 of 7 models") {
        assert!(std::time::Instant::now() < deadline, "{}", run.status());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The status came after the child started; it is not ready yet.
    assert_eq!(http_status(health, "GET", "/health/ready"), 503);
    let (_, body) = http_request(health, "GET", "/health/status", &[]);
    assert!(
        body.contains(r#""message":"loading 3 of 7 models""#),
        "{body}"
    );
    run.send("READY=1\\nSTATUS=serving");
    run.deputy.expect_err("ready: process");
    assert_eq!(http_status(health, "GET", "/health/ready"), 200);
    assert!(run.status().contains("ready, live, 0 in flight: serving"));
    run.send("RELOADING=1");
    run.deputy.expect_err("is reloading (RELOADING=1)");
    assert_eq!(http_status(health, "GET", "/health/ready"), 503);
    run.send("READY=1");
    run.deputy.expect_err("ready: process");
    run.send("STOPPING=1");
    run.deputy
        .expect_err("is stopping (STOPPING=1): readiness off");
    assert_eq!(http_status(health, "GET", "/health/ready"), 503);
    let (code, err) = run.stop();
    assert_eq!(code, 99, "{err}");
}

#[test]
fn liveness_fails_when_the_child_stops_feeding_its_watchdog() {
    let health = free_port();
    let args = ["--health-port", &health.to_string(), "--watchdog", "2s"];
    let Some(mut run) = Notified::start(&args, &["exit"]) else {
        return;
    };
    assert_eq!(run.started, "notify-child: started 2000000");
    // Before READY=1 the watchdog does not run (as systemd's starts after start-up).
    assert_eq!(http_status(health, "GET", "/health/live"), 200);
    run.send("READY=1");
    run.deputy.expect_err("ready: process");
    assert_eq!(http_status(health, "GET", "/health/live"), 200);
    run.deputy
        .expect_err("sent no WATCHDOG=1 for 2s: liveness off");
    assert_eq!(http_status(health, "GET", "/health/live"), 503);
    run.send("WATCHDOG=1");
    run.deputy.expect_err("feeds its watchdog again");
    assert_eq!(http_status(health, "GET", "/health/live"), 200);
    run.send("WATCHDOG=trigger");
    run.deputy.expect_err("sent WATCHDOG=trigger: liveness off");
    assert_eq!(http_status(health, "GET", "/health/live"), 503);
    assert!(run.status().contains("not live"));
    let (code, err) = run.stop();
    assert_eq!(code, 99, "{err}");
}

#[test]
fn extend_timeout_usec_extends_the_stop_timeout() {
    let args = ["--stop-timeout", "1s", "--grace", "20s"];
    let Some(run) = Notified::start(&args, &["extend", "4000000", "2.5"]) else {
        return;
    };
    let (code, err) = run.stop();
    assert_eq!(code, 7, "{err}");
    assert!(
        err.contains("asked for 4s more to stop (EXTEND_TIMEOUT_USEC)"),
        "{err}"
    );
    assert!(!err.contains("SIGKILL"), "{err}");
}

#[test]
fn without_an_extension_the_stop_timeout_ends_in_sigkill() {
    let args = ["--stop-timeout", "1s", "--grace", "20s"];
    let Some(run) = Notified::start(&args, &["ignore"]) else {
        return;
    };
    let (code, err) = run.stop();
    assert_eq!(code, 128 + 9, "{err}");
    assert!(err.contains("did not exit within 1s"), "{err}");
}

#[test]
fn an_extension_never_goes_past_the_grace_period() {
    let args = ["--stop-timeout", "1s", "--grace", "3s"];
    let Some(run) = Notified::start(&args, &["extend", "60000000", "60"]) else {
        return;
    };
    let started = std::time::Instant::now();
    let (code, err) = run.stop();
    assert_eq!(code, 128 + 9, "{err}");
    assert!(err.contains("past the grace period: it gets"), "{err}");
    assert!(err.contains("the grace period of 3s is over"), "{err}");
    assert!(started.elapsed() < support::BOUND, "{err}");
}

#[test]
fn only_the_childs_tree_is_heard() {
    let health = free_port();
    let Some(mut run) = Notified::start(&["--health-port", &health.to_string()], &["exit"]) else {
        return;
    };
    let socket = notify_socket(run.dir.path(), run.deputy.pid());
    UnixDatagram::unbound()
        .unwrap()
        .send_to(b"READY=1", &socket)
        .unwrap();
    run.deputy
        .expect_err("ignoring notify messages from process");
    assert_eq!(http_status(health, "GET", "/health/ready"), 503);
    run.send("READY=1");
    run.deputy.expect_err("ready: process");
    assert_eq!(http_status(health, "GET", "/health/ready"), 200);
    let (code, err) = run.stop();
    assert_eq!(code, 99, "{err}");
    assert!(!socket.exists(), "the notify socket is removed at exit");
}

fn notify_socket(dir: &Path, pid: u32) -> std::path::PathBuf {
    dir.join(format!("deputy.{pid}.notify"))
}

#[test]
fn watchdog_needs_notify_and_notify_is_the_only_readiness() {
    for args in [
        &["--watchdog", "10s", "--", "true"][..],
        &["--notify", "--ready-port", "8080", "--", "true"],
        &["--notify", "--watchdog", "0s", "--", "true"],
    ] {
        let out = Command::new(deputy())
            .arg("run")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
}

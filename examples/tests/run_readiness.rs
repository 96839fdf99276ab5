//! `deputy run`'s readiness and drain delay from the child's side: ready once it listens
//! (--ready-port) or answers (--ready-url), and a drain delay that waits out new connections
//! to its port (--drain-delay-max).

use std::process::Command;
use std::time::Duration;

mod support;

use rustix::process::Signal as Sig;
use support::run::{assert_said, deputy_run, run_to_end};
use support::{Proc, deputy as deputy_bin, example, free_port, http_status};

#[test]
fn with_ready_port_readiness_waits_for_the_child_to_listen() {
    // The child listens only once the test writes to a FIFO: until then deputy must say
    // "not ready", then "ready", then "not ready" again from the first signal on.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("go");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let (port, health) = (free_port(), free_port());
    let script = format!(
        "echo started; read go < {}; exec {} --port {port}",
        fifo.display(),
        example("plain-server").display()
    );
    let mut deputy = deputy_run(&[
        "--no-control-socket",
        "--drain-delay",
        "1s",
        "--health-port",
        &health.to_string(),
        "--ready-port",
        &port.to_string(),
        "--",
        "sh",
        "-c",
        &script,
    ]);
    deputy.expect_out("started");
    assert_eq!(http_status(health, "GET", "/health/ready"), 503);
    std::fs::write(&fifo, "go\n").unwrap();
    deputy.expect_out("plain-server: listening");
    deputy.expect_err("ready: the child accepts connections on port");
    assert_eq!(http_status(health, "GET", "/health/ready"), 200);
    deputy.signal(Sig::TERM);
    deputy.expect_err("readiness off");
    assert_eq!(http_status(health, "GET", "/health/ready"), 503);
    let (code, _, err) = deputy.finish().texts();
    assert_eq!(code, 128 + 15, "{err}");
}

/// An HTTP server in Python whose /ready answers 503 until the file `argv[2]` exists, then
/// 200: `ready-server.py PORT FILE`.
const READY_SERVER: &str = r#"
import http.server, os, sys
port, flag = int(sys.argv[1]), sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/ready" and os.path.exists(flag)
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()
        print("ready-server: answered %d" % (200 if ok else 503), flush=True)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", port), Handler)
print("ready-server: listening", flush=True)
server.serve_forever()
"#;

#[test]
fn with_ready_url_readiness_follows_the_childs_own_answer() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipped: needs python3");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ready-server.py");
    std::fs::write(&script, READY_SERVER).unwrap();
    let flag = dir.path().join("ready");
    let (port, health) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{port}/ready");
    let mut deputy = deputy_run(&[
        "--no-control-socket",
        "--drain-delay",
        "0s",
        "--health-port",
        &health.to_string(),
        "--ready-url",
        &url,
        "--",
        "python3",
        script.to_str().unwrap(),
        &port.to_string(),
        flag.to_str().unwrap(),
    ]);
    deputy.expect_out("ready-server: listening");
    // The port accepts connections, but the URL says 503 to deputy's check: not ready.
    deputy.expect_out("ready-server: answered 503");
    assert_eq!(http_status(port, "GET", "/ready"), 503);
    assert_eq!(http_status(health, "GET", "/health/ready"), 503);
    std::fs::write(&flag, "").unwrap();
    deputy.expect_err("ready: http://127.0.0.1");
    assert_eq!(http_status(health, "GET", "/health/ready"), 200);
    deputy.signal(Sig::TERM);
    let (code, _, err) = deputy.finish().texts();
    assert_eq!(code, 128 + 15, "{err}");
}

#[test]
fn ready_url_takes_only_http_urls_and_not_with_ready_port() {
    let (code, _, err) = run_to_end(&["--ready-url", "https://x/ready", "--", "true"]);
    assert_eq!(code, 2, "{err}");
    assert_said(&err, &["only http://"]);
    let (code, _, _) = run_to_end(&[
        "--ready-url",
        "http://127.0.0.1:1/ready",
        "--ready-port",
        "1",
        "--",
        "true",
    ]);
    assert_eq!(code, 2);
}

#[test]
fn an_adaptive_drain_delay_waits_out_new_connections_to_the_childs_port() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("termination-log");
    let port = free_port();
    let mut command = Command::new(deputy_bin());
    command
        .args([
            "run",
            "--no-control-socket",
            "--grace",
            "20s",
            "--ready-port",
        ])
        .arg(port.to_string())
        .args([
            "--drain-delay",
            "1s",
            "--drain-delay-max",
            "10s",
            "--quiet-period",
            "1s",
        ])
        .args(["--map-exit", "143", "--"])
        .arg(example("plain-server"))
        .args(["--port", &port.to_string()])
        .env("DEPUTY_TERMINATION_LOG", &log);
    let mut deputy = Proc::spawn(command);
    deputy.expect_out("plain-server: listening");
    deputy.expect_err("ready: the child accepts connections");
    // New clients for 2 s after the signal, a new connection each 50 ms: endpoints still
    // sending traffic. A fixed 1 s delay would stop plain-server under them.
    let started = std::time::Instant::now();
    deputy.signal(Sig::TERM);
    let mut failed = 0;
    while started.elapsed() < Duration::from_secs(2) {
        if support::http_status(port, "GET", "/") != 200 {
            failed += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let ended = deputy.finish();
    let took = started.elapsed();
    assert_eq!(failed, 0, "requests failed while traffic still came");
    assert_eq!(ended.code, 0, "{}", ended.err());
    // Over after the traffic and a quiet second, well before the 10 s maximum.
    assert!(took < Duration::from_secs(9), "{took:?}");
    // The report saw the last one, about 2 s after the signal (it looks every 100 ms).
    let message = std::fs::read_to_string(&log).unwrap();
    let last: f64 = message
        .split_once("last new connection ")
        .and_then(|(_, rest)| rest.split_once('s'))
        .and_then(|(seconds, _)| seconds.parse().ok())
        .unwrap_or_else(|| panic!("no last new connection in: {message}"));
    assert!((1.5..3.0).contains(&last), "{message}");
}

/// `--ready-while-draining` (Kubernetes' serving terminating endpoints): readiness stays on
/// through the drain delay, with the child still serving, and turns off when the child is
/// asked to stop.
#[test]
fn ready_while_draining_keeps_readiness_until_the_child_is_stopped() {
    let (port, health) = (free_port(), free_port());
    let mut deputy = deputy_run(&[
        "--ready-while-draining",
        "--drain-delay",
        "2s",
        "--health-port",
        &health.to_string(),
        "--ready-port",
        &port.to_string(),
        "--",
        "sh",
        "-c",
        // Ignores the stop signal for a second, so that the stop is seen from outside.
        &format!(
            "trap 'sleep 1; exit 0' TERM; {} --port {port} & wait; wait",
            example("plain-server").display()
        ),
    ]);
    deputy.expect_out("plain-server: listening");
    deputy.expect_err("ready: the child accepts connections on port");
    deputy.signal(Sig::TERM);
    deputy.expect_err("ready until the drain is over");
    // The drain delay: still ready, and the child still answers.
    assert_eq!(http_status(health, "GET", "/health/ready"), 200);
    assert_eq!(http_status(port, "GET", "/"), 200);
    deputy.expect_err("sent SIGTERM to process");
    assert_eq!(http_status(health, "GET", "/health/ready"), 503);
    let (code, _, err) = deputy.finish().texts();
    assert_eq!(code, 0, "{err}");
}

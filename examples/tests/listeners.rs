//! `serve` on other listeners than a TCP port, with curl as the client: http-service on a
//! Unix-domain socket (`--unix`, `curl --unix-socket`) and on a socket handed over by
//! socket activation (`systemd-socket-activate`). On each: HTTP/1 and HTTP/2 (prior
//! knowledge) answer; at SIGTERM a request in flight finishes, a new one is still served
//! through the drain delay, and the service exits 0.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod support;

use rustix::process::Signal as Sig;
use support::{BOUND, Proc, example, free_port, text};

/// `curl -s ARGS`, with a bound.
fn curl(args: &[&str]) -> std::process::Child {
    Command::new("curl")
        .args(["-s", "--max-time", "20"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("curl runs")
}

/// What curl printed, if it succeeded.
fn body(child: std::process::Child) -> Result<String, String> {
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    if status.success() {
        Ok(text(&stdout))
    } else {
        Err(format!("curl: {status}: {}", text(&stderr)))
    }
}

/// Whether `program` is here, saying "skipped" when not.
fn has(program: &str) -> bool {
    let here = Command::new(program).arg("--version").output().is_ok();
    if !here {
        eprintln!("skipped: needs {program}");
    }
    here
}

/// The termination checks on a service that `through` reaches (curl's arguments that pick
/// the socket, and the URL's authority).
fn serves_and_drains(service: Proc, through: &[&str], authority: &str) {
    let url = |path: &str| format!("http://{authority}{path}");
    let get = |path: &str, extra: &[&str]| {
        let url = url(path);
        let args: Vec<&str> = through
            .iter()
            .chain(extra)
            .copied()
            .chain([url.as_str()])
            .collect();
        curl(&args)
    };
    assert_eq!(body(get("/", &[])).unwrap(), "ok\n");
    assert_eq!(
        body(get("/", &["--http2-prior-knowledge"])).unwrap(),
        "ok\n"
    );
    let in_flight = get("/work?ms=2000", &[]);
    std::thread::sleep(Duration::from_millis(300));
    let triggered = Instant::now();
    service.signal(Sig::TERM);
    std::thread::sleep(Duration::from_millis(300));
    // In the drain delay (1 s): still served.
    assert_eq!(body(get("/", &[])).unwrap(), "ok\n");
    assert_eq!(body(in_flight).unwrap(), "worked 2000 ms\n");
    let ended = service.finish();
    assert_eq!(ended.code, 0, "{}\n{}", ended.out(), ended.err());
    assert!(ended.out().contains("shutdown clean"), "{}", ended.out());
    assert!(triggered.elapsed() < BOUND);
}

#[test]
fn on_a_unix_socket_it_serves_and_drains_as_on_a_port() {
    if !has("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("http.sock");
    let mut command = Command::new(example("http-service"));
    command
        .arg("--unix")
        .arg(&socket)
        .args([
            "--health-port",
            &free_port().to_string(),
            "--drain-delay",
            "1s",
        ])
        .arg("--ipc-dir")
        .arg(dir.path());
    let mut service = Proc::spawn(command);
    let line = service.expect_out("http-service: serving on");
    assert!(
        line.contains(&format!("unix:{}", socket.display())),
        "{line}"
    );
    let socket = socket.to_str().unwrap();
    serves_and_drains(service, &["--unix-socket", socket], "localhost");
}

#[test]
fn on_a_socket_handed_over_by_socket_activation_it_serves_and_drains() {
    if !has("curl") || !has("systemd-socket-activate") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut command = Command::new("systemd-socket-activate");
    command
        .args(["-l", &format!("127.0.0.1:{port}")])
        .arg(example("http-service"))
        .args([
            "--health-port",
            &free_port().to_string(),
            "--drain-delay",
            "1s",
        ])
        .arg("--ipc-dir")
        .arg(dir.path())
        // Never bound: the activated socket comes first.
        .args(["--port", "1"]);
    let mut service = Proc::spawn(command);
    // systemd-socket-activate starts (execs) the service at the first connection.
    let first = curl(&[&format!("http://127.0.0.1:{port}/")]);
    let line = service.expect_out("http-service: serving on");
    assert!(line.contains(&format!("localhost:{port}")), "{line}");
    assert_eq!(body(first).unwrap(), "ok\n");
    serves_and_drains(service, &[], &format!("127.0.0.1:{port}"));
}

//! Who holds the drain open, seen from outside: http-service with a slow request in flight
//! (its `DrainLayer` names every request `METHOD PATH`); `deputy status` lists it while
//! draining, and when the drain times out the report and the termination message name it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

mod support;

use rustix::process::Signal;
use support::deputy;

#[test]
fn a_request_that_outlives_the_drain_is_named_in_status_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("termination-log");
    let (service, port) = support::http_service(
        dir.path(),
        &["--drain-delay", "0s", "--drain-timeout", "2s"],
        &[("DEPUTY_TERMINATION_LOG", log.as_os_str())],
    );
    // A request that takes 30 s, well past the drain timeout.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(slow, "GET /work?ms=30000 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // The request is in flight (the service counts it) before the signal.
    let deadline = Instant::now() + support::BOUND;
    while !support::deputy_status(dir.path()).contains("1 in flight") {
        assert!(Instant::now() < deadline, "the slow request never counted");
        std::thread::sleep(Duration::from_millis(10));
    }
    service.signal(Signal::TERM);
    let status = Command::new(deputy())
        .args(["status", "--ipc-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&status.stdout);
    assert!(
        line.contains("1 in flight; oldest in flight: GET /work ("),
        "{line}"
    );
    let ended = service.finish();
    let out = ended.out();
    assert!(out.contains("still in flight: GET /work ("), "{out}");
    let message = std::fs::read_to_string(&log).unwrap();
    assert!(message.contains("drain: timed out"), "{message}");
    assert!(
        message.contains("still in flight: GET /work ("),
        "{message}"
    );
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
}

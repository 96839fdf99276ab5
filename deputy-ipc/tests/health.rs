//! The HTTP endpoints over real TCP: methods, paths, HEAD, the opt-in `/shutdown`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use deputy_core::{Builder, ShutdownCoordinator};
use deputy_ipc::HealthServer;
use deputy_ipc::protocol::Response;

struct Answer {
    status: u16,
    head: String,
    body: String,
}

fn request(addr: SocketAddr, method: &str, path: &str, headers: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    Answer {
        status: head.split(' ').nth(1).unwrap().parse().unwrap(),
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn start(
    builder: Builder,
    secret: Option<&str>,
) -> (
    SocketAddr,
    deputy_core::Shutdown,
    std::thread::JoinHandle<()>,
) {
    let coordinator = builder.build(deputy_smol::AsyncIoRuntime).unwrap();
    let shutdown = coordinator.handle();
    let mut server = HealthServer::bind(&shutdown, "127.0.0.1:0".parse().unwrap()).unwrap();
    if let Some(secret) = secret {
        server = server.with_shutdown_endpoint(secret);
    }
    let addr = server.local_addr();
    let thread = std::thread::spawn(move || {
        futures::executor::block_on(futures::future::join(coordinator.run(), server.run()));
    });
    (addr, shutdown, thread)
}

fn quick() -> Builder {
    ShutdownCoordinator::builder().drain_delay(Duration::from_millis(100))
}

#[test]
fn methods_paths_and_bodies() {
    let (addr, shutdown, thread) = start(quick(), None);
    assert_eq!(request(addr, "GET", "/health/live", "").status, 200);
    let ready = request(addr, "GET", "/health/ready", "");
    assert_eq!((ready.status, ready.body.as_str()), (503, ""));
    shutdown.ready();
    assert_eq!(request(addr, "HEAD", "/health/ready", "").status, 200);
    let status = request(addr, "GET", "/health/status", "");
    assert!(status.head.contains("application/json"));
    assert!(matches!(
        Response::decode(status.body.trim().as_bytes()).unwrap(),
        Response::Status { state, ready: true, live: true, .. } if state.as_str() == "running"
    ));
    assert!(request(addr, "HEAD", "/health/status", "").body.is_empty());
    let post = request(addr, "POST", "/health/ready", "");
    assert_eq!(post.status, 405);
    assert!(post.head.to_ascii_lowercase().contains("allow: get, head"));
    assert_eq!(request(addr, "GET", "/", "").status, 404);
    assert_eq!(request(addr, "GET", "/shutdown", "").status, 404);
    shutdown.trigger("test");
    assert_eq!(request(addr, "GET", "/health/ready", "").status, 503);
    thread.join().unwrap();
}

#[test]
fn shutdown_endpoint_needs_the_token_and_answers_when_done() {
    let (addr, shutdown, thread) = start(quick(), Some("s3cret"));
    assert_eq!(request(addr, "POST", "/shutdown", "").status, 403);
    assert_eq!(
        request(addr, "POST", "/shutdown", "x-deputy-token: wrong\r\n").status,
        403
    );
    assert_eq!(
        request(addr, "DELETE", "/shutdown", "x-deputy-token: s3cret\r\n").status,
        405
    );
    assert!(
        !shutdown.is_triggered(),
        "a refused request triggered shutdown"
    );
    let answer = request(addr, "GET", "/shutdown", "x-deputy-token: s3cret\r\n");
    assert_eq!(answer.status, 200);
    match Response::decode(answer.body.trim().as_bytes()).unwrap() {
        Response::Done {
            outcome,
            exit_code,
            reason,
            ..
        } => {
            assert_eq!(
                (outcome.as_str(), exit_code, reason.as_str()),
                ("clean", 0, "http shutdown request")
            );
        }
        other => panic!("{other:?}"),
    }
    thread.join().unwrap();
}

#[test]
fn shutdown_endpoint_honours_the_wait_limit() {
    let (addr, shutdown, thread) = start(
        ShutdownCoordinator::builder().drain_delay(Duration::from_secs(2)),
        Some("s3cret"),
    );
    let answer = request(
        addr,
        "POST",
        "/shutdown?wait=100ms",
        "x-deputy-token: s3cret\r\n",
    );
    assert_eq!(answer.status, 202);
    assert!(matches!(
        Response::decode(answer.body.trim().as_bytes()).unwrap(),
        Response::Status { state, .. } if state.as_str() == "draining"
    ));
    assert!(shutdown.is_triggered());
    thread.join().unwrap();
}

#[test]
fn metrics_are_opt_in_and_show_the_shutdown_to_its_end() {
    let (addr, plain, thread) = start(quick(), None);
    assert_eq!(request(addr, "GET", "/metrics", "").status, 404);
    plain.trigger("test");
    thread.join().unwrap();

    let coordinator = quick().build(deputy_smol::AsyncIoRuntime).unwrap();
    coordinator
        .hook("close", "db", |_| async {
            Err::<(), _>("connection reset")
        })
        .unwrap();
    let shutdown = coordinator.handle();
    let server = HealthServer::bind(&shutdown, "127.0.0.1:0".parse().unwrap())
        .unwrap()
        .with_metrics();
    let addr = server.local_addr();
    let thread = std::thread::spawn(move || {
        futures::executor::block_on(futures::future::join(coordinator.run(), server.run()));
    });
    let before = request(addr, "GET", "/metrics", "");
    assert!(
        before.head.contains("application/openmetrics-text"),
        "{}",
        before.head
    );
    for line in [
        "deputy_state{state=\"running\"} 1",
        "deputy_state{state=\"done\"} 0",
        "deputy_in_flight 1",
        "deputy_triggers_total{kind=\"trigger\"} 0",
    ] {
        let _guard = (line == "deputy_in_flight 1").then(|| shutdown.guard());
        let body = request(addr, "GET", "/metrics", "").body;
        assert!(body.contains(line), "no {line:?} in:\n{body}");
    }
    shutdown.arrived(deputy_core::Arrival::Request); // before the trigger: not propagation
    shutdown.trigger("deploy");
    std::thread::sleep(Duration::from_millis(20));
    shutdown.arrived(deputy_core::Arrival::Request);
    // Done, then the server lingers a second: the final values can still be scraped.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while shutdown.report().is_none() {
        assert!(std::time::Instant::now() < deadline, "never done");
        std::thread::sleep(Duration::from_millis(5));
    }
    let after = request(addr, "GET", "/metrics", "").body;
    for line in [
        "deputy_state{state=\"done\"} 1",
        "deputy_triggers_total{kind=\"trigger\"} 1",
        "deputy_hook_outcome{phase=\"close\",hook=\"db\",outcome=\"failed\"} 1",
        "deputy_phase_outcome{phase=\"close\",outcome=\"failed\"} 1",
        "deputy_exit_code 1",
        "deputy_last_new_traffic_seconds{kind=\"request\"} 0.0",
        "deputy_drain_duration_seconds 0.1",
    ] {
        assert!(after.contains(line), "no {line:?} in:\n{after}");
    }
    assert!(after.ends_with("# EOF\n"), "{after}");
    thread.join().unwrap();
}

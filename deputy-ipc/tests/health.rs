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

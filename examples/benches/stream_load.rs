//! stream-service under load, with deputy and without: the same routes served by
//! `deputy_tokio::serve` with the drain layer (every request counted, every connection
//! watched), and by `--baseline` (axum's own `serve`, no layer). Each iteration sends 2,000
//! `GET /` over 16 keep-alive connections; the throughput ratio is the baseline's time
//! divided by deputy's (at least 0.98 is the goal). Both servers run in the same run, on
//! the same machine, one after the other.
//!
//! Run with `cargo bench -p deputy-examples --bench stream_load`.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;

const CONNECTIONS: usize = 16;
const REQUESTS: usize = 2_000;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A stream-service, once it serves; its address.
fn service(target: &Path, dir: &Path, extra: &[&str]) -> (Child, SocketAddr) {
    std::fs::create_dir_all(dir).unwrap();
    let port = free_port();
    let mut child = Command::new(target.join("examples/stream-service"))
        .args(["--port", &port.to_string(), "--health-port"])
        .arg(free_port().to_string())
        .arg("--ipc-dir")
        .arg(dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("serving"), "{line}");
    (child, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Sends `count` keep-alive `GET /` on `stream`, reading each whole response.
async fn requests(stream: &mut TcpStream, count: usize) {
    let mut buffer = vec![0u8; 4096];
    for _ in 0..count {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            .await
            .unwrap();
        let mut filled = 0;
        loop {
            let read = stream.read(&mut buffer[filled..]).await.unwrap();
            assert!(read > 0, "the server closed the connection");
            filled += read;
            if complete(&buffer[..filled]) {
                break;
            }
        }
    }
}

/// Whether `response` holds a whole response with a `Content-Length` body.
fn complete(response: &[u8]) -> bool {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .expect("a content-length");
    response.len() >= end + 4 + length
}

/// One iteration: `REQUESTS` spread over the connections, all at once.
async fn batch(connections: &mut [TcpStream]) {
    let each = REQUESTS / connections.len();
    let sends = connections.iter_mut().map(|stream| requests(stream, each));
    futures::future::join_all(sends).await;
}

fn load(c: &mut Criterion) {
    let target = support::target_dir(&["stream-service"]);
    let dir = tempfile::tempdir().unwrap();
    let (mut with, with_addr) = service(&target, &dir.path().join("deputy"), &[]);
    let (mut without, without_addr) =
        service(&target, &dir.path().join("baseline"), &["--baseline"]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connect = |addr: SocketAddr| {
        runtime.block_on(async {
            let mut connections = Vec::new();
            for _ in 0..CONNECTIONS {
                connections.push(TcpStream::connect(addr).await.unwrap());
            }
            connections
        })
    };
    let mut with_connections = connect(with_addr);
    let mut without_connections = connect(without_addr);
    let mut group = c.benchmark_group(format!(
        "stream-service, {REQUESTS} GET / over {CONNECTIONS} connections"
    ));
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(10));
    for (name, connections) in [
        ("deputy", &mut with_connections),
        ("axum alone", &mut without_connections),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    runtime.block_on(batch(connections));
                }
                start.elapsed()
            })
        });
    }
    group.finish();
    for child in [&mut with, &mut without] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

criterion_group!(benches, load);
criterion_main!(benches);

//! Connections recycled by age, under constant load: stream-service with
//! `--max-connection-age 2s --max-connection-age-grace 1s`, HTTP/1 keep-alive clients and
//! HTTP/2 clients (h2) sending a request every 20 ms for 20 s, reconnecting when told to go.
//! Every connection ends near its age (within age ± 10 % + grace), no request fails, and the
//! ends are spread (no 100 ms slice holds more than a quarter of them). The same harness
//! against the service's axum-alone baseline (`axum::serve`) sees no connection end.
//!
//! Long-lived streams move with their connection: WebSockets and event streams (over
//! HTTP/1.1 and HTTP/2) on a service with `--max-connection-age 2s` are told to move near
//! their connection's age (a 1001 close, a `reconnect` event), none is cut, and the service
//! keeps running; without a maximum age they stay.

use std::io::BufReader;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod support;

use support::{Proc, example, free_port, keep_alive_get};

const AGE: Duration = Duration::from_secs(2);
const GRACE: Duration = Duration::from_secs(1);
const HTTP1_CLIENTS: usize = 6;
const HTTP2_CLIENTS: usize = 2;

/// What the clients saw.
#[derive(Default)]
struct Seen {
    /// Each connection that the server ended: when it opened and when it ended, from the
    /// test's start.
    ended: Vec<(Duration, Duration)>,
    /// Of those, the HTTP/2 ones.
    ended_http2: usize,
    requests: u64,
    failures: Vec<String>,
}

/// An HTTP/1 keep-alive client until `until`: a request every 20 ms on one connection,
/// a new connection when the server says `Connection: close`.
fn http1_client(addr: SocketAddr, start: Instant, until: Instant, seen: Arc<Mutex<Seen>>) {
    while Instant::now() < until {
        let opened = start.elapsed();
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut stream = BufReader::new(stream);
        while Instant::now() < until {
            let result = keep_alive_get(&mut stream, "/");
            let mut seen = seen.lock().unwrap();
            seen.requests += 1;
            match result {
                Ok(true) => {
                    seen.ended.push((opened, start.elapsed()));
                    break;
                }
                Ok(false) => {}
                Err(error) => {
                    seen.failures.push(format!("HTTP/1: {error}"));
                    break;
                }
            }
            drop(seen);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// An HTTP/2 client until `until`: a request every 20 ms on one connection, a new
/// connection once the server sends GOAWAY.
async fn http2_client(addr: SocketAddr, start: Instant, until: Instant, seen: Arc<Mutex<Seen>>) {
    while Instant::now() < until {
        let opened = start.elapsed();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        while Instant::now() < until {
            // Once the server has sent GOAWAY, the client takes no new stream.
            let Ok(mut ready) = client.clone().ready().await else {
                let mut seen = seen.lock().unwrap();
                seen.ended.push((opened, start.elapsed()));
                seen.ended_http2 += 1;
                break;
            };
            let request = http::Request::get(format!("http://{addr}/"))
                .body(())
                .unwrap();
            let answer = match ready.send_request(request, true) {
                Ok((response, _)) => response.await.map(|r| r.status()),
                Err(error) => Err(error),
            };
            let gone = {
                let mut seen = seen.lock().unwrap();
                seen.requests += 1;
                match answer {
                    Ok(status) if status == 200 => false,
                    Ok(status) => {
                        seen.failures.push(format!("HTTP/2: status {status}"));
                        false
                    }
                    Err(error)
                        if error.is_go_away() && error.reason() == Some(h2::Reason::NO_ERROR) =>
                    {
                        // The GOAWAY came between `ready` and the request: refused before
                        // it was processed; a client retries it on its next connection.
                        seen.ended.push((opened, start.elapsed()));
                        seen.ended_http2 += 1;
                        true
                    }
                    Err(error) => {
                        seen.failures.push(format!("HTTP/2: {error}"));
                        false
                    }
                }
            };
            if gone {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// stream-service with `extra`, its control socket in `dir`, once it serves; its address.
fn stream_service(dir: &std::path::Path, extra: &[&str]) -> (Proc, SocketAddr) {
    let port = free_port();
    let mut args = vec![
        "--port".to_owned(),
        port.to_string(),
        "--health-port".to_owned(),
        free_port().to_string(),
        "--ipc-dir".to_owned(),
        dir.display().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let mut service = Proc::start(example("stream-service"), &args);
    service.expect_out("stream-service: serving");
    (service, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// stream-service with `extra`, under the clients' load for `load`; what they saw.
fn under_load(extra: &[&str], load: Duration) -> Seen {
    let dir = tempfile::tempdir().unwrap();
    let (service, addr) = stream_service(dir.path(), extra);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let start = Instant::now();
    let until = start + load;
    let http1: Vec<_> = (0..HTTP1_CLIENTS)
        .map(|_| {
            let seen = seen.clone();
            std::thread::spawn(move || http1_client(addr, start, until, seen))
        })
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let clients: Vec<_> = (0..HTTP2_CLIENTS)
            .map(|_| tokio::spawn(http2_client(addr, start, until, seen.clone())))
            .collect();
        for client in clients {
            client.await.unwrap();
        }
    });
    for client in http1 {
        client.join().unwrap();
    }
    drop(service);
    Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap()
}

#[test]
fn connections_end_near_their_age_spread_out_and_no_request_fails() {
    let seen = under_load(
        &[
            "--max-connection-age",
            "2s",
            "--max-connection-age-grace",
            "1s",
        ],
        Duration::from_secs(20),
    );
    println!(
        "{} requests, {} connections ended by age ({} HTTP/2), {} failures",
        seen.requests,
        seen.ended.len(),
        seen.ended_http2,
        seen.failures.len()
    );
    assert!(seen.failures.is_empty(), "{:?}", seen.failures);
    assert!(
        seen.ended_http2 >= 10,
        "{} HTTP/2 connections ended",
        seen.ended_http2
    );
    // Some 9 generations of 8 clients' connections in 20 s.
    assert!(seen.ended.len() >= 40, "{}", seen.ended.len());
    let (shortest, longest) = (AGE.mul_f64(0.9), AGE.mul_f64(1.1) + GRACE);
    let slack = Duration::from_millis(300);
    for &(opened, ended) in &seen.ended {
        let lived = ended - opened;
        assert!(
            lived + slack >= shortest && lived <= longest + slack,
            "a connection lived {lived:?}; its age is {AGE:?} ±10 %, its grace {GRACE:?}"
        );
    }
    let mut slices = std::collections::BTreeMap::<u128, usize>::new();
    for &(_, ended) in &seen.ended {
        *slices.entry(ended.as_millis() / 100).or_default() += 1;
    }
    let busiest = slices.values().copied().max().unwrap_or(0);
    assert!(
        busiest * 4 <= seen.ended.len(),
        "{busiest} of {} ends in one 100 ms slice",
        seen.ended.len()
    );
}

#[test]
fn axum_alone_never_ends_a_connection_by_age() {
    let seen = under_load(&["--baseline"], Duration::from_secs(6));
    assert!(seen.failures.is_empty(), "{:?}", seen.failures);
    assert!(seen.requests > 100);
    assert_eq!(
        seen.ended.len(),
        0,
        "axum::serve has no maximum connection age"
    );
}

/// How a long-lived stream ended, and when (from its start).
#[derive(Debug)]
enum StreamEnd {
    /// A WebSocket's close frame, with its code.
    WebSocket(u16, Duration),
    /// An event stream's `reconnect` event.
    Reconnect(Duration),
    /// Still open when the test stopped waiting.
    Open,
    /// Anything else: cut, refused (what happened, shown when the test fails).
    Failed(#[allow(dead_code)] String),
}

async fn websocket_until_close(addr: SocketAddr, wait: Duration) -> StreamEnd {
    use futures::StreamExt;
    let start = Instant::now();
    let url = format!("ws://{addr}/ws");
    let (mut socket, _) = match tokio_tungstenite::connect_async(url).await {
        Ok(connected) => connected,
        Err(error) => return StreamEnd::Failed(error.to_string()),
    };
    loop {
        match tokio::time::timeout_at((start + wait).into(), socket.next()).await {
            Err(_) => return StreamEnd::Open,
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame)))) => {
                let code = frame.map_or(0, |frame| u16::from(frame.code));
                return StreamEnd::WebSocket(code, start.elapsed());
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => return StreamEnd::Failed(format!("{other:?}")),
        }
    }
}

/// GET /events on HTTP/1.1, read until its `reconnect` event.
async fn events_http1(addr: SocketAddr, wait: Duration) -> StreamEnd {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let start = Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /events HTTP/1.1\r\nHost: pod\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + wait).into(), tcp.read(&mut buf)).await {
            Err(_) => return StreamEnd::Open,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return StreamEnd::Failed(format!(
                    "ended without a reconnect event: {}",
                    String::from_utf8_lossy(&seen)
                ));
            }
            Ok(Ok(read)) => {
                seen.extend_from_slice(&buf[..read]);
                if String::from_utf8_lossy(&seen).contains("event: reconnect") {
                    return StreamEnd::Reconnect(start.elapsed());
                }
            }
        }
    }
}

/// `count` GET /events on one HTTP/2 connection, each read until its `reconnect` event.
async fn events_http2(addr: SocketAddr, count: usize, wait: Duration) -> Vec<StreamEnd> {
    let start = Instant::now();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let streams = (0..count).map(|_| {
        let client = client.clone();
        async move {
            let mut ready = client.ready().await.unwrap();
            let request = http::Request::get(format!("http://{addr}/events"))
                .body(())
                .unwrap();
            let (response, _) = ready.send_request(request, true).unwrap();
            let mut body = response.await.unwrap().into_body();
            let mut seen = Vec::new();
            loop {
                match tokio::time::timeout_at((start + wait).into(), body.data()).await {
                    Err(_) => return StreamEnd::Open,
                    Ok(Some(Ok(data))) => {
                        let _ = body.flow_control().release_capacity(data.len());
                        seen.extend_from_slice(&data);
                        if String::from_utf8_lossy(&seen).contains("event: reconnect") {
                            return StreamEnd::Reconnect(start.elapsed());
                        }
                    }
                    Ok(other) => return StreamEnd::Failed(format!("{other:?}")),
                }
            }
        }
    });
    futures::future::join_all(streams).await
}

/// stream-service with `extra`; WebSockets and event streams opened on it, each followed
/// until it ends or `wait` is over. How each ended, and whether the service still runs.
fn long_lived_on(extra: &[&str], wait: Duration) -> (Vec<StreamEnd>, bool) {
    let dir = tempfile::tempdir().unwrap();
    let (mut service, addr) = stream_service(dir.path(), extra);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ends = runtime.block_on(async {
        let websockets = (0..12).map(|_| tokio::spawn(websocket_until_close(addr, wait)));
        let events = (0..3).map(|_| tokio::spawn(events_http1(addr, wait)));
        let tasks: Vec<_> = websockets.chain(events).collect();
        let mut ends = events_http2(addr, 2, wait).await;
        for task in tasks {
            ends.push(task.await.unwrap());
        }
        ends
    });
    let running = service.try_wait().is_none();
    drop(service);
    (ends, running)
}

#[test]
fn long_lived_streams_are_told_to_move_at_their_connections_age_and_none_is_cut() {
    let (ends, running) = long_lived_on(
        &[
            "--max-connection-age",
            "2s",
            "--max-connection-age-grace",
            "3s",
        ],
        Duration::from_secs(8),
    );
    println!("{ends:?}");
    assert!(running, "no shutdown: the service still runs");
    let (shortest, longest) = (AGE.mul_f64(0.9), AGE.mul_f64(1.1));
    let slack = Duration::from_millis(300);
    let mut websocket_ends = Vec::new();
    for end in &ends {
        let after = match end {
            StreamEnd::WebSocket(1001, after) => {
                websocket_ends.push(*after);
                *after
            }
            StreamEnd::Reconnect(after) => *after,
            other => panic!("a stream was not told to move at its age: {other:?}\n{ends:?}"),
        };
        assert!(
            after + slack >= shortest && after <= longest + slack,
            "a stream was told to move {after:?} after it opened: its connection's age is \
             {AGE:?} ±10 %"
        );
    }
    // Spread like their connections' ages: not all at once.
    websocket_ends.sort();
    let spread = websocket_ends[websocket_ends.len() - 1] - websocket_ends[0];
    assert!(
        spread >= Duration::from_millis(100),
        "12 WebSockets told within {spread:?}"
    );
}

#[test]
fn without_a_maximum_age_long_lived_streams_stay() {
    let (ends, running) = long_lived_on(&[], Duration::from_secs(4));
    assert!(running);
    assert!(
        ends.iter().all(|end| matches!(end, StreamEnd::Open)),
        "{ends:?}"
    );
}

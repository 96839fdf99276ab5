//! Connections recycled by age, under constant load: stream-service with
//! `--max-connection-age 2s --max-connection-age-grace 1s`, HTTP/1 keep-alive clients and
//! HTTP/2 clients (h2) sending a request every 20 ms for 20 s, reconnecting when told to go.
//! Every connection ends near its age (within age ± 10 % + grace), no request fails, and the
//! ends are spread (no 100 ms slice holds more than a quarter of them). The same harness
//! against the service's axum-alone baseline (`axum::serve`) sees no connection end.

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

/// stream-service with `extra`, under the clients' load for `load`; what they saw.
fn under_load(extra: &[&str], load: Duration) -> Seen {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut args = vec![
        "--port".to_owned(),
        port.to_string(),
        "--health-port".to_owned(),
        free_port().to_string(),
        "--ipc-dir".to_owned(),
        dir.path().display().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let mut service = Proc::start(example("stream-service"), &args);
    service.expect_out("stream-service: serving");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
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

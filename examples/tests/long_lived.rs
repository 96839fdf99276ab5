//! Long-lived connections in a rolling termination: stream-service as PID 1 behind the
//! round-robin proxy, with a second backend, holding 200 WebSockets, 20 event streams and 10
//! downloads through the proxy, and HTTP/2 connections of its own. Then what Kubernetes
//! does: the preStop (`deputy terminate`) and the endpoint's removal, then SIGTERM.
//!
//! - Every WebSocket gets a 1001 close frame (no 1006, no dropped connection) and
//!   reconnects, to the other backend.
//! - The close frames are spread over the disconnect window: no 100 ms holds more than a
//!   quarter of them, and first to last spans at least half the window.
//! - Every event stream gets the `reconnect` event and a complete chunked body, and
//!   reconnects.
//! - Every download completes in full.
//! - h2c requests made during the drain succeed; an HTTP/2 connection left open gets GOAWAY
//!   before the drain delay is over (from the trigger, not at the end).
//! - The pod exits 0 before the grace period.
//!
//! The same harness against `--baseline` (axum's own graceful shutdown, no layer, no
//! notices) must find abnormal closures, cut event streams and downloads, and a late GOAWAY,
//! so the test can fail.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

mod support;

use support::proxy::{Proxy, prestop};
use support::{BOUND, Proc, example, free_port, is_root_with_unshare};

const WEBSOCKETS: usize = 200;
const EVENT_STREAMS: usize = 20;
const DOWNLOADS: usize = 10;
const DRAIN_DELAY: Duration = Duration::from_secs(2);
const WINDOW: Duration = Duration::from_secs(2);
/// What Kubernetes' terminationGracePeriodSeconds would be: the pod must be gone by then.
const GRACE: Duration = Duration::from_secs(20);
/// The endpoint's removal reaches the proxy this long after the preStop begins.
const PROPAGATION: Duration = Duration::from_millis(300);
/// A download lasts this long: from before the trigger to past the drain delay.
const DOWNLOAD_MS: u64 = 8000;

/// Starts stream-service (as PID 1 when it can), once it serves: it and its address.
fn stream_service(dir: &Path, as_pid_1: bool, extra: &[&str]) -> (Proc, SocketAddr) {
    let port = free_port();
    let args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--health-port",
        &free_port().to_string(),
        "--drain-delay",
        &format!("{}ms", DRAIN_DELAY.as_millis()),
        "--disconnect-window",
        &format!("{}ms", WINDOW.as_millis()),
        "--drain-timeout",
        "8s",
        "--grace-period",
        "19s",
        "--ipc-dir",
        dir.to_str().unwrap(),
    ]
    .iter()
    .chain(extra)
    .map(|arg| arg.to_string())
    .collect();
    let mut service = if as_pid_1 {
        Proc::start_as_pid_1(example("stream-service"), args)
    } else {
        Proc::start(example("stream-service"), args)
    };
    service.expect_out("stream-service: serving");
    (service, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// How one WebSocket client's connection ended.
#[derive(Debug)]
enum WsEnd {
    /// A close frame with this code, received at this instant; then whether the client
    /// reconnected and got a message.
    Closed {
        code: u16,
        at: Instant,
        reconnected: bool,
    },
    /// No close frame: the connection failed or was dropped (what a browser reports as 1006).
    Abnormal(String),
}

/// A WebSocket client through `proxy`: reads the numbered messages until the server
/// closes, then reconnects and waits for one message.
async fn websocket(proxy: SocketAddr, connected: Arc<tokio::sync::Barrier>) -> WsEnd {
    let mut socket = match ws_connect(proxy).await {
        Ok(socket) => socket,
        Err(error) => {
            connected.wait().await;
            return WsEnd::Abnormal(format!("connect: {error}"));
        }
    };
    connected.wait().await;
    let (code, at) = loop {
        match tokio::time::timeout(BOUND, socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => {
                let code = frame.map_or(1005, |f| u16::from(f.code));
                break (code, Instant::now());
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(error))) => return WsEnd::Abnormal(error.to_string()),
            Ok(None) => return WsEnd::Abnormal("ended without a close frame".into()),
            Err(_) => return WsEnd::Abnormal("no close frame within the bound".into()),
        }
    };
    // tungstenite answers the close frame; read on to the end of the connection.
    while let Ok(Some(Ok(_))) = tokio::time::timeout(BOUND, socket.next()).await {}
    let reconnected = match ws_connect(proxy).await {
        Ok(mut again) => {
            let first = tokio::time::timeout(BOUND, again.next()).await;
            let _ = again.close(None).await;
            matches!(first, Ok(Some(Ok(Message::Text(_)))))
        }
        Err(_) => false,
    };
    WsEnd::Closed {
        code,
        at,
        reconnected,
    }
}

async fn ws_connect(
    proxy: SocketAddr,
) -> Result<tokio_tungstenite::WebSocketStream<TcpStream>, tokio_tungstenite::tungstenite::Error> {
    let tcp = TcpStream::connect(proxy).await?;
    let (socket, _) = tokio_tungstenite::client_async("ws://proxy/ws", tcp).await?;
    Ok(socket)
}

/// One HTTP/1.1 GET through `proxy`, read to the connection's end (bounded): the whole
/// response, or what came before the error.
async fn get_to_end(proxy: SocketAddr, path: String) -> String {
    let mut answer = Vec::new();
    let read = async {
        let mut tcp = TcpStream::connect(proxy).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await?;
        tcp.read_to_end(&mut answer).await
    };
    let ended = tokio::time::timeout(BOUND, read).await;
    let mut answer = String::from_utf8_lossy(&answer).into_owned();
    match ended {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => answer.push_str(&format!("\n[error: {error}]")),
        Err(_) => answer.push_str("\n[no end within the bound]"),
    }
    answer
}

/// The start of an event stream through `proxy`: whether its first event came.
async fn first_event(proxy: SocketAddr) -> bool {
    let read = async {
        let mut tcp = TcpStream::connect(proxy).await?;
        tcp.write_all(b"GET /events HTTP/1.1\r\nHost: proxy\r\n\r\n")
            .await?;
        let mut seen = Vec::new();
        let mut buffer = [0u8; 1024];
        while !String::from_utf8_lossy(&seen).contains("data: ") {
            let read = tcp.read(&mut buffer).await?;
            if read == 0 {
                return Ok(false);
            }
            seen.extend_from_slice(&buffer[..read]);
        }
        Ok::<_, std::io::Error>(true)
    };
    matches!(tokio::time::timeout(BOUND, read).await, Ok(Ok(true)))
}

/// An HTTP/2 (prior knowledge) connection to `addr`: its request handle, and a task that
/// ends with the connection, saying when and how.
async fn h2_connect(
    addr: SocketAddr,
) -> Result<
    (
        h2::client::SendRequest<bytes::Bytes>,
        tokio::task::JoinHandle<(Instant, Result<(), h2::Error>)>,
    ),
    String,
> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (client, connection) = h2::client::handshake(tcp)
        .await
        .map_err(|e| e.to_string())?;
    let ended = tokio::spawn(async move {
        let ended = connection.await;
        (Instant::now(), ended)
    });
    Ok((client, ended))
}

/// One GET / on an HTTP/2 connection: its status.
async fn h2_get(client: h2::client::SendRequest<bytes::Bytes>) -> Result<u16, String> {
    let mut client = client.ready().await.map_err(|e| e.to_string())?;
    let request = http::Request::get("http://pod/").body(()).unwrap();
    let (response, _) = client
        .send_request(request, true)
        .map_err(|e| e.to_string())?;
    let response = response.await.map_err(|e| e.to_string())?;
    Ok(response.status().as_u16())
}

/// What one rolling termination came to.
struct Outcome {
    trigger: Instant,
    websockets: Vec<WsEnd>,
    /// Each event stream's whole response, and whether it reconnected.
    event_streams: Vec<(String, bool)>,
    downloads: Vec<String>,
    /// The statuses (or errors) of the h2c requests made during the drain.
    h2_during_drain: Vec<Result<u16, String>>,
    /// When, and how, the HTTP/2 connection opened before the trigger ended.
    h2_held: (Instant, Result<(), String>),
    /// The preStop's outcome.
    prestop: Result<(), String>,
    status: std::process::ExitStatus,
    exited_after: Duration,
    stdout: String,
    stderr: String,
}

async fn rolling_termination(baseline: bool) -> Outcome {
    let as_pid_1 = is_root_with_unshare();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let extra: &[&str] = if baseline { &["--baseline"] } else { &[] };
    let (mut pod, pod_addr) = stream_service(dir_a.path(), as_pid_1, extra);
    let (other, other_addr) = stream_service(dir_b.path(), false, &[]);
    // Every long-lived client on the pod first; then the other backend joins.
    let proxy = Proxy::start(vec![pod_addr]);
    let via = proxy.addr;
    let connected = Arc::new(tokio::sync::Barrier::new(WEBSOCKETS + 1));
    let websockets: Vec<_> = (0..WEBSOCKETS)
        .map(|_| tokio::spawn(websocket(via, connected.clone())))
        .collect();
    connected.wait().await;
    let event_streams: Vec<_> = (0..EVENT_STREAMS)
        .map(|_| {
            tokio::spawn(async move {
                let response = get_to_end(via, "/events".into()).await;
                (response, first_event(via).await)
            })
        })
        .collect();
    let downloads: Vec<_> = (0..DOWNLOADS)
        .map(|_| tokio::spawn(get_to_end(via, format!("/stream?ms={DOWNLOAD_MS}"))))
        .collect();
    let (held, held_ended) = h2_connect(pod_addr).await.expect("h2c connection");
    assert_eq!(
        h2_get(held.clone()).await,
        Ok(200),
        "h2c before the trigger"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.add(other_addr);

    // The kubelet and the endpoints controller, at the same moment.
    let trigger = Instant::now();
    let pod_pid = pod.pid();
    let kubelet = tokio::task::spawn_blocking(move || {
        let prestop = std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(PROPAGATION);
                proxy.remove(pod_addr);
            });
            let prestop = prestop(pod_pid, as_pid_1, dir_a.path());
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pod_pid as i32).unwrap(),
                rustix::process::Signal::TERM,
            );
            prestop
        });
        (proxy, prestop)
    });
    // New HTTP/2 connections during the drain delay (straight to the pod: clients that
    // have not yet seen the endpoint go).
    let mut h2_during_drain = Vec::new();
    for _ in 0..3 {
        tokio::time::sleep(DRAIN_DELAY / 4).await;
        let status = match h2_connect(pod_addr).await {
            Ok((client, _)) => h2_get(client).await,
            Err(error) => Err(error),
        };
        h2_during_drain.push(status);
    }
    let status = tokio::task::spawn_blocking(move || {
        loop {
            if let Some(status) = pod.try_wait() {
                return (status, pod);
            }
            // (Dropping the pod kills it.)
            if trigger.elapsed() > GRACE {
                pod.kill(); // SIGKILL, as the kubelet's
                return (pod.wait_exit(), pod);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let (status, pod) = status.await.unwrap();
    let exited_after = trigger.elapsed();
    let (proxy, prestop) = kubelet.await.unwrap();
    let h2_held = match tokio::time::timeout(BOUND, held_ended).await {
        Ok(Ok((at, ended))) => (at, ended.map_err(|e| e.to_string())),
        _ => (Instant::now(), Err("the connection did not end".into())),
    };
    drop(held);
    let mut outcome = Outcome {
        trigger,
        websockets: Vec::new(),
        event_streams: Vec::new(),
        downloads: Vec::new(),
        h2_during_drain,
        h2_held,
        prestop,
        status,
        exited_after,
        stdout: String::new(),
        stderr: String::new(),
    };
    for client in websockets {
        outcome.websockets.push(client.await.unwrap());
    }
    for client in event_streams {
        outcome.event_streams.push(client.await.unwrap());
    }
    for client in downloads {
        outcome.downloads.push(client.await.unwrap());
    }
    drop((proxy, other));
    let ended = pod.finish();
    (outcome.stdout, outcome.stderr) = (ended.out(), ended.err());
    outcome
}

/// Everything that went wrong, one line each (empty: the termination was clean).
fn problems(outcome: &Outcome) -> Vec<String> {
    let mut problems = Vec::new();
    let mut closes = Vec::new();
    for (i, end) in outcome.websockets.iter().enumerate() {
        match end {
            WsEnd::Closed {
                code: 1001,
                at,
                reconnected,
            } => {
                closes.push(at.duration_since(outcome.trigger));
                if !reconnected {
                    problems.push(format!("websocket {i}: did not reconnect"));
                }
            }
            WsEnd::Closed { code, .. } => {
                problems.push(format!("websocket {i}: close code {code}, not 1001"))
            }
            WsEnd::Abnormal(why) => {
                problems.push(format!("websocket {i}: abnormal closure: {why}"))
            }
        }
    }
    if let Some((span, busiest)) = spread(closes) {
        if span < WINDOW / 2 {
            problems.push(format!(
                "the close frames span {span:?}, less than half the {WINDOW:?} window"
            ));
        }
        if busiest > WEBSOCKETS / 4 {
            problems.push(format!(
                "{busiest} close frames within 100 ms (more than a quarter of {WEBSOCKETS})"
            ));
        }
    }
    for (i, (response, reconnected)) in outcome.event_streams.iter().enumerate() {
        if !(response.contains("event: reconnect") && response.contains("retry: 1000")) {
            problems.push(format!(
                "event stream {i}: no reconnect event: {}",
                tail(response)
            ));
        } else if !response.ends_with("0\r\n\r\n") {
            problems.push(format!(
                "event stream {i}: not a complete chunked body: {}",
                tail(response)
            ));
        }
        if !reconnected {
            problems.push(format!("event stream {i}: did not reconnect"));
        }
    }
    let last_chunk = format!("chunk {}\n", DOWNLOAD_MS / 100 - 1);
    for (i, response) in outcome.downloads.iter().enumerate() {
        if !(response.contains(&last_chunk) && response.ends_with("0\r\n\r\n")) {
            problems.push(format!("download {i}: cut: {}", tail(response)));
        }
    }
    for (i, status) in outcome.h2_during_drain.iter().enumerate() {
        if *status != Ok(200) {
            problems.push(format!("h2c request {i} during the drain: {status:?}"));
        }
    }
    let (at, ended) = &outcome.h2_held;
    let goaway_after = at.duration_since(outcome.trigger);
    if ended.is_err() || goaway_after >= DRAIN_DELAY {
        problems.push(format!(
            "the open HTTP/2 connection ended {goaway_after:?} after the trigger ({ended:?}): no GOAWAY from the trigger on"
        ));
    }
    if let Err(why) = &outcome.prestop {
        problems.push(why.clone());
    }
    if !outcome.status.success() || outcome.exited_after >= GRACE {
        problems.push(format!(
            "the pod exited with {:?} after {:?}: {}",
            outcome.status, outcome.exited_after, outcome.stdout
        ));
    }
    problems
}

/// How the 1001 close frames were spread: first to last, and the most within any 100 ms.
fn spread(mut closes: Vec<Duration>) -> Option<(Duration, usize)> {
    closes.sort();
    let span = *closes.last()? - *closes.first()?;
    let busiest = closes
        .iter()
        .map(|start| {
            closes
                .iter()
                .filter(|t| *t >= start && **t < *start + Duration::from_millis(100))
                .count()
        })
        .max()?;
    Some((span, busiest))
}

/// The last 120 characters of a response, for a failure's line.
fn tail(response: &str) -> String {
    let start = response.len().saturating_sub(120);
    let start = (start..response.len())
        .find(|i| response.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{:?}", &response[start..])
}

fn summary(name: &str, outcome: &Outcome, problems: &[String]) {
    let closes = outcome.websockets.iter().filter_map(|end| match end {
        WsEnd::Closed { code: 1001, at, .. } => Some(at.duration_since(outcome.trigger)),
        _ => None,
    });
    println!(
        "{name}: pod exited {:?} after {:?}; 1001 closes (span, most in 100 ms): {:?}; {} problems",
        outcome.status.code(),
        outcome.exited_after,
        spread(closes.collect()),
        problems.len()
    );
    // A count of each kind of problem ("websocket 7: abnormal closure: ..." is of the kind
    // "websocket: abnormal closure"), with its first example.
    let mut kinds: Vec<(String, usize, &str)> = Vec::new();
    for problem in problems {
        let (subject, rest) = problem.split_once(": ").unwrap_or((problem, ""));
        let subject = subject
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .trim_end();
        let kind = format!("{subject}: {}", rest.split(':').next().unwrap_or(""));
        match kinds.iter_mut().find(|(k, _, _)| *k == kind) {
            Some((_, count, _)) => *count += 1,
            None => kinds.push((kind, 1, problem)),
        }
    }
    for (kind, count, first) in kinds {
        println!("  {count} x {kind} (first: {first})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lived_clients_are_told_to_move_spread_over_the_window_and_none_is_cut() {
    let outcome = rolling_termination(false).await;
    let problems = problems(&outcome);
    summary("stream-service", &outcome, &problems);
    assert!(problems.is_empty(), "{problems:#?}\n{}", outcome.stderr);
    support::assert_no_panic(&outcome.stderr);
    assert!(
        outcome.stdout.contains(&format!(
            "{0} long-lived connections told to move, {0} moved, 0 cut",
            WEBSOCKETS + EVENT_STREAMS
        )),
        "{}",
        outcome.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_harness_against_axum_alone_sees_abnormal_closures_and_cut_streams() {
    let outcome = rolling_termination(true).await;
    let problems = problems(&outcome);
    summary("stream-service --baseline", &outcome, &problems);
    let count = |what: &str| problems.iter().filter(|p| p.contains(what)).count();
    assert!(count("abnormal closure") > 0, "{problems:#?}");
    assert!(count("no reconnect event") > 0, "{problems:#?}");
    assert!(count("no GOAWAY from the trigger on") > 0, "{problems:#?}");
    // Without the drain layer the drain does not wait for the downloads: the stop phase's
    // timeout cuts them.
    assert!(count("cut") > 0, "{problems:#?}");
}

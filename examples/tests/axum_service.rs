//! axum-service, the front door's example, with real clients of its long-lived routes: a
//! WebSocket (tokio-tungstenite) and an event stream, open when the preStop's `deputy
//! terminate` comes. The WebSocket gets a 1001 close and the stream a `reconnect` event, the
//! report says both moved, the probes say what the kubelet must see, and it exits 0. (Its
//! rolling termination under load is in rolling.rs.)

use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

mod support;

use support::run::prestop;
use support::{BOUND, Proc, deputy, example, free_port, http_status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_and_an_event_stream_are_told_to_move_and_the_service_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (port, health) = (free_port(), free_port());
    let mut service = Proc::start(
        example("axum-service"),
        [
            "--port",
            &port.to_string(),
            "--health-port",
            &health.to_string(),
            "--drain-delay",
            "500ms",
            "--disconnect-window",
            "500ms",
            "--ipc-dir",
            dir.path().to_str().unwrap(),
        ],
    );
    service.expect_out("axum-service: serving on");
    for path in ["/health/started", "/health/ready", "/health/live"] {
        assert_eq!(http_status(health, "GET", path), 200, "{path}");
    }

    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
        .await
        .unwrap();
    let first = socket.next().await.unwrap().unwrap();
    assert!(matches!(first, Message::Text(_)), "{first:?}");
    let mut events = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    events
        .write_all(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let mut events = BufReader::new(events).lines();
    while !events
        .next_line()
        .await
        .unwrap()
        .unwrap()
        .starts_with("data:")
    {}

    // The kubelet's preStop: returns once the service is done.
    let prestop = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || prestop(std::process::Command::new(deputy()), &dir)
    });
    // Readiness turns off at the trigger; a poll, bounded, for when it has.
    let start = std::time::Instant::now();
    while http_status(health, "GET", "/health/ready") != 503 {
        assert!(start.elapsed() < BOUND, "/health/ready never answered 503");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(http_status(health, "GET", "/health/started"), 200);

    let code = loop {
        match tokio::time::timeout(BOUND, socket.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(code, Some(1001));
    let mut said_reconnect = false;
    while let Ok(Ok(Some(line))) = tokio::time::timeout(BOUND, events.next_line()).await {
        said_reconnect |= line == "event: reconnect";
    }
    assert!(
        said_reconnect,
        "the event stream ended without a reconnect event"
    );
    drop(socket);

    prestop.await.unwrap();
    let ended = tokio::task::spawn_blocking(move || service.finish())
        .await
        .unwrap();
    assert_eq!(ended.code, 0, "{}", ended.err());
    assert!(
        ended
            .out()
            .contains("2 long-lived connections told to move, 2 moved, 0 cut"),
        "{}",
        ended.out()
    );
}

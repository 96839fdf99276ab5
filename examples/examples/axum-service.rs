//! An axum service, Kubernetes-ready with deputy's front door: the settings from `DEPUTY_*`
//! variables and flags, the control socket for the preStop's `deputy terminate`, the
//! kubelet's probes (`/health/live`, `/health/ready`, `/health/started`), signals, the
//! report and the termination message, the exit code. Requests in flight finish; a
//! WebSocket gets a 1001 close and an event stream a last `reconnect` event before the pod
//! goes; HTTP/2 connections get GOAWAY at the trigger. With `--max-connection-age` the
//! connections are recycled by age, the streams on them told to move then too; with
//! `--tls-cert` and `--tls-key` it serves TLS.
//!
//! ```text
//! cargo run --release --example axum-service
//! curl localhost:8080/ ; curl -N localhost:8080/events
//! ```
//!
//! Routes: `/` (ok), `/work?ms=N`, `/events` (server-sent events, one every 100 ms), `/ws`
//! (a numbered text message every 100 ms). Flags and variables: `--help`. Kubernetes:
//! `examples/k8s/axum-service.yaml`.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::Uri;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use clap::Parser;
use deputy_ipc::Deputy;
use deputy_ipc::deputy_core::{Connection, Shutdown};
use deputy_tokio::websocket::{CLOSE_WAIT, GOING_AWAY, going_away};
use deputy_tokio::{ConnectionAge, DEFAULT_SIGNALS, DrainLayer, TokioRuntime, handle_signals};
use futures::{Stream, StreamExt};

#[derive(Debug, Parser)]
#[command(about = "an axum service, Kubernetes-ready")]
struct Options {
    /// Port to serve on (HTTP/1 and HTTP/2; with --tls-cert, over TLS).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
    #[command(flatten)]
    deputy: deputy_ipc::Settings,
    #[command(flatten)]
    serve: deputy_ipc::ServeSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    deputy_ipc::init_logs("info");
    let running = Deputy::new("axum-service", options.deputy).start(TokioRuntime)?;
    let shutdown = running.shutdown();
    let signals = handle_signals(shutdown.clone(), DEFAULT_SIGNALS)?;
    let app = Router::new()
        .route("/", get(|| async { "ok\n" }))
        .route("/work", get(work))
        .route("/events", get(events))
        .route("/ws", get(websocket))
        .with_state(shutdown.clone())
        .layer(DrainLayer::new(shutdown.clone()));
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", options.port)).await?;
    let address = format!(
        "{}://localhost:{}",
        options.serve.scheme(),
        listener.local_addr()?.port()
    );
    let serving = options.serve.serve_options()?; // TLS, connections' maximum age
    let server = tokio::spawn(deputy_tokio::serve_with(listener, shutdown, app, serving));
    let report = running.serving_on(address).run(server, signals).await;
    deputy_ipc::exit(&report)
}

/// Works `?ms=N` milliseconds (100 by default): the drain waits for it.
async fn work(uri: Uri) -> String {
    let ms = uri
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("ms=")))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(100);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("worked {ms} ms\n")
}

/// The age of the HTTP connection a request came on (with --max-connection-age).
type Age = Option<Extension<ConnectionAge>>;

/// A long-lived connection, listed as `name` while it lasts: told to move at the shutdown,
/// and when its HTTP connection reaches its age.
fn long_lived(shutdown: &Shutdown, name: &str, age: Age) -> Connection {
    let connection = shutdown.connection_named(name);
    if let Some(Extension(age)) = age {
        age.watch(&connection);
    }
    connection
}

/// 0, 1, 2... one every 100 ms.
fn every_100_ms() -> impl Stream<Item = u64> {
    futures::stream::unfold(0, |n| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((n, n + 1))
    })
}

/// Server-sent events until the connection's notice; then a `reconnect` event with a
/// one-second `retry:` hint, and the stream's clean end.
async fn events(State(shutdown): State<Shutdown>, age: Age) -> impl IntoResponse {
    let ticks = every_100_ms()
        .map(|n| Ok::<_, std::convert::Infallible>(Event::default().data(n.to_string())));
    let farewell = |_notice| {
        Ok(Event::default()
            .event("reconnect")
            .retry(Duration::from_secs(1))
            .data("server restarting; reconnect"))
    };
    let connection = long_lived(&shutdown, "SSE /events", age);
    Sse::new(connection.until_notice(ticks, farewell))
}

/// A WebSocket pushing a number every 100 ms until the connection's notice; then a 1001
/// close ("going away": clients reconnect elsewhere).
async fn websocket(State(shutdown): State<Shutdown>, age: Age, ws: WebSocketUpgrade) -> Response {
    // Registered before the upgrade: in flight from the handshake on.
    let connection = long_lived(&shutdown, "WS /ws", age);
    ws.on_upgrade(move |socket| push_numbers(socket, connection))
}

async fn push_numbers(mut socket: WebSocket, connection: Connection) {
    let mut numbers = std::pin::pin!(every_100_ms());
    let mut notice = std::pin::pin!(connection.notice());
    loop {
        tokio::select! {
            _ = &mut notice => break,
            Some(n) = numbers.next() => {
                if socket.send(Message::Text(n.to_string().into())).await.is_err() {
                    return;
                }
            }
            message = socket.recv() => match message {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let close = Message::Close(Some(CloseFrame {
        code: GOING_AWAY,
        reason: "server restarting; reconnect".into(),
    }));
    let is_close = |message: &Message| matches!(message, Message::Close(_));
    let _ = going_away(socket, close, is_close, CLOSE_WAIT).await;
}

//! A streaming service on axum whose long-lived clients move elsewhere before the pod goes:
//! WebSockets get a close frame with 1001 ("going away"), event streams a last `reconnect`
//! event with a `retry:` hint and a clean end, downloads finish, HTTP/2 connections get
//! GOAWAY at the trigger. The notices are spread over the disconnect window, so the other
//! pods see a steady stream of reconnections, not a herd.
//!
//! What deputy takes in an axum service: one layer and one server call.
//!
//! ```text
//! let app = Router::new().route(..).layer(DrainLayer::new(shutdown.clone()));
//! deputy_tokio::serve(listener, shutdown.clone(), app) // instead of axum::serve
//! ```
//!
//! and, in each long-lived handler, `shutdown.connection()`, whose notice says when to move.
//!
//! Routes: `/` (ok), `/work?ms=N`, `/ws` (a numbered text message every 100 ms),
//! `/events` (server-sent events, one every 100 ms), `/stream?ms=N` (a chunked body sent
//! over N ms). HTTP/1 and h2c (prior knowledge) on one port.
//!
//! ```text
//! cargo run --release --example stream-service -- --disconnect-window 5s
//! curl -N localhost:8080/events ; curl --http2-prior-knowledge localhost:8080/
//! ```
//!
//! Flags and variables as http-service's, plus `--disconnect-window`
//! (`DEPUTY_DISCONNECT_WINDOW`). `--baseline` serves the same routes the way axum does on
//! its own (`axum::serve(..).with_graceful_shutdown(..)` at the drain's end, no layer, no
//! notices), so the tests can show what goes wrong without deputy's streams.

use std::convert::Infallible;
use std::time::Duration;

use anyhow::Context as _;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::Uri;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use clap::Parser;
use deputy_core::{Connection, Shutdown};
use deputy_examples::http_service as defaults;
use deputy_tokio::websocket::{CLOSE_WAIT, GOING_AWAY, going_away};
use deputy_tokio::{ConnectionAge, DrainLayer, stopping};
use futures::{Stream, StreamExt};

#[derive(Debug, Parser)]
#[command(about = "a streaming service whose clients move elsewhere before it goes")]
struct Options {
    /// Port to serve on (HTTP/1 and h2c).
    #[arg(long, env = "PORT", default_value_t = defaults::PORT)]
    port: u16,
    #[command(flatten)]
    deputy: deputy_ipc::Settings,
    #[command(flatten)]
    serve: deputy_ipc::ServeSettings,
    /// Serve as axum does on its own: its graceful shutdown at the drain's end, no drain
    /// layer, no notices (for the tests' failing run).
    #[arg(long)]
    baseline: bool,
}

/// The handlers' state: the shutdown, to register long-lived connections with, or none in
/// the baseline.
#[derive(Clone)]
struct App {
    shutdown: Option<Shutdown>,
}

/// The age of the HTTP connection a request came on (with --max-connection-age).
type Age = Option<Extension<ConnectionAge>>;

impl App {
    /// A long-lived connection, listed as `name` among what holds the drain open, and told
    /// to move when its HTTP connection reaches its age, if it has one.
    fn connection(&self, name: &str, age: Age) -> Option<Connection> {
        let connection = self.shutdown.as_ref()?.connection_named(name);
        if let Some(Extension(age)) = age {
            age.watch(&connection);
        }
        Some(connection)
    }
}

/// Resolves with the connection's first notice; never without one.
async fn moving(connection: &Option<Connection>) {
    match connection {
        Some(connection) => drop(connection.notice().await),
        None => std::future::pending().await,
    }
}

/// `ms=N` from the query, else `default`.
fn millis(uri: &Uri, default: u64) -> u64 {
    uri.query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("ms=")))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(default)
}

async fn work(uri: Uri) -> String {
    let ms = millis(&uri, 100);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("worked {ms} ms\n")
}

/// A chunked body sent over N ms, a chunk every 100 ms: the drain waits for its end.
async fn download(uri: Uri) -> Body {
    let chunks = millis(&uri, 1000) / 100;
    Body::from_stream(
        every_100_ms()
            .take(chunks as usize)
            .map(|n| Ok::<_, Infallible>(Bytes::from(format!("chunk {n}\n")))),
    )
}

/// 0, 1, 2... one every 100 ms.
fn every_100_ms() -> impl Stream<Item = u64> {
    futures::stream::unfold(0, |n| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((n, n + 1))
    })
}

/// Server-sent events; on the notice, a `reconnect` event with a one-second `retry:` hint,
/// then the stream's clean end.
async fn events(State(app): State<App>, age: Age) -> impl IntoResponse {
    let ticks = every_100_ms().map(|n| Ok::<_, Infallible>(Event::default().data(n.to_string())));
    let farewell = |_notice| {
        Ok(Event::default()
            .event("reconnect")
            .retry(Duration::from_secs(1))
            .data("server restarting; reconnect"))
    };
    let events = match app.connection("SSE /events", age) {
        Some(connection) => connection.until_notice(ticks, farewell).left_stream(),
        None => ticks.right_stream(),
    };
    Sse::new(events)
}

/// A WebSocket pushing a numbered text message every 100 ms; on the notice, a 1001 close.
async fn websocket(State(app): State<App>, age: Age, upgrade: WebSocketUpgrade) -> Response {
    // Registered before the upgrade: in flight from the handshake on.
    let connection = app.connection("WS /ws", age);
    upgrade.on_upgrade(move |socket| push_numbers(socket, connection))
}

async fn push_numbers(mut socket: WebSocket, connection: Option<Connection>) {
    let mut numbers = std::pin::pin!(every_100_ms());
    loop {
        tokio::select! {
            () = moving(&connection) => break,
            Some(n) = numbers.next() => {
                if socket.send(Message::Text(n.to_string().into())).await.is_err() {
                    return;
                }
            }
            message = socket.recv() => match message {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let close = Message::Close(Some(CloseFrame {
        code: GOING_AWAY,
        reason: "server restarting; reconnect".into(),
    }));
    let is_close = |message: &Message| matches!(message, Message::Close(_));
    if let Ok(closed) = going_away(socket, close, is_close, CLOSE_WAIT).await {
        tracing::debug!(?closed, "websocket closed");
    }
}

fn routes(app: App) -> Router {
    Router::new()
        .route("/", get(|| async { "ok\n" }))
        .route("/work", get(work))
        .route("/stream", get(download))
        .route("/events", get(events))
        .route("/ws", get(websocket))
        .with_state(app)
}

#[tokio::main]
async fn main() {
    if let Err(error) = run().await {
        eprintln!("stream-service: {error:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let options: Options = deputy_ipc::parse_args();
    deputy_ipc::init_logs("info");
    // Connections recycled by age (--max-connection-age) and TLS (--tls-cert, --tls-key),
    // if asked: the files are read here, so a bad one stops the start.
    let serve_options = options.serve.serve_options()?;
    let running = deputy_ipc::Deputy::new("stream-service", options.deputy)
        .start(deputy_tokio::TokioRuntime)?;
    let shutdown = running.shutdown();
    let signals = deputy_tokio::handle_signals(shutdown.clone(), deputy_tokio::DEFAULT_SIGNALS)?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", options.port))
        .await
        .with_context(|| format!("port {}", options.port))?;
    let port = listener.local_addr()?.port(); // the one asked for, or the one `--port 0` got

    let server = if options.baseline {
        let app = routes(App { shutdown: None });
        let serve = axum::serve(listener, app).with_graceful_shutdown(stopping(&shutdown));
        tokio::spawn(async move { drop(serve.await) })
    } else {
        let app = routes(App {
            shutdown: Some(shutdown.clone()),
        })
        .layer(DrainLayer::new(shutdown.clone()));
        tokio::spawn(deputy_tokio::serve_with(
            listener,
            shutdown.clone(),
            app,
            serve_options,
        ))
    };
    let baseline = if options.baseline { " (baseline)" } else { "" };
    let report = running
        .serving_on(format!("http://localhost:{port}{baseline}"))
        .run(server, signals)
        .await;
    deputy_ipc::exit(&report)
}

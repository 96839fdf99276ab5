//! An HTTP service on tokio and hyper that loses no request when its pod is terminated.
//! - The drain layer counts every request until its body has been sent (a `/stream` keeps
//!   the drain open while it streams) and answers `Connection: close` once shutdown has begun.
//! - `deputy_tokio::serve` speaks HTTP/1 and h2c on one port (HTTP/2 connections get GOAWAY
//!   at the trigger); the listener stays open through the drain delay (endpoints are still
//!   propagating) and closes when the drain ends.
//! - The control socket takes the preStop's `deputy terminate`, the health endpoints take
//!   the kubelet's probes, and SIGTERM / SIGINT trigger too (second skips the drain, third
//!   exits).
//!
//! ```text
//! cargo run --release --example http-service
//! curl localhost:8080/ ; curl 'localhost:8080/work?ms=2000' ; curl 'localhost:8080/stream?ms=3000'
//! DEPUTY_IPC_DIR=/tmp cargo run --release --example http-service -- --drain-delay 2s
//! ```
//!
//! `--fail-after 10s` (or `--panic-after 10s`) starts a vital task, `refresher`, that fails
//! (or panics) after that long, as a cache refresher losing its upstream would: the service
//! then drains and exits 1, its report, log and termination message naming the task and its
//! error.
//!
//! `--startup 20s` starts it with a start-up task, `warm-up`, that takes that long:
//! `/health/started` (for a `startupProbe`) and `/health/ready` answer 503 until it is done;
//! with `--startup-timeout 10s` it ends the run (exit 1) instead.
//!
//! `--unix PATH` serves on a Unix-domain socket instead of the port; a socket handed over by
//! socket activation (`systemd-socket-activate -l 127.0.0.1:8080 http-service`, or a systemd
//! `.socket` unit) comes first. The shutdown is the same on each.
//!
//! `--tls-cert FILE --tls-key FILE` (`DEPUTY_TLS_CERT`, `DEPUTY_TLS_KEY`) serve TLS on any
//! of them, HTTP/2 or HTTP/1.1 as ALPN agrees; the certificate is read again when the files
//! change (a Kubernetes Secret updated in place), for the connections that follow.
//!
//! Every shutdown setting has a flag and an environment variable; durations are written `30s`,
//! `1500ms`. The defaults match `examples/k8s/deployment.yaml`. With
//! `DEPUTY_SHUTDOWN_TOKEN_FILE` (or `DEPUTY_SHUTDOWN_TOKEN`) set, the health port also serves
//! `/shutdown` for an httpGet preStop (`examples/k8s/http-prestop.yaml`).

use std::convert::Infallible;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use deputy_tokio::DrainLayer;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use tower::Layer;

use deputy_examples::http_service as defaults;

#[derive(Debug, Parser)]
#[command(about = "an HTTP service that drains gracefully")]
struct Options {
    /// Port to serve on.
    #[arg(long, env = "PORT", default_value_t = defaults::PORT)]
    port: u16,
    /// Serve on this Unix-domain socket instead of the port (behind a local proxy). A
    /// socket handed over by socket activation (LISTEN_FDS, as systemd or
    /// `systemd-socket-activate` pass it) comes first.
    #[arg(long, value_name = "PATH")]
    unix: Option<std::path::PathBuf>,
    /// Start a vital task, `refresher`, that fails after this long: the service drains and
    /// exits 1, naming it (a demonstration of a background task the service needs).
    #[arg(long, value_parser = deputy_ipc::parse_duration, conflicts_with = "panic_after")]
    fail_after: Option<Duration>,
    /// The same, but the task panics.
    #[arg(long, value_parser = deputy_ipc::parse_duration)]
    panic_after: Option<Duration>,
    /// Start with a start-up task, `warm-up`, that takes this long: /health/started and
    /// /health/ready answer 503 until it is done (see --startup-timeout).
    #[arg(long, value_parser = deputy_ipc::parse_duration)]
    startup: Option<Duration>,
    #[command(flatten)]
    deputy: deputy_ipc::Settings,
    #[command(flatten)]
    serve: deputy_ipc::ServeSettings,
}

/// A cache refresher that refreshes every second until it is told to stop, and fails (or,
/// with `panics`, panics) once `fails_after` has passed.
async fn refresher(
    stop: deputy_core::CancellationToken,
    fails_after: Duration,
    panics: bool,
) -> Result<(), &'static str> {
    let give_up = tokio::time::sleep(fails_after);
    tokio::pin!(give_up);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = &mut give_up => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {} // refreshed
        }
    }
    if panics {
        panic!("cache refresh: index out of range (--panic-after)");
    }
    Err("cache refresh: upstream unavailable (--fail-after)")
}

/// A response body: whole, or streamed.
type Body = UnsyncBoxBody<Bytes, Infallible>;

fn whole(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// `ms=N` from the query, else `default`.
fn millis(request: &Request<Incoming>, default: u64) -> u64 {
    request
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("ms=")))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(default)
}

async fn handle(request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let response = match request.uri().path() {
        "/" => Response::new(whole(Bytes::from_static(b"ok\n"))),
        "/work" => {
            let ms = millis(&request, 100);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Response::new(whole(format!("worked {ms} ms\n")))
        }
        // A chunked body sent over N ms, a chunk every 100 ms: the drain waits for its end.
        "/stream" => {
            let chunks = millis(&request, 1000) / 100;
            let stream = futures::stream::unfold(0, move |sent| async move {
                if sent == chunks {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                let chunk = Frame::data(Bytes::from(format!("chunk {sent}\n")));
                Some((Ok(chunk), sent + 1))
            });
            Response::new(StreamBody::new(stream).boxed_unsync())
        }
        _ => {
            let mut response = Response::new(whole(Bytes::new()));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    };
    Ok(response)
}

/// Where the service listens.
enum Listening {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, std::path::PathBuf),
}

/// The socket handed over by socket activation, if any (TCP or Unix-domain); else
/// `--unix`'s path (a stale socket file there is replaced); else the port.
async fn listen(options: &Options) -> anyhow::Result<Listening> {
    let mut activated = listenfd::ListenFd::from_env();
    if activated.len() > 0 {
        if let Ok(Some(listener)) = activated.take_tcp_listener(0) {
            listener.set_nonblocking(true)?;
            return Ok(Listening::Tcp(tokio::net::TcpListener::from_std(listener)?));
        }
        let listener = activated
            .take_unix_listener(0)?
            .context("LISTEN_FDS gives no listening socket")?;
        listener.set_nonblocking(true)?;
        let path = listener
            .local_addr()?
            .as_pathname()
            .map(Into::into)
            .unwrap_or_default();
        return Ok(Listening::Unix(
            tokio::net::UnixListener::from_std(listener)?,
            path,
        ));
    }
    if let Some(path) = &options.unix {
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path)
            .with_context(|| format!("unix socket {}", path.display()))?;
        return Ok(Listening::Unix(listener, path.clone()));
    }
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", options.port))
        .await
        .with_context(|| format!("port {}", options.port))?;
    Ok(Listening::Tcp(listener))
}

#[tokio::main]
async fn main() {
    if let Err(error) = run().await {
        // One line for a person; a refused setting is no bug (no backtrace).
        eprintln!("http-service: {error:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let options: Options = deputy_ipc::parse_args();
    deputy_ipc::init_logs("info");
    // Connections recycled by age (--max-connection-age) and TLS (--tls-cert, --tls-key),
    // if asked: the files are read here, so a bad one stops the start.
    let serve_options = options.serve.serve_options()?;
    // The coordinator from the settings, the control socket for the preStop's `deputy
    // terminate`, the health endpoints for the probes: bound, not yet serving.
    let running = deputy_ipc::Deputy::new("http-service", options.deputy.clone())
        .start(deputy_tokio::TokioRuntime)?;
    let shutdown = running.shutdown();
    let signals = deputy_tokio::handle_signals(shutdown.clone(), deputy_tokio::DEFAULT_SIGNALS)?;

    // HTTP/1 and h2c on one listener; accepts until the drain is over, then lets open
    // connections finish (HTTP/2 ones got GOAWAY at the trigger).
    let service = DrainLayer::new(shutdown.clone()).layer(tower::service_fn(handle));
    let (server, address) = match listen(&options).await? {
        Listening::Tcp(listener) => {
            // The port bound: the one asked for, or the one `--port 0` got.
            let address = format!(
                "{}://localhost:{}",
                options.serve.scheme(),
                listener.local_addr()?.port()
            );
            let server = deputy_tokio::serve_with(
                listener,
                shutdown.clone(),
                service,
                serve_options.clone(),
            );
            (tokio::spawn(server), address)
        }
        Listening::Unix(listener, path) => {
            let server = deputy_tokio::serve_with(
                listener,
                shutdown.clone(),
                service,
                serve_options.clone(),
            );
            (tokio::spawn(server), format!("unix:{}", path.display()))
        }
    };

    if let Some(takes) = options.startup {
        let warm_up = shutdown.startup("warm-up", move |stop| async move {
            tokio::select! {
                _ = stop.cancelled() => {} // shut down during start-up: stop at once
                _ = tokio::time::sleep(takes) => {} // caches loaded
            }
            Ok::<(), std::convert::Infallible>(())
        })?;
        tokio::spawn(warm_up);
    }
    if let Some(after) = options.fail_after.or(options.panic_after) {
        let panics = options.panic_after.is_some();
        let task = shutdown.vital("refresher", "flush", move |stop| {
            refresher(stop, after, panics)
        })?;
        tokio::spawn(task);
    }

    // Ready; then to the end of the shutdown: the report, the termination message, the
    // exit code.
    let report = running.serving_on(address).run(server, signals).await;
    deputy_ipc::exit(&report)
}

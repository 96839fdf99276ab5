//! An HTTP service on tokio and hyper that loses no request when its pod is terminated:
//! the drain layer counts every request until its body has been sent (a `/stream` keeps the
//! drain open while it streams) and answers `Connection: close` once shutdown has begun; the listener stays open through the drain delay (endpoints are still propagating)
//! and closes when the drain ends; the control socket takes the preStop's
//! `deputy terminate`, the health endpoints take the kubelet's probes, and SIGTERM / SIGINT
//! trigger too (second skips the drain, third exits).
//!
//! ```text
//! cargo run --release --example http-service
//! curl localhost:8080/ ; curl 'localhost:8080/work?ms=2000' ; curl 'localhost:8080/stream?ms=3000'
//! DEPUTY_IPC_DIR=/tmp cargo run --release --example http-service -- --drain-delay 2s
//! ```
//!
//! Every setting has a flag and an environment variable; durations are written `30s`,
//! `1500ms`. The defaults match `examples/k8s/deployment.yaml`. With
//! `DEPUTY_SHUTDOWN_TOKEN_FILE` (or `DEPUTY_SHUTDOWN_TOKEN`) set, the health port also serves
//! `/shutdown` for an httpGet preStop (`examples/k8s/http-prestop.yaml`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use deputy_core::{Arrival, Phase, ShutdownCoordinator};
use deputy_ipc::{ControlServer, HealthServer, ServerConfig};
use deputy_tokio::{DEFAULT_SIGNALS, DrainLayer, TokioRuntime, handle_signals, stopping};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::Layer;

use deputy_examples::http_service as defaults;

#[derive(Debug, Parser)]
#[command(about = "an HTTP service that drains gracefully")]
struct Options {
    /// Port to serve on.
    #[arg(long, env = "PORT", default_value_t = defaults::PORT)]
    port: u16,
    /// Port of /health/live and /health/ready (default: $DEPUTY_HEALTH_CHECK_PORT, else 8081).
    #[arg(long)]
    health_port: Option<u16>,
    /// Whole shutdown budget, from the trigger (keep it below terminationGracePeriodSeconds).
    #[arg(long, env = "DEPUTY_GRACE_PERIOD", default_value = defaults::GRACE_PERIOD, value_parser = humantime::parse_duration)]
    grace_period: Duration,
    /// Keep serving this long after the trigger while endpoints propagate (with
    /// --drain-delay-max: at least this long).
    #[arg(long, env = "DEPUTY_DRAIN_DELAY", default_value = defaults::DRAIN_DELAY, value_parser = humantime::parse_duration)]
    drain_delay: Duration,
    /// Make the drain delay measure itself: after --drain-delay, end it once no new
    /// connection or request has come for --quiet-period, and at this at the latest. Not for
    /// a service with rare traffic (quiet there is not propagation).
    #[arg(long, env = "DEPUTY_DRAIN_DELAY_MAX", value_parser = humantime::parse_duration)]
    drain_delay_max: Option<Duration>,
    /// With --drain-delay-max: how long without new traffic ends the drain delay.
    #[arg(long, env = "DEPUTY_QUIET_PERIOD", default_value = "1s", value_parser = humantime::parse_duration)]
    quiet_period: Duration,
    /// Then wait this long for requests in flight.
    #[arg(long, env = "DEPUTY_DRAIN_TIMEOUT", default_value = defaults::DRAIN_TIMEOUT, value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// Control socket directory (default: $DEPUTY_IPC_DIR, else /run).
    #[arg(long)]
    ipc_dir: Option<PathBuf>,
    /// Serve /metrics on the health port (Prometheus' text format).
    #[arg(long, env = "DEPUTY_METRICS")]
    metrics: bool,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    deputy_examples::init_logs("info");
    // As Go does: a flood of connections should not find the process at a soft limit of
    // 1,024 descriptors when the hard limit allows more.
    deputy_ipc::raise_nofile_limit().context("open-files limit")?;

    let mut builder = ShutdownCoordinator::builder()
        .grace_period(options.grace_period)
        .drain_delay(options.drain_delay)
        .quiet_period(options.quiet_period)
        .drain_timeout(options.drain_timeout);
    if let Some(max) = options.drain_delay_max {
        builder = builder.drain_delay_max(max);
    }
    let coordinator = builder
        .phase(
            Phase::new("stop-accepting")
                .timeout(Duration::from_secs(defaults::STOP_ACCEPTING_SECS)),
        )
        .build(TokioRuntime)?;
    let shutdown = coordinator.handle();
    tokio::spawn(handle_signals(shutdown.clone(), DEFAULT_SIGNALS)?);

    let explicit_dir = options
        .ipc_dir
        .clone()
        .or_else(|| std::env::var_os("DEPUTY_IPC_DIR").map(PathBuf::from));
    let control = match &explicit_dir {
        Some(dir) => ControlServer::bind(&shutdown, ServerConfig::default().dir(dir))
            .context("control socket")?,
        // On a laptop /run is often not writable: fall back to the temporary directory
        // rather than refuse to start; in a container, set DEPUTY_IPC_DIR (or mount /run).
        None => ControlServer::bind(&shutdown, ServerConfig::default())
            .or_else(|error| {
                let fallback = std::env::temp_dir();
                eprintln!(
                    "http-service: {error}; using {} instead",
                    fallback.display()
                );
                ControlServer::bind(&shutdown, ServerConfig::default().dir(&fallback))
            })
            .context("control socket")?,
    };
    let ipc_dir = control
        .socket_path()
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let health_port = match options.health_port {
        Some(port) => port,
        None => deputy_ipc::health_port().map_err(anyhow::Error::msg)?,
    };
    let mut health = HealthServer::bind(&shutdown, SocketAddr::from(([0, 0, 0, 0], health_port)))
        .context("health endpoints")?;
    // /shutdown, for an httpGet preStop (images without the deputy binary), when
    // DEPUTY_SHUTDOWN_TOKEN_FILE (a mounted Secret) or DEPUTY_SHUTDOWN_TOKEN gives its token.
    if let Some(token) = deputy_ipc::shutdown_token_from_env().map_err(anyhow::Error::msg)? {
        health = health.with_shutdown_endpoint(token);
    }
    if options.metrics {
        health = health.with_metrics();
    }
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], options.port)))
        .await
        .with_context(|| format!("port {}", options.port))?;

    // The server: accepts until the drain is over, then lets open connections finish.
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let shutdown = shutdown.clone();
        async move {
            let graceful = GracefulShutdown::new();
            let service = DrainLayer::new(shutdown.clone()).layer(tower::service_fn(handle));
            let mut stop = std::pin::pin!(stopping(&shutdown));
            loop {
                tokio::select! {
                    // Pauses (instead of spinning) when the process is out of descriptors.
                    (stream, _) = deputy_tokio::accept(&listener) => {
                        // For the report's "last new connection ... after the trigger".
                        shutdown.arrived(Arrival::Connection);
                        let connection = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service.clone()));
                        let connection = graceful.watch(connection);
                        tokio::spawn(async move {
                            let _ = connection.await;
                        });
                    }
                    () = &mut stop => break,
                }
            }
            drop(listener);
            graceful.shutdown().await;
            let _ = closed_tx.send(());
        }
    };
    tokio::spawn(server);
    shutdown.hook("stop-accepting", "http-server", |_| async move {
        closed_rx.await.map_err(|_| "the server task ended early")
    })?;

    let control = tokio::spawn(control.run());
    let health = tokio::spawn(health.run());
    shutdown.ready();
    say(format_args!(
        "http-service: serving on http://localhost:{} (health on :{health_port}, pid {})",
        options.port,
        std::process::id()
    ));
    say(format_args!(
        "http-service: stop with Ctrl-C, or `DEPUTY_IPC_DIR={ipc_dir} cargo run -p deputy-ipc --bin deputy -- terminate`"
    ));
    let report = coordinator.run().await;
    // Let a preStop read the end before this process (maybe PID 1) exits: `deputy terminate`
    // on the control socket, or an httpGet on /shutdown (the health endpoints answer it,
    // then linger a second, so probes see the end too).
    let _ = tokio::join!(control, health);
    say(format_args!("{report}"));
    // For `kubectl describe pod` (DEPUTY_TERMINATION_LOG, or /dev/termination-log).
    deputy_ipc::record_termination(&report);
    std::process::exit(report.exit_code);
}

/// Writes a line to stdout; a closed stdout (the reader gone) must not make a panic, here of
/// all places, in the middle of a shutdown.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

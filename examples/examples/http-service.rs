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
//! Every shutdown setting has a flag and an environment variable; durations are written `30s`,
//! `1500ms`. The defaults match `examples/k8s/deployment.yaml`. With
//! `DEPUTY_SHUTDOWN_TOKEN_FILE` (or `DEPUTY_SHUTDOWN_TOKEN`) set, the health port also serves
//! `/shutdown` for an httpGet preStop (`examples/k8s/http-prestop.yaml`).

use std::convert::Infallible;
use std::time::Duration;

use clap::Parser;
use deputy_tokio::DrainLayer;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use tower::Layer;

use deputy_examples::http_service as defaults;
use deputy_examples::service::{DrainOptions, run_to_end};

#[derive(Debug, Parser)]
#[command(about = "an HTTP service that drains gracefully")]
struct Options {
    /// Port to serve on.
    #[arg(long, env = "PORT", default_value_t = defaults::PORT)]
    port: u16,
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
    drain: DrainOptions,
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

#[tokio::main]
async fn main() {
    deputy_examples::exit_on_error("http-service", run().await)
}

async fn run() -> anyhow::Result<()> {
    let options: Options = deputy_ipc::parse_args();
    let (coordinator, endpoints, listener) =
        options.drain.start("http-service", options.port).await?;
    // The port bound (the one asked for, or the one given for `--port 0`).
    let port = listener.local_addr()?.port();
    let shutdown = coordinator.handle();

    // HTTP/1 and h2c on one port; accepts until the drain is over, then lets open
    // connections finish (HTTP/2 ones got GOAWAY at the trigger).
    let service = DrainLayer::new(shutdown.clone()).layer(tower::service_fn(handle));
    let server = tokio::spawn(deputy_tokio::serve(listener, shutdown.clone(), service));
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
    let never = run_to_end(
        coordinator,
        endpoints,
        server,
        "http-service",
        &format!("http://localhost:{port}"),
    )
    .await?;
    match never {}
}

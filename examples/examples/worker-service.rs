//! A service with two vital tasks (a queue consumer and a cache refresher), an HTTP server
//! and a flush phase: the deputy side of the README's comparison with
//! tokio-graceful-shutdown ("Side by side with tokio-graceful-shutdown").
//!
//! - SIGTERM or the preStop's `deputy terminate`: readiness off, the drain delay, the
//!   requests in flight, then the server stops accepting, the consumer is told to stop and
//!   the buffer flushed (`flush`), the refresher last (`close`); exit 0.
//! - `--fail-after 2s`: the consumer fails after that long; the service drains all the same
//!   and exits 1, its report naming `consumer` and the error.
//! - `--hang`: the refresher ignores its stop: its phase times out, the report says so, and
//!   the service still exits within its grace period (exit 2).
//!
//! ```text
//! cargo run --example worker-service -- --port 8080 --drain-delay 1s
//! ```

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use clap::Parser;
use deputy_core::{CancellationToken, Phase};
use deputy_ipc::Deputy;
use deputy_tokio::{DEFAULT_SIGNALS, DrainLayer, TokioRuntime, handle_signals};

#[derive(Debug, Parser)]
#[command(about = "two vital tasks, an HTTP server and a flush phase")]
struct Options {
    /// Port to serve on.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
    /// The consumer fails after this long.
    #[arg(long, value_parser = deputy_ipc::parse_duration)]
    fail_after: Option<Duration>,
    /// The refresher ignores its stop (a hung task).
    #[arg(long)]
    hang: bool,
    #[command(flatten)]
    deputy: deputy_ipc::Settings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    deputy_ipc::init_logs("info");
    let running = Deputy::new("worker-service", options.deputy)
        .configure(|plan| plan.phase(Phase::new("flush").timeout(Duration::from_secs(2))))
        .start(TokioRuntime)?;
    let shutdown = running.shutdown();
    let signals = handle_signals(shutdown.clone(), DEFAULT_SIGNALS)?;

    let fail_after = options.fail_after;
    let consumer = shutdown.vital("consumer", "flush", move |stop| consume(stop, fail_after))?;
    tokio::spawn(consumer);
    let hang = options.hang;
    let refresher = shutdown.vital("refresher", "close", move |stop| refresh(stop, hang))?;
    tokio::spawn(refresher);
    shutdown.hook("flush", "buffer", |_| async {
        tokio::time::sleep(Duration::from_millis(50)).await; // written out
        Ok::<(), std::io::Error>(())
    })?;

    let app = Router::new()
        .route("/", get(|| async { "ok\n" }))
        .layer(DrainLayer::new(shutdown.clone()));
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", options.port)).await?;
    let address = format!("http://localhost:{}", listener.local_addr()?.port());
    let server = tokio::spawn(deputy_tokio::serve(listener, shutdown, app));
    let report = running.serving_on(address).run(server, signals).await;
    deputy_ipc::exit(&report)
}

/// Takes a message every 100 ms until told to stop; fails after `fail_after`, if given.
async fn consume(stop: CancellationToken, fail_after: Option<Duration>) -> Result<(), String> {
    let fail = async {
        match fail_after {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(fail);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()), // offsets committed
            _ = &mut fail => return Err("queue: connection reset by broker".into()),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {} // a message handled
        }
    }
}

/// Refreshes a cache every second until told to stop; with `hang`, never stops.
async fn refresh(stop: CancellationToken, hang: bool) {
    loop {
        tokio::select! {
            _ = stop.cancelled(), if !hang => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {} // refreshed
        }
    }
}

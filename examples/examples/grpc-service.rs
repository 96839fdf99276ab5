//! A gRPC service on tonic whose clients move elsewhere before the pod goes:
//! - the standard health service (grpc.health.v1) turns NOT_SERVING at the trigger, so
//!   Kubernetes' gRPC probes and client-side load balancers stop sending new calls;
//! - the HTTP/2 connections get GOAWAY from the trigger on (`deputy_tokio::serve`), so
//!   clients open their next calls elsewhere while the calls they have finish;
//! - unary calls in flight finish (the drain layer counts each to its last byte);
//! - each server-streaming call is told to move like a WebSocket, spread over the disconnect
//!   window after the drain delay, and ends with status UNAVAILABLE ("retry on another
//!   backend"), which gRPC clients retry.
//!
//! ```text
//! cargo run --release --example grpc-service
//! ```
//!
//! The API is `proto/demo.proto`: `Work` (unary, `ms`) and `Ticks` (server-streaming, a
//! numbered tick every `every_ms`). Flags and variables as http-service's, plus
//! `--disconnect-window` (`DEPUTY_DISCONNECT_WINDOW`). `--baseline` serves the same with
//! tonic's own `serve_with_shutdown` at the drain's end, no health change, no notices, so
//! the tests can show what goes wrong without deputy.
//!
//! `--tls-cert FILE --tls-key FILE` (`DEPUTY_TLS_CERT`, `DEPUTY_TLS_KEY`) serve gRPC over
//! TLS (ALPN `h2`), with the certificate read again when the files change.

use std::pin::Pin;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use deputy_core::Shutdown;
use deputy_examples::http_service as defaults;
use deputy_tokio::{ConnectionAge, DrainLayer, stopping};
use futures::Stream;
use tonic::{Request, Response, Status};

/// The code generated from `proto/demo.proto` (by `build.rs`).
mod demo {
    #![allow(missing_docs, unreachable_pub, clippy::all)]
    tonic::include_proto!("deputy.demo.v1");
}

use demo::demo_server::{Demo, DemoServer};
use demo::{Tick, TicksRequest, WorkReply, WorkRequest};

#[derive(Debug, Parser)]
#[command(about = "a gRPC service whose clients move elsewhere before it goes")]
struct Options {
    /// Port to serve gRPC on (HTTP/2, cleartext or with --tls-cert over TLS; HTTP/1 too).
    #[arg(long, env = "PORT", default_value_t = defaults::PORT)]
    port: u16,
    #[command(flatten)]
    deputy: deputy_ipc::Settings,
    #[command(flatten)]
    serve: deputy_ipc::ServeSettings,
    /// Serve as tonic does on its own: its graceful shutdown at the drain's end, health left
    /// SERVING, no notices (for the tests' failing run). Cleartext only.
    #[arg(long, conflicts_with = "tls_cert")]
    baseline: bool,
}

/// The Demo service: the shutdown to register streams with, or none in the baseline.
struct Service {
    shutdown: Option<Shutdown>,
}

type Ticks = Pin<Box<dyn Stream<Item = Result<Tick, Status>> + Send>>;

#[tonic::async_trait]
impl Demo for Service {
    async fn work(&self, request: Request<WorkRequest>) -> Result<Response<WorkReply>, Status> {
        let ms = request.into_inner().ms;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(Response::new(WorkReply {
            message: format!("worked {ms} ms"),
        }))
    }

    type TicksStream = Ticks;

    async fn ticks(&self, request: Request<TicksRequest>) -> Result<Response<Ticks>, Status> {
        // The age of the HTTP/2 connection the call came on (with --max-connection-age).
        let age = request.extensions().get::<ConnectionAge>().cloned();
        let every = Duration::from_millis(request.into_inner().every_ms.max(1));
        let ticks = futures::stream::unfold(0, move |number| async move {
            tokio::time::sleep(every).await;
            Some((Ok(Tick { number }), number + 1))
        });
        let ticks: Ticks = match &self.shutdown {
            // On its notice the call ends with UNAVAILABLE, which clients retry elsewhere.
            Some(shutdown) => {
                let connection = shutdown.connection_named("gRPC /deputy.demo.v1.Demo/Ticks");
                // Told to move when its connection reaches its age, too.
                if let Some(age) = age {
                    age.watch(&connection);
                }
                Box::pin(connection.until_notice(ticks, |_notice| {
                    Err(Status::unavailable(
                        "server restarting; retry on another backend",
                    ))
                }))
            }
            None => Box::pin(ticks),
        };
        Ok(Response::new(ticks))
    }
}

#[tokio::main]
async fn main() {
    if let Err(error) = run().await {
        eprintln!("grpc-service: {error:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let options: Options = deputy_ipc::parse_args();
    deputy_ipc::init_logs("info");
    // Connections recycled by age (--max-connection-age) and TLS (--tls-cert, --tls-key),
    // if asked: the files are read here, so a bad one stops the start.
    let serve_options = options.serve.serve_options()?;
    let running = deputy_ipc::Deputy::new("grpc-service", options.deputy)
        .start(deputy_tokio::TokioRuntime)?;
    let shutdown = running.shutdown();
    let signals = deputy_tokio::handle_signals(shutdown.clone(), deputy_tokio::DEFAULT_SIGNALS)?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", options.port))
        .await
        .with_context(|| format!("port {}", options.port))?;
    let port = listener.local_addr()?.port(); // the one asked for, or the one `--port 0` got

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<DemoServer<Service>>().await;
    let server = if options.baseline {
        let demo = DemoServer::new(Service { shutdown: None });
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let serve = tonic::transport::Server::builder()
            .add_service(health)
            .add_service(demo)
            .serve_with_incoming_shutdown(incoming, stopping(&shutdown));
        tokio::spawn(async move { drop(serve.await) })
    } else {
        // NOT_SERVING at the trigger, for the whole server ("") and for Demo.
        let draining = shutdown.draining_token();
        tokio::spawn(async move {
            draining.cancelled().await;
            reporter.set_not_serving::<DemoServer<Service>>().await;
            reporter
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
        });
        let demo = DemoServer::new(Service {
            shutdown: Some(shutdown.clone()),
        });
        let app = tonic::service::Routes::new(health)
            .add_service(demo)
            .into_axum_router()
            .layer(DrainLayer::new(shutdown.clone()));
        tokio::spawn(deputy_tokio::serve_with(
            listener,
            shutdown.clone(),
            app,
            serve_options,
        ))
    };
    let baseline = if options.baseline { " (baseline)" } else { "" };
    let tls = if options.serve.tls_cert.is_some() {
        " (TLS)"
    } else {
        ""
    };
    let report = running
        .serving_on(format!("localhost:{port}{tls}{baseline}"))
        .run(server, signals)
        .await;
    deputy_ipc::exit(&report)
}

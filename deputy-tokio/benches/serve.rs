//! `serve` over TLS next to the same stack without deputy, and the cost of age tracking.
//!
//! - TLS handshakes: each iteration opens 32 connections one after another, each a full
//!   TLS 1.3 handshake (no resumption) and one `GET /` with `Connection: close`.
//! - TLS requests: 2,000 keep-alive `GET /` over 16 TLS connections per iteration.
//!
//! Both against `deputy_tokio::serve_with` with `ServeOptions::tls` and `DrainLayer` (as a
//! service uses them), and against hyper-util's server with tokio-rustls (the accept loop,
//! `TlsAcceptor::accept`, the auto builder: what a service without deputy writes), with the
//! same rustls config, certificate and axum router, in the same run. The ratio is the peer's
//! time over deputy's (goal: at least 0.97).
//!
//! - Age tracking: 64 cleartext connections per iteration, each one `GET /` with
//!   `Connection: close`, through `serve_with` with and without a maximum age (an hour: never
//!   reached here); the difference over 64 is the cost per connection. And 2,000 keep-alive
//!   `GET /` over 16 cleartext connections, with and without: the cost per request (the
//!   age put in each request's extensions).
//!
//! What is measured is CPU time (the process's: client and server), not wall-clock time.
//! Each server runs on a runtime of its own with one worker thread; the client is this
//! thread's. deputy's coordinator runs beside its server, as in a service: it keeps a
//! timer (the clock of the requests' named guards), so the runtime parks with a timeout
//! whether or not connections have an age. (Without any timer, tokio parks without one,
//! which is a few microseconds cheaper per wake-up; a 1 h age timer per connection would
//! then cost that.) Run with `cargo bench -p deputy-tokio --features tls --bench serve`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group};
use deputy_core::{Shutdown, ShutdownCoordinator};
use deputy_tokio::{DrainLayer, ServeOptions, Tls, TokioRuntime};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HANDSHAKES: usize = 32;
const CONNECTIONS: usize = 16;
const REQUESTS: usize = 2_000;
const CHURN: usize = 64;

#[allow(deprecated)] // ring: see deputy-tokio's tls module
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate for localhost, in files (for deputy) and in memory (for the peer).
struct Cert {
    _dir: tempfile::TempDir,
    cert_file: std::path::PathBuf,
    key_file: std::path::PathBuf,
    der: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn certificate() -> Cert {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_file = dir.path().join("tls.crt");
    let key_file = dir.path().join("tls.key");
    std::fs::write(&cert_file, made.cert.pem()).unwrap();
    std::fs::write(&key_file, made.signing_key.serialize_pem()).unwrap();
    Cert {
        _dir: dir,
        cert_file,
        key_file,
        der: made.cert.der().clone(),
        key: PrivateKeyDer::try_from(made.signing_key.serialize_der()).unwrap(),
    }
}

fn app(shutdown: Option<Shutdown>) -> axum::Router {
    let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    match shutdown {
        Some(shutdown) => router.layer(DrainLayer::new(shutdown)),
        None => router,
    }
}

/// A runtime with one worker thread, for one server.
fn server_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// deputy's `serve_with` on `runtime`, with `options`; its address. The coordinator runs
/// (never triggered) beside it, as in a service.
fn deputy(runtime: &tokio::runtime::Runtime, options: ServeOptions) -> SocketAddr {
    runtime.block_on(async {
        let coordinator = ShutdownCoordinator::builder().build(TokioRuntime).unwrap();
        let shutdown = coordinator.handle();
        tokio::spawn(coordinator.run());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = app(Some(shutdown.clone()));
        tokio::spawn(deputy_tokio::serve_with(listener, shutdown, app, options));
        addr
    })
}

/// hyper-util's server with tokio-rustls on `runtime`; its address.
fn peer(runtime: &tokio::runtime::Runtime, cert: &Cert) -> SocketAddr {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der.clone()], cert.key.clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    runtime.block_on(async {
        tokio::spawn(async {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = TowerToHyperService::new(app(None));
                    let mut builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    builder
                        .http1()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(10));
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        addr
    })
}

/// A client config trusting `cert`, offering HTTP/1.1, without resumption (every handshake
/// a full one).
fn connector(cert: &Cert) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls_connect(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// One `GET /` with `Connection: close`, read to the end.
async fn get_and_close<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
}

/// `count` keep-alive `GET /` on `stream`, reading each whole response ("ok", 2 bytes).
async fn requests<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, count: usize) {
    let mut buffer = vec![0u8; 4096];
    for _ in 0..count {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            .await
            .unwrap();
        let mut filled = 0;
        loop {
            let read = stream.read(&mut buffer[filled..]).await.unwrap();
            assert!(read > 0, "the server closed the connection");
            filled += read;
            if buffer[..filled].ends_with(b"\r\n\r\nok") {
                break;
            }
        }
    }
}

/// `CONNECTIONS` connections made by `connect`.
async fn connections<S, F: std::future::Future<Output = S>>(connect: impl Fn() -> F) -> Vec<S> {
    let mut streams = Vec::new();
    for _ in 0..CONNECTIONS {
        streams.push(connect().await);
    }
    streams
}

/// `REQUESTS` keep-alive `GET /`, spread over `streams`, all at once.
async fn batch<S: AsyncRead + AsyncWrite + Unpin>(streams: &mut [S]) {
    let each = REQUESTS / streams.len();
    futures::future::join_all(streams.iter_mut().map(|stream| requests(stream, each))).await;
}

/// A group of benchmarks titled `title`: 20 samples, 8 s of measurement.
fn group_of(c: &mut Criterion, title: String) -> BenchmarkGroup<'_, WallTime> {
    let mut group = c.benchmark_group(title);
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    group
}

/// Benchmarks `name`: keep-alive batches ([`batch`]) on `streams`, in CPU time.
fn bench_batches<S: AsyncRead + AsyncWrite + Unpin>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    client: &tokio::runtime::Runtime,
    mut streams: Vec<S>,
) {
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = cpu_time();
            for _ in 0..iters {
                client.block_on(batch(&mut streams));
            }
            cpu_time() - start
        })
    });
}

/// The CPU time this process has used (every thread: the client's and the servers').
fn cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// The CPU time of `iters` runs of `work` on the client's runtime. The client's share is the
/// same for both servers, so the difference is the servers'. (Wall-clock time on this
/// 2-core machine moved by a fifth from run to run with the scheduler's placement of three
/// busy threads; CPU time does not.)
fn timed<F: std::future::Future<Output = ()>>(
    client: &tokio::runtime::Runtime,
    iters: u64,
    mut work: impl FnMut() -> F,
) -> Duration {
    let start = cpu_time();
    for _ in 0..iters {
        client.block_on(work());
    }
    cpu_time() - start
}

/// The client's runtime, on this thread.
fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn tls(c: &mut Criterion) {
    let cert = certificate();
    let (deputy_runtime, peer_runtime) = (server_runtime(), server_runtime());
    let tls = Tls::from_pem_files(&cert.cert_file, &cert.key_file).unwrap();
    let servers = [
        ("hyper-util + rustls", peer(&peer_runtime, &cert)),
        (
            "deputy",
            deputy(&deputy_runtime, ServeOptions::default().tls(tls)),
        ),
    ];
    let client = client_runtime();
    let connector = connector(&cert);

    let mut group = group_of(
        c,
        format!("TLS handshakes: {HANDSHAKES} connections, each a full handshake and one GET /"),
    );
    for (name, addr) in servers {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                timed(&client, iters, || async {
                    for _ in 0..HANDSHAKES {
                        get_and_close(tls_connect(&connector, addr).await).await;
                    }
                })
            })
        });
    }
    group.finish();

    let mut group = group_of(
        c,
        format!("TLS requests: {REQUESTS} keep-alive GET / over {CONNECTIONS} connections"),
    );
    for (name, addr) in servers {
        let streams = client.block_on(connections(|| tls_connect(&connector, addr)));
        bench_batches(&mut group, name, &client, streams);
    }
    group.finish();
}

fn age_tracking(c: &mut Criterion) {
    let (with_runtime, without_runtime) = (server_runtime(), server_runtime());
    let hour = Duration::from_secs(3600);
    let servers = [
        (
            "max_connection_age (1 h)",
            deputy(
                &with_runtime,
                ServeOptions::default().max_connection_age(hour),
            ),
        ),
        (
            "no maximum age",
            deputy(&without_runtime, ServeOptions::default()),
        ),
    ];
    let client = client_runtime();
    let mut group = group_of(
        c,
        format!("age tracking: {CHURN} cleartext connections, each one GET /"),
    );
    for (name, addr) in servers {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                timed(&client, iters, || async {
                    for _ in 0..CHURN {
                        let tcp = TcpStream::connect(addr).await.unwrap();
                        tcp.set_nodelay(true).unwrap();
                        get_and_close(tcp).await;
                    }
                })
            })
        });
    }
    group.finish();

    // Per request: the age put in each request's extensions.
    let mut group = group_of(
        c,
        format!(
            "age tracking: {REQUESTS} keep-alive GET / over {CONNECTIONS} cleartext connections"
        ),
    );
    for (name, addr) in servers {
        let connect = || async { TcpStream::connect(addr).await.unwrap() };
        let streams = client.block_on(connections(connect));
        bench_batches(&mut group, name, &client, streams);
    }
    group.finish();
}

/// One fixed run of one server's workload, for counting instructions (`valgrind
/// --tool=callgrind`, which counts the same for the same run whatever else the machine
/// does): `deputy-tls` or `peer-tls` (32 handshakes, then 2,000 keep-alive requests over
/// 16 TLS connections), `age` or `no-age` (64 cleartext connections of one request, then
/// 2,000 keep-alive requests over 16).
fn once(which: &str) {
    let cert = certificate();
    let server = server_runtime();
    let addr = match which {
        "deputy-tls" => {
            let tls = Tls::from_pem_files(&cert.cert_file, &cert.key_file).unwrap();
            deputy(&server, ServeOptions::default().tls(tls))
        }
        "peer-tls" => peer(&server, &cert),
        "age" => deputy(
            &server,
            ServeOptions::default().max_connection_age(Duration::from_secs(3600)),
        ),
        "no-age" => deputy(&server, ServeOptions::default()),
        _ => panic!("DEPUTY_BENCH_ONCE: deputy-tls, peer-tls, age or no-age"),
    };
    let client = client_runtime();
    let tls = which.ends_with("tls");
    let connector = connector(&cert);
    client.block_on(async {
        for _ in 0..if tls { HANDSHAKES } else { CHURN } {
            if tls {
                get_and_close(tls_connect(&connector, addr).await).await;
            } else {
                get_and_close(TcpStream::connect(addr).await.unwrap()).await;
            }
        }
        if tls {
            batch(&mut connections(|| tls_connect(&connector, addr)).await).await;
        } else {
            let connect = || async { TcpStream::connect(addr).await.unwrap() };
            batch(&mut connections(connect).await).await;
        }
    });
}

criterion_group!(benches, tls, age_tracking);

fn main() {
    if let Ok(which) = std::env::var("DEPUTY_BENCH_ONCE") {
        return once(&which);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

//! http-service and grpc-service over TLS (`--tls-cert`, `--tls-key`, or `DEPUTY_TLS_CERT`
//! and `DEPUTY_TLS_KEY` as the docs write them), with real clients: curl (HTTP/2 and
//! HTTP/1.1), hey (`-h2`) under load through a termination, an HTTP/2 client (h2 over
//! rustls) holding a connection open, tonic's client.
//!
//! - curl gets HTTP/2 and HTTP/1.1 on one port, trusting only the service's certificate.
//! - A termination under load (hey, HTTP/2 and HTTP/1.1, through the drain delay): no
//!   request fails, and the service exits 0.
//! - An HTTP/2 connection open at the trigger gets GOAWAY within 0.6 s, over TLS as over h2c.
//! - A certificate replaced on disk is served to the next connection; a connection opened
//!   before keeps working.
//! - grpc-service: a unary call and a streaming call over TLS; at the trigger the stream is
//!   told to retry elsewhere (UNAVAILABLE), and the service exits 0.
//!
//! Without TLS in the service, every one of these fails at its first handshake.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::process::Signal as Sig;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

mod support;

use support::{BOUND, Proc, example, free_port, http_service, text};

/// The code generated from `proto/demo.proto` (by the package's build script).
mod demo {
    #![allow(clippy::all, unreachable_pub, missing_docs, dead_code)]
    tonic::include_proto!("deputy.demo.v1");
}

/// A self-signed certificate for `localhost`, written to `NAME.crt` and `NAME.key` in `dir`.
struct Cert {
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

impl Cert {
    fn new(dir: &Path, name: &str) -> Cert {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        Cert {
            cert,
            key,
            der: made.cert.der().clone(),
        }
    }

    /// `--tls-cert FILE --tls-key FILE`.
    fn flags(&self) -> Vec<&str> {
        vec![
            "--tls-cert",
            self.cert.to_str().unwrap(),
            "--tls-key",
            self.key.to_str().unwrap(),
        ]
    }
}

/// Whether `program` is here, saying "skipped" when not.
fn has(program: &str) -> bool {
    let here = Command::new(program).arg("--version").output().is_ok()
        || Command::new(program).arg("-h").output().is_ok();
    if !here {
        eprintln!("skipped: needs {program}");
    }
    here
}

/// `curl ARGS https://localhost:PORT/` trusting `ca`: the body and the HTTP version, or
/// curl's error.
fn curl(port: u16, ca: &Path, args: &[&str]) -> Result<(String, String), String> {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new("curl")
        .args(["-s", "-S", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args(args)
        .args(["-w", "\n%{http_version}"])
        .arg(format!("https://localhost:{port}/"))
        .output()
        .expect("curl runs");
    if !status.success() {
        return Err(format!("curl: {status}: {}", text(&stderr)));
    }
    let out = text(&stdout);
    let (body, version) = out.rsplit_once('\n').unwrap();
    Ok((body.to_string(), version.to_string()))
}

/// A TLS connection to `port` trusting `ca`, offering h2.
async fn tls_connect(port: u16, ca: &CertificateDer<'static>) -> Result<TlsStream, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    #[allow(deprecated)] // ring, as the service: see deputy-tokio's tls module
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").unwrap();
    connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())
}

type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// An HTTP/2 connection over TLS: its request handle, and a task that ends with the
/// connection, saying when.
async fn h2_connect(
    port: u16,
    ca: &CertificateDer<'static>,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<Instant>,
) {
    let stream = tls_connect(port, ca).await.unwrap();
    let (client, connection) = h2::client::handshake(stream).await.unwrap();
    let ended = tokio::spawn(async move {
        let _ = connection.await;
        Instant::now()
    });
    (client, ended)
}

/// GET / on an HTTP/2 connection: the status.
async fn h2_get(client: &h2::client::SendRequest<bytes::Bytes>) -> Result<u16, String> {
    let mut client = client.clone().ready().await.map_err(|e| e.to_string())?;
    let request = http::Request::get("https://localhost/").body(()).unwrap();
    let (response, _) = client
        .send_request(request, true)
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(BOUND, response)
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(response.status().as_u16())
}

#[test]
fn curl_gets_http2_and_http1_on_one_port_with_the_documented_variables() {
    if !has("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(dir.path(), "tls");
    let (service, port) = http_service(
        dir.path(),
        &[],
        &[
            ("DEPUTY_TLS_CERT", cert.cert.as_os_str()),
            ("DEPUTY_TLS_KEY", cert.key.as_os_str()),
        ],
    );
    assert_eq!(
        curl(port, &cert.cert, &["--http2"]),
        Ok(("ok\n".into(), "2".into()))
    );
    assert_eq!(
        curl(port, &cert.cert, &["--http1.1"]),
        Ok(("ok\n".into(), "1.1".into()))
    );
    // Cleartext is not served on a TLS port.
    let plain = Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .arg(format!("http://localhost:{port}/"))
        .output()
        .unwrap();
    assert!(!plain.status.success() || text(&plain.stdout).is_empty());
    service.signal(Sig::TERM);
    let ended = service.finish();
    assert_eq!(ended.code, 0, "{}\n{}", ended.out(), ended.err());
}

/// hey's summary: the count of each status, and the error lines.
fn hey(port: u16, args: &[&str]) -> std::process::Child {
    Command::new("hey")
        // hey sends `host:port` as the TLS server name, which rustls rightly refuses; -host
        // sets the name it sends.
        .args(["-host", "localhost"])
        .args(args)
        .arg(format!("https://localhost:{port}/"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("hey runs")
}

/// From hey's output: the responses with status 200, and what else it reported.
fn hey_outcome(child: std::process::Child) -> (u64, Vec<String>) {
    let output = child.wait_with_output().unwrap();
    let out = text(&output.stdout);
    let mut ok = 0;
    let mut other = Vec::new();
    let mut section = "";
    for line in out.lines() {
        let line = line.trim();
        if line.ends_with("distribution:") {
            section = line;
            continue;
        }
        if line.starts_with('[') {
            if section.starts_with("Status") && line.starts_with("[200]") {
                ok += line[5..]
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            } else if !section.starts_with("Latency") {
                other.push(line.to_string());
            }
        }
    }
    if !output.status.success() {
        other.push(format!("hey: {}: {}", output.status, text(&output.stderr)));
    }
    (ok, other)
}

#[test]
fn a_termination_under_load_over_tls_fails_no_request() {
    if !has("hey") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(dir.path(), "tls");
    let mut flags = cert.flags();
    flags.extend(["--drain-delay", "5s"]);
    let (service, port) = http_service(dir.path(), &flags, &[]);
    // Load for 4 s, HTTP/2 and HTTP/1.1; the trigger 1 s in. The load ends inside the drain
    // delay, as it would once the endpoint is gone from every node.
    let http2 = hey(port, &["-z", "4s", "-c", "8", "-h2"]);
    let http1 = hey(port, &["-z", "4s", "-c", "8"]);
    std::thread::sleep(Duration::from_secs(1));
    let triggered = Instant::now();
    service.signal(Sig::TERM);
    let (http2_ok, http2_other) = hey_outcome(http2);
    let (http1_ok, http1_other) = hey_outcome(http1);
    eprintln!("HTTP/2: {http2_ok} ok, {http2_other:?}; HTTP/1.1: {http1_ok} ok, {http1_other:?}");
    assert!(http2_other.is_empty(), "HTTP/2 over TLS: {http2_other:#?}");
    assert!(
        http1_other.is_empty(),
        "HTTP/1.1 over TLS: {http1_other:#?}"
    );
    assert!(
        http2_ok > 100 && http1_ok > 100,
        "{http2_ok} and {http1_ok}"
    );
    let ended = service.finish();
    assert_eq!(ended.code, 0, "{}\n{}", ended.out(), ended.err());
    assert!(ended.out().contains("shutdown clean"), "{}", ended.out());
    assert!(triggered.elapsed() < BOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_http2_connection_over_tls_gets_goaway_within_600_ms_of_the_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(dir.path(), "tls");
    let mut flags = cert.flags();
    flags.extend(["--drain-delay", "3s"]);
    let (service, port) = http_service(dir.path(), &flags, &[]);
    let (client, ended) = h2_connect(port, &cert.der).await;
    assert_eq!(h2_get(&client).await, Ok(200));

    let triggered = Instant::now();
    service.signal(Sig::TERM);
    // GOAWAY, then (no stream open) the server closes the connection: long before the
    // drain delay's 3 s are over.
    let ended = tokio::time::timeout(BOUND, ended)
        .await
        .expect("the connection ends")
        .unwrap();
    let after = ended.duration_since(triggered);
    assert!(
        after < Duration::from_millis(600),
        "GOAWAY came {after:?} after the trigger"
    );
    // A new connection is still served: the drain delay is not over.
    let (fresh, _) = h2_connect(port, &cert.der).await;
    assert_eq!(h2_get(&fresh).await, Ok(200));
    drop(fresh);
    let ended = tokio::task::spawn_blocking(move || service.finish())
        .await
        .unwrap();
    assert_eq!(ended.code, 0, "{}\n{}", ended.out(), ended.err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_replaced_on_disk_is_served_to_the_next_connection() {
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(dir.path(), "tls");
    let renewed = Cert::new(dir.path(), "renewed");
    let (service, port) = http_service(dir.path(), &cert.flags(), &[]);
    let (open, _) = h2_connect(port, &cert.der).await;
    assert_eq!(h2_get(&open).await, Ok(200));
    // Trusting only the renewed certificate: refused, for now.
    assert!(tls_connect(port, &renewed.der).await.is_err());

    // As the kubelet updates a Secret: the new files take the old ones' place at once.
    for (from, to) in [(&renewed.cert, &cert.cert), (&renewed.key, &cert.key)] {
        let staged = to.with_extension("staged");
        std::fs::copy(from, &staged).unwrap();
        std::fs::rename(&staged, to).unwrap();
    }
    let (next, _) = h2_connect(port, &renewed.der).await;
    assert_eq!(h2_get(&next).await, Ok(200), "the next connection");
    assert_eq!(h2_get(&open).await, Ok(200), "the connection opened before");
    drop((open, next));

    service.signal(Sig::TERM);
    let ended = tokio::task::spawn_blocking(move || service.finish())
        .await
        .unwrap();
    assert_eq!(ended.code, 0, "{}\n{}", ended.out(), ended.err());
    assert!(
        ended.err().contains("TLS certificate read again"),
        "{}",
        ended.err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls_with_tonic_calls_are_served_and_streams_told_to_retry_at_the_trigger() {
    use demo::demo_client::DemoClient;
    use demo::{TicksRequest, WorkRequest};
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(dir.path(), "tls");
    let port = free_port();
    let port_text = port.to_string();
    let health_port = free_port().to_string();
    let mut args = vec![
        "--port",
        &port_text,
        "--health-port",
        &health_port,
        "--drain-delay",
        "1s",
        "--disconnect-window",
        "1s",
        "--ipc-dir",
        dir.path().to_str().unwrap(),
    ];
    args.extend(cert.flags());
    let mut service = Proc::start(example("grpc-service"), &args);
    service.expect_out("grpc-service: serving on localhost");

    let pem = std::fs::read(&cert.cert).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(BOUND)
        .connect()
        .await
        .expect("a gRPC connection over TLS");
    let mut client = DemoClient::new(channel);
    let reply = client.work(WorkRequest { ms: 10 }).await.unwrap();
    assert!(reply.into_inner().message.contains("10"));

    let mut stream = client
        .ticks(TicksRequest { every_ms: 100 })
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some(), "a first tick");
    service.signal(Sig::TERM);
    let ended = loop {
        match tokio::time::timeout(BOUND, stream.message()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(other) => break other,
            Err(_) => panic!("the stream did not end"),
        }
    };
    let status = ended.expect_err("the stream ends with a status");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("retry"), "{status:?}");
    let ended = tokio::task::spawn_blocking(move || service.finish())
        .await
        .unwrap();
    assert_eq!(ended.code, 0, "{}\n{}", ended.out(), ended.err());
}

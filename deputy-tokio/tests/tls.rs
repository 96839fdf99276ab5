//! `serve` over TLS (the `tls` feature), with rustls clients: ALPN picks HTTP/2 or HTTP/1.1
//! on one port; a certificate replaced on disk is served to the next connection while open
//! ones keep working; a pair that cannot be used is refused at the start (naming the file)
//! and ignored later (the last good one kept); a handshake still unfinished when the drain
//! ends, or a connection silent after its handshake, does not hold the server up.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deputy_core::{Shutdown, ShutdownCoordinator, ShutdownReport};
use deputy_tokio::{ServeOptions, Tls, TokioRuntime};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

const BOUND: Duration = Duration::from_secs(20);

/// A new self-signed certificate for `localhost`, written to `NAME.crt` and `NAME.key` in
/// `dir`: the files and the certificate.
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf, CertificateDer<'static>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key, made.cert.der().clone())
}

/// Puts `from`'s content at `to` in one step, as the kubelet swaps a Secret's files.
fn replace(from: &Path, to: &Path) {
    let staged = to.with_extension("staged");
    std::fs::copy(from, &staged).unwrap();
    std::fs::rename(&staged, to).unwrap();
}

/// A coordinator and a TLS server on a free port, serving "ok" at `/` and holding
/// `/slow` for a second.
async fn tls_server(
    tls: Tls,
    drain_delay: Duration,
) -> (
    ShutdownCoordinator,
    Shutdown,
    u16,
    tokio::task::JoinHandle<()>,
) {
    let coordinator = ShutdownCoordinator::builder()
        .drain_delay(drain_delay)
        .drain_timeout(Duration::from_secs(5))
        .build(TokioRuntime)
        .unwrap();
    let shutdown = coordinator.handle();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .layer(deputy_tokio::DrainLayer::new(shutdown.clone()));
    let options = ServeOptions::default().tls(tls);
    let server = tokio::spawn(deputy_tokio::serve_with(
        listener,
        shutdown.clone(),
        app,
        options,
    ));
    (coordinator, shutdown, port, server)
}

/// A TLS connection to `port` trusting `roots`, offering `alpn`.
async fn connect(
    port: u16,
    roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    #[allow(deprecated)] // ring: see deputy-tokio's tls module
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(BOUND, connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("no handshake within the bound"))?
}

/// The certificate the server presented on `stream`.
fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    let (_, session) = stream.get_ref();
    session.peer_certificates().unwrap()[0].clone()
}

/// GET / in HTTP/1.1 on `stream`, to the end of the response.
async fn http1_get(mut stream: TlsStream<TcpStream>) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(BOUND, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// An HTTP/2 connection on `stream`: its request handle (the connection is driven by a
/// task of its own).
async fn h2(stream: TlsStream<TcpStream>) -> h2::client::SendRequest<bytes::Bytes> {
    let (client, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    client
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

async fn shut_down(
    coordinator: ShutdownCoordinator,
    shutdown: &Shutdown,
    server: tokio::task::JoinHandle<()>,
) -> ShutdownReport {
    shutdown.trigger("test");
    let report = tokio::time::timeout(BOUND, coordinator.run())
        .await
        .unwrap();
    tokio::time::timeout(BOUND, server)
        .await
        .expect("serve returns after the drain")
        .unwrap();
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_picks_http2_or_http1_on_one_port() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, der) = certificate(dir.path(), "tls");
    let tls = Tls::from_pem_files(&cert, &key).unwrap();
    let (coordinator, shutdown, port, server) = tls_server(tls, Duration::ZERO).await;
    let roots = [der];

    let stream = connect(port, &roots, &[b"h2", b"http/1.1"]).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(h2_get(&h2(stream).await).await, Ok(200));

    let stream = connect(port, &roots, &[b"http/1.1"]).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let answer = http1_get(stream).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"),
        "{answer}"
    );

    // No ALPN at all: HTTP/1.1.
    let answer = http1_get(connect(port, &roots, &[]).await.unwrap()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    assert_eq!(shut_down(coordinator, &shutdown, server).await.exit_code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_replaced_on_disk_is_served_to_the_next_connection_while_open_ones_keep_working()
 {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, first) = certificate(dir.path(), "tls");
    let (new_cert, new_key, second) = certificate(dir.path(), "renewed");
    let tls = Tls::from_pem_files(&cert, &key).unwrap();
    let (coordinator, shutdown, port, server) = tls_server(tls, Duration::ZERO).await;
    let roots = [first.clone(), second.clone()];

    let before = connect(port, &roots, &[b"h2"]).await.unwrap();
    assert_eq!(presented(&before), first);
    let open = h2(before).await;
    assert_eq!(h2_get(&open).await, Ok(200));

    // Renewed: the key first, then the certificate (between the two, the pair does not
    // match, and the first one is still served).
    replace(&new_key, &key);
    let mid_swap = connect(port, &roots, &[b"h2"]).await.unwrap();
    assert_eq!(
        presented(&mid_swap),
        first,
        "a pair that does not match is not used"
    );
    replace(&new_cert, &cert);
    let after = connect(port, &roots, &[b"h2"]).await.unwrap();
    assert_eq!(
        presented(&after),
        second,
        "the next connection gets the new one"
    );
    assert_eq!(h2_get(&h2(after).await).await, Ok(200));
    // The connection opened before is still served, on its old certificate.
    assert_eq!(h2_get(&open).await, Ok(200));

    // A file that is gone (mid-swap) or garbled: the last good pair is served.
    std::fs::write(&cert, "not a certificate").unwrap();
    let garbled = connect(port, &roots, &[b"h2"]).await.unwrap();
    assert_eq!(presented(&garbled), second);

    assert_eq!(shut_down(coordinator, &shutdown, server).await.exit_code, 0);
}

#[test]
fn files_that_cannot_be_used_are_refused_at_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = certificate(dir.path(), "tls");
    let (_, other_key, _) = certificate(dir.path(), "other");
    let missing = dir.path().join("missing.crt");
    let garbled = dir.path().join("garbled.crt");
    std::fs::write(&garbled, "not a certificate").unwrap();

    let error = Tls::from_pem_files(&missing, &key).unwrap_err().to_string();
    assert!(error.contains(&*missing.to_string_lossy()), "{error}");
    let error = Tls::from_pem_files(&garbled, &key).unwrap_err().to_string();
    assert!(error.contains(&*garbled.to_string_lossy()), "{error}");
    let error = Tls::from_pem_files(&cert, &cert).unwrap_err().to_string();
    assert!(error.contains(&*cert.to_string_lossy()), "{error}");
    let error = Tls::from_pem_files(&cert, &other_key)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&*other_key.to_string_lossy()) && error.contains("key"),
        "{error}"
    );
    assert!(Tls::from_pem_files(&cert, &key).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_unfinished_or_a_silent_connection_when_the_drain_ends_does_not_hold_the_server_up()
 {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, der) = certificate(dir.path(), "tls");
    let tls = Tls::from_pem_files(&cert, &key).unwrap();
    let (coordinator, shutdown, port, server) = tls_server(tls, Duration::from_millis(300)).await;

    // A client that connects and starts a handshake it never finishes: half a ClientHello.
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    // One that finishes its handshake (agreeing on h2), then says nothing.
    let silent = connect(port, std::slice::from_ref(&der), &[b"h2"])
        .await
        .unwrap();
    // And one served normally, to show the server works.
    let answer = http1_get(connect(port, &[der], &[]).await.unwrap()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let triggered = Instant::now();
    let report = shut_down(coordinator, &shutdown, server).await;
    assert_eq!(report.exit_code, 0);
    // The handshake's own timeout is 10 s: the server ended long before, at the drain's end.
    assert!(
        triggered.elapsed() < Duration::from_secs(5),
        "serve ended {:?} after the trigger",
        triggered.elapsed()
    );
    // And both clients' connections were closed, not left open.
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(BOUND, stalled.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the stalled handshake's connection is still open: {read:?}"
    );
    let mut silent = silent;
    let read = tokio::time::timeout(BOUND, silent.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the silent connection is still open: {read:?}"
    );
}

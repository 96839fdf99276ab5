//! `serve` on a Unix-domain socket, as behind a local proxy: HTTP/1 and HTTP/2 (prior
//! knowledge) are told apart by their first bytes as on TCP, and it returns once the drain
//! is over.

use std::io::{Read, Write};
use std::time::Duration;

use deputy_core::ShutdownCoordinator;
use deputy_tokio::TokioRuntime;

/// The raw answer to `request` on the socket at `path`.
fn exchange(path: &std::path::Path, request: &[u8]) -> Vec<u8> {
    let mut stream = std::os::unix::net::UnixStream::connect(path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0; 4096];
    // An HTTP/2 server answers the preface with its SETTINGS and keeps the connection: one
    // read is enough.
    let read = stream.read(&mut buf).unwrap();
    answer.extend_from_slice(&buf[..read]);
    if request.starts_with(b"GET") {
        let _ = stream.read_to_end(&mut answer);
    }
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_speaks_both_protocols_on_a_unix_socket_and_ends_with_the_drain() {
    let dir = std::env::temp_dir().join(format!("deputy-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("http.sock");
    let _ = std::fs::remove_file(&path);
    let coordinator = ShutdownCoordinator::builder()
        .drain_delay(Duration::ZERO)
        .build(TokioRuntime)
        .unwrap();
    let shutdown = coordinator.handle();
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let server = tokio::spawn(deputy_tokio::serve(listener, shutdown.clone(), app));

    let (http1, http2) = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            let http1 = exchange(
                &path,
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            let http2 = exchange(
                &path,
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0",
            );
            (http1, http2)
        }
    })
    .await
    .unwrap();
    let http1 = String::from_utf8_lossy(&http1);
    assert!(
        http1.starts_with("HTTP/1.1 200") && http1.ends_with("ok"),
        "{http1}"
    );
    // A SETTINGS frame: type 4, on stream 0.
    assert!(http2.len() >= 9 && http2[3] == 4, "{http2:?}");

    shutdown.trigger("test");
    let report = tokio::time::timeout(Duration::from_secs(20), coordinator.run())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("serve returns after the drain")
        .unwrap();
    assert_eq!(report.exit_code, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

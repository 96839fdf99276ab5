//! A streamed response through the drain: http-service's `/stream` sends a chunk every
//! 100 ms; SIGTERM comes while it streams. The drain waits for the stream's last byte (it is
//! in flight until then), the client gets every chunk and a complete chunked body, and the
//! report's drain lasts as long as the stream did.

use std::io::{Read, Write};
use std::net::TcpStream;

mod support;

use rustix::process::Signal;

#[test]
fn a_stream_keeps_the_drain_open_until_its_last_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (service, port) = support::http_service(
        dir.path(),
        &["--drain-delay", "0s", "--drain-timeout", "10s"],
        &[],
    );
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.set_read_timeout(Some(support::BOUND)).unwrap();
    write!(client, "GET /stream?ms=3000 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // The headers and the first chunk are out: the stream has about 3 s to go.
    let mut first = [0u8; 256];
    let read = client.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..read]).contains("200 OK"));
    service.signal(Signal::TERM);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    let body = String::from_utf8_lossy(&rest);
    assert!(body.contains("chunk 29\n"), "the stream was cut: {body}");
    assert!(
        body.ends_with("0\r\n\r\n"),
        "not a complete chunked body: {body:?}"
    );
    let ended = service.finish();
    assert_eq!(ended.code, 0, "{}", ended.err());
    // The drain lasted as long as the stream had left (about 2.8 s), not 0.
    let out = ended.out();
    let drained_s: f64 = out
        .split_once("drain: drained in ")
        .and_then(|(_, rest)| rest.split_once('s'))
        .and_then(|(seconds, _)| seconds.parse().ok())
        .unwrap_or_else(|| panic!("no drain line in: {out}"));
    assert!(drained_s >= 2.0, "{out}");
}

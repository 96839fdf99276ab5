//! Readiness from the child itself: its port accepting connections (`--ready-port`), or a URL
//! of its answering 2xx (`--ready-url`).

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::pin::pin;
use std::time::Duration;

use async_io::Async;
use deputy_core::Shutdown;
use futures::future::{Either, select};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::header::{CONNECTION, HOST, HeaderValue};
use hyper::{Request, Uri};
use smol_hyper::rt::FuturesIo;

use super::say;
use crate::timeout::within;

/// How the supervisor tells whether the child is ready.
#[derive(Debug, Clone)]
pub(super) enum ReadyCheck {
    /// It accepts TCP connections on this port of 127.0.0.1.
    Port(u16),
    /// `GET` on this URL answers 2xx.
    Url(ReadyUrl),
}

/// An `http://` URL, resolved once.
#[derive(Debug, Clone)]
pub(super) struct ReadyUrl {
    text: String,
    address: SocketAddr,
    host: HeaderValue,
    path: Uri,
}

/// Reads `--ready-url`: `http://HOST:PORT/PATH`, where HOST is an address of this machine (an
/// IP, or a name such as localhost, resolved once here).
pub(super) fn parse_ready_url(text: &str) -> Result<ReadyUrl, String> {
    let bad = |why: &str| format!("--ready-url `{text}`: {why}");
    let uri: Uri = text.parse().map_err(|_| bad("not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad(
            "only http:// is supported (the child's own port, on this machine)",
        ));
    }
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let address = (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut found| found.next())
        .ok_or_else(|| bad("the host does not resolve"))?;
    let path = uri
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .parse()
        .map_err(|_| bad("bad path"))?;
    let authority = uri.authority().map_or(host, |a| a.as_str());
    Ok(ReadyUrl {
        text: text.to_owned(),
        address,
        host: HeaderValue::from_str(authority).map_err(|_| bad("bad host"))?,
        path,
    })
}

impl ReadyCheck {
    /// One check, bounded to a second.
    async fn probe(&self) -> bool {
        match self {
            ReadyCheck::Port(port) => {
                let connect =
                    Async::<TcpStream>::connect(SocketAddr::from(([127, 0, 0, 1], *port)));
                matches!(within(Duration::from_secs(1), connect).await, Some(Ok(_)))
            }
            ReadyCheck::Url(url) => within(Duration::from_secs(1), url.answers_2xx())
                .await
                .unwrap_or(false),
        }
    }

    fn describe(&self, ready: bool) -> String {
        match (self, ready) {
            (ReadyCheck::Port(port), true) => {
                format!("the child accepts connections on port {port}")
            }
            (ReadyCheck::Port(port), false) => {
                format!("the child refuses connections on port {port}")
            }
            (ReadyCheck::Url(url), true) => format!("{} answers 2xx", url.text),
            (ReadyCheck::Url(url), false) => format!("{} does not answer 2xx", url.text),
        }
    }
}

impl ReadyUrl {
    async fn answers_2xx(&self) -> bool {
        let Ok(stream) = Async::<TcpStream>::connect(self.address).await else {
            return false;
        };
        let Ok((mut sender, connection)) =
            hyper::client::conn::http1::handshake(FuturesIo::new(stream)).await
        else {
            return false;
        };
        let mut request = Request::new(Empty::<Bytes>::new());
        *request.uri_mut() = self.path.clone();
        request.headers_mut().insert(HOST, self.host.clone());
        request
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        // The connection must be driven for the response to arrive; it may also end (the
        // server closing after its answer) before the response is taken: take it then.
        let response = match select(pin!(connection), pin!(sender.send_request(request))).await {
            Either::Right((response, _)) => response,
            Either::Left((_, response)) => response.await,
        };
        response.is_ok_and(|response| response.status().is_success())
    }
}

/// Readiness follows `check`: every 200 ms until the child is ready, then every second,
/// until shutdown starts (which turns readiness off for good).
pub(super) async fn follow(shutdown: &Shutdown, check: &ReadyCheck) {
    let draining = shutdown.draining_token();
    let mut was_ready = false;
    while !draining.is_cancelled() {
        let ready = check.probe().await;
        if ready != was_ready {
            if ready {
                shutdown.ready();
                say!("ready: {}", check.describe(true));
            } else {
                shutdown.not_ready();
                say!("not ready: {}", check.describe(false));
            }
            was_ready = ready;
        }
        let every = if ready { 1000 } else { 200 };
        let _ = within(Duration::from_millis(every), draining.cancelled()).await;
    }
}

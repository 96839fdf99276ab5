//! A URL of the child's own, on this machine: `--ready-url` (GET, 2xx means ready) and
//! `--stop-url` (POST, 2xx means the child took the request to stop). One request per
//! connection, with hyper's HTTP/1 client on async-io.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::pin::pin;

use async_io::Async;
use futures::future::{Either, select};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::header::{CONNECTION, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use smol_hyper::rt::FuturesIo;

/// An `http://` URL, its host resolved once.
#[derive(Debug, Clone)]
pub(super) struct LocalUrl {
    text: String,
    address: SocketAddr,
    host: HeaderValue,
    path: Uri,
}

impl LocalUrl {
    /// Reads `http://HOST[:PORT]/PATH`, where HOST is an address of this machine (an IP, or a
    /// name such as localhost, resolved once here). Errors name `option`, for a person.
    pub(super) fn parse(option: &str, text: &str) -> Result<LocalUrl, String> {
        let bad = |why: &str| format!("{option} `{text}`: {why}");
        let uri: Uri = text.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad(
                "only http:// is supported (the child's own port, on this machine)",
            ));
        }
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        // From the authority's text: `Uri::port` reads 99999 as no port at all (then 80).
        let written = uri
            .authority()
            .and_then(|authority| authority.as_str().rsplit_once(':'))
            .map(|(_, port)| port)
            .filter(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
        let port = match written {
            None => 80,
            Some(port) => match port.parse::<u16>() {
                Ok(number) if number > 0 => number,
                _ => return Err(bad(&format!("{port} is not a port (1 to 65535)"))),
            },
        };
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
        Ok(LocalUrl {
            text: text.to_owned(),
            address,
            host: HeaderValue::from_str(authority).map_err(|_| bad("bad host"))?,
            path,
        })
    }

    /// The port it goes to.
    pub(super) fn port(&self) -> u16 {
        self.address.port()
    }

    /// The URL as it was given.
    pub(super) fn as_str(&self) -> &str {
        &self.text
    }

    /// One `method` request with an empty body: the answer's status, or why there is none.
    /// Unbounded: the caller bounds it.
    pub(super) async fn request(&self, method: Method) -> Result<StatusCode, String> {
        let stream = Async::<TcpStream>::connect(self.address)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.address))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(FuturesIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        let mut request = Request::new(Empty::<Bytes>::new());
        *request.method_mut() = method;
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
        response
            .map(|response| response.status())
            .map_err(|e| e.to_string())
    }
}

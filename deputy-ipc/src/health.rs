//! HTTP health endpoints for the kubelet's probes, on hyper, and an opt-in `/shutdown` for an
//! `httpGet` preStop hook.
//!
//! | path | answer |
//! |---|---|
//! | `/health/live` | 200 until `Done`, then 503 |
//! | `/health/ready` | 503 until `ready()`, 200 while running, 503 from the first trigger on |
//! | `/health/started` | 503 until start-up is complete (`ready()` called, every start-up task done), then 200 for good: for a `startupProbe` |
//! | `/health/status` | 200, JSON: state, phase, in flight, readiness, liveness |
//! | `/shutdown` (opt-in) | triggers, answers with the report summary when done |
//!
//! Health paths answer GET and HEAD with an empty body (status: JSON); other methods get 405,
//! other paths 404.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_io::{Async, Timer};
use deputy_core::{Reason, Shutdown};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONNECTION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use smol_hyper::rt::{FuturesIo, SmolTimer};

use crate::accept::{Listener, Slot, serve_until};
use crate::error::IpcError;
use crate::log_limit::LogLimit;
use crate::protocol::Response as Protocol;
use crate::timeout::within;

/// The header that must carry the secret for `/shutdown`.
pub const SHUTDOWN_TOKEN_HEADER: &str = "x-deputy-token";

/// The environment variable naming a file that holds the `/shutdown` token (a mounted
/// Kubernetes Secret); see [`shutdown_token_from_env`].
pub const SHUTDOWN_TOKEN_FILE_ENV: &str = "DEPUTY_SHUTDOWN_TOKEN_FILE";

/// The environment variable holding the `/shutdown` token itself; see
/// [`shutdown_token_from_env`].
pub const SHUTDOWN_TOKEN_ENV: &str = "DEPUTY_SHUTDOWN_TOKEN";

/// The shortest `/shutdown` token accepted from the environment, in bytes.
pub const MIN_SHUTDOWN_TOKEN: usize = 16;

const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MAX_CONNECTIONS: usize = 128;

/// How long the endpoints keep answering after `Done` unless [`HealthServer::linger`] says
/// otherwise.
pub const DEFAULT_HEALTH_LINGER: Duration = Duration::from_secs(1);

/// The `/shutdown` token, if the environment sets one: read from the file named by
/// `DEPUTY_SHUTDOWN_TOKEN_FILE` (a Kubernetes Secret mounted as a file: the better way, as
/// the environment is inherited by child processes and shown by `kubectl describe`), else
/// taken from `DEPUTY_SHUTDOWN_TOKEN`. Surrounding white space (a file's last newline) is
/// dropped. `Ok(None)` when neither is set: the endpoint stays off.
///
/// # Errors
///
/// A sentence for a person if the file cannot be read, or the token is shorter than
/// [`MIN_SHUTDOWN_TOKEN`] bytes.
///
/// ```
/// // Neither variable is set in a plain test run: the endpoint stays off.
/// if std::env::var_os("DEPUTY_SHUTDOWN_TOKEN_FILE").is_none()
///     && std::env::var_os("DEPUTY_SHUTDOWN_TOKEN").is_none()
/// {
///     assert_eq!(deputy_ipc::shutdown_token_from_env(), Ok(None));
/// }
/// ```
pub fn shutdown_token_from_env() -> Result<Option<String>, String> {
    let from_file = std::env::var_os(SHUTDOWN_TOKEN_FILE_ENV).filter(|path| !path.is_empty());
    let (token, source) = match from_file {
        Some(path) => (read_token_file(Path::new(&path))?, SHUTDOWN_TOKEN_FILE_ENV),
        None => match std::env::var(SHUTDOWN_TOKEN_ENV) {
            Ok(token) if !token.is_empty() => (token, SHUTDOWN_TOKEN_ENV),
            _ => return Ok(None),
        },
    };
    let token = token.trim().to_owned();
    if token.len() < MIN_SHUTDOWN_TOKEN {
        return Err(format!(
            "the /shutdown token from {source} is {} bytes long; it needs at least {MIN_SHUTDOWN_TOKEN}",
            token.len()
        ));
    }
    Ok(Some(token))
}

fn read_token_file(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|error| {
        format!(
            "cannot read the /shutdown token from {} ({SHUTDOWN_TOKEN_FILE_ENV}): {error}",
            path.display()
        )
    })
}

/// The health port: `$DEPUTY_HEALTH_CHECK_PORT`, else
/// [`DEFAULT_HEALTH_CHECK_PORT`](crate::DEFAULT_HEALTH_CHECK_PORT); `None` when the variable
/// says [`HEALTH_CHECK_OFF`](crate::HEALTH_CHECK_OFF) (serve no health endpoints: `deputy
/// run` says so to its child when it serves them itself, on the port the child would take).
///
/// # Errors
///
/// A message naming the variable if it is set but neither a port number (1 to 65535) nor
/// `off`.
///
/// ```
/// if std::env::var_os("DEPUTY_HEALTH_CHECK_PORT").is_none() {
///     assert_eq!(deputy_ipc::health_port(), Ok(Some(8081)));
/// }
/// ```
pub fn health_port() -> Result<Option<u16>, String> {
    let Ok(text) = std::env::var(crate::HEALTH_CHECK_PORT_ENV) else {
        return Ok(Some(crate::DEFAULT_HEALTH_CHECK_PORT));
    };
    if text.trim().eq_ignore_ascii_case(crate::HEALTH_CHECK_OFF) {
        return Ok(None);
    }
    match text.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok(Some(port)),
        _ => Err(format!(
            "{} is `{text}`, not a port number from 1 to 65535 (or `off`)",
            crate::HEALTH_CHECK_PORT_ENV
        )),
    }
}

/// The HTTP health endpoints of one service.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use deputy_core::ShutdownCoordinator;
/// use deputy_ipc::HealthServer;
///
/// let coordinator = ShutdownCoordinator::builder()
///     .build(deputy_smol::AsyncIoRuntime)
///     .unwrap();
/// let shutdown = coordinator.handle();
/// let server = HealthServer::bind(&shutdown, "127.0.0.1:0".parse().unwrap()).unwrap();
/// let addr = server.local_addr();
/// std::thread::spawn(move || futures::executor::block_on(server.run()));
///
/// let get = |path: &str| {
///     let mut stream = std::net::TcpStream::connect(addr).unwrap();
///     write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
///     let mut answer = String::new();
///     stream.read_to_string(&mut answer).unwrap();
///     answer.split(' ').nth(1).unwrap().to_owned()
/// };
/// assert_eq!(get("/health/ready"), "503"); // not ready yet
/// shutdown.ready();
/// assert_eq!(get("/health/ready"), "200");
/// assert_eq!(get("/health/live"), "200");
/// shutdown.trigger("example");
/// assert_eq!(get("/health/ready"), "503"); // off from the first trigger on
/// ```
#[derive(Debug)]
pub struct HealthServer {
    shutdown: Shutdown,
    listener: Async<TcpListener>,
    secret: Option<Secret>,
    metrics: bool,
    linger: Duration,
    header_read_timeout: Duration,
    max_connections: usize,
}

/// The `/shutdown` token, kept out of `Debug` output (and so out of logs).
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Shared by every connection of one server.
#[derive(Debug)]
struct Endpoint {
    shutdown: Shutdown,
    secret: Option<Secret>,
    /// Whether `/metrics` is served.
    metrics: bool,
    /// Refused `/shutdown` attempts are logged, but not so that an attacker floods the log.
    refusals: LogLimit,
    header_read_timeout: Duration,
}

impl HealthServer {
    /// Binds the endpoints on `addr`.
    ///
    /// # Errors
    ///
    /// [`IpcError::HealthAddress`] if the address cannot be bound.
    pub fn bind(shutdown: &Shutdown, addr: SocketAddr) -> Result<HealthServer, IpcError> {
        let listener = Async::<TcpListener>::bind(addr)
            .map_err(|source| IpcError::HealthAddress { addr, source })?;
        Ok(HealthServer {
            shutdown: shutdown.clone(),
            listener,
            secret: None,
            metrics: false,
            linger: DEFAULT_HEALTH_LINGER,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        })
    }

    /// How long a connection may take to send a whole request head, counted from when it
    /// opens or its previous response was sent; then it is closed. So it bounds slowloris
    /// clients (a head sent a byte at a time) and idle keep-alive connections alike. Default
    /// 5 s: the kubelet's probes send their request at once, on a new connection each time.
    ///
    /// ```
    /// # use deputy_core::ShutdownCoordinator;
    /// # let coordinator = ShutdownCoordinator::builder().build(deputy_smol::AsyncIoRuntime).unwrap();
    /// use std::time::Duration;
    /// use deputy_ipc::HealthServer;
    ///
    /// let server = HealthServer::bind(&coordinator.handle(), "127.0.0.1:0".parse().unwrap())
    ///     .unwrap()
    ///     .header_read_timeout(Duration::from_secs(2))
    ///     .max_connections(32);
    /// ```
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// The most connections served at once (default 128). A new connection beyond it takes
    /// the place of the oldest one that is not in the middle of a request (an idle or
    /// half-sent one), so probes get through however many connections others hold open; if
    /// all are busy, the new one is closed. When the process runs out of descriptors, an idle
    /// connection (or a descriptor kept in reserve) is closed so the next one can be
    /// accepted.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// Turns on `/shutdown`, for requests that carry `secret` in the
    /// [`x-deputy-token`](SHUTDOWN_TOKEN_HEADER) header. A request may add `?wait=10s` to
    /// bound its wait (default: until done). [`shutdown_token_from_env`] reads the secret
    /// from a mounted Secret or the environment.
    pub fn with_shutdown_endpoint(mut self, secret: impl Into<String>) -> Self {
        self.secret = Some(Secret(secret.into()));
        self
    }

    /// Turns on `/metrics`: the shutdown in Prometheus' text format (state, work in flight,
    /// triggers, propagation, and at Done each phase's and hook's duration and outcome; see
    /// the list in this crate's `metrics` module docs, rendered with `prometheus-client`).
    /// [`metrics_from_env`](crate::metrics_from_env) reads `DEPUTY_METRICS`.
    pub fn with_metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// How long the endpoints keep answering after the shutdown is done (default
    /// [`DEFAULT_HEALTH_LINGER`], 1 s), so a waiting `/shutdown` gets its answer and probes see the
    /// end. With `/metrics`, set it to the Prometheus scrape interval, so the shutdown's
    /// outcome, phases and hooks (served only from `Done` on) are scraped before the process
    /// exits. It never runs past the grace period (but always lasts up to 1 s if asked):
    /// the kubelet's SIGKILL follows soon after.
    ///
    /// ```
    /// # use deputy_core::ShutdownCoordinator;
    /// # let coordinator = ShutdownCoordinator::builder().build(deputy_smol::AsyncIoRuntime).unwrap();
    /// use std::time::Duration;
    /// use deputy_ipc::HealthServer;
    ///
    /// // Prometheus scrapes every 15 s.
    /// let server = HealthServer::bind(&coordinator.handle(), "127.0.0.1:0".parse().unwrap())
    ///     .unwrap()
    ///     .with_metrics()
    ///     .linger(Duration::from_secs(15));
    /// ```
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .get_ref()
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until shutdown is done and the [`linger`](Self::linger) has passed, so probes,
    /// a waiting `/shutdown` and a scrape of `/metrics` see the end.
    ///
    /// # Cancel safety
    ///
    /// Dropping it closes every connection.
    pub async fn run(self) {
        let HealthServer {
            shutdown,
            listener,
            secret,
            metrics,
            linger,
            header_read_timeout,
            max_connections,
        } = self;
        let until = async {
            shutdown.done().await;
            Timer::after(linger_left(&shutdown, linger)).await;
        };
        let endpoint = Arc::new(Endpoint {
            shutdown: shutdown.clone(),
            secret,
            metrics,
            refusals: LogLimit::new(Duration::from_secs(10)),
            header_read_timeout,
        });
        let server = Listener {
            what: "health endpoint",
            listener: listener.get_ref(),
            readable: &listener,
            max_connections,
        };
        // Connections still open at the end are dropped.
        let _open = serve_until(
            server,
            |listener| listener.accept().map(|(stream, _)| stream),
            |stream, slot| serve(stream, slot, endpoint.clone()),
            until,
        )
        .await;
    }
}

/// The linger asked for, cut to what is left of the grace period (but not below
/// [`DEFAULT_HEALTH_LINGER`], which a shutdown at its budget's end always had).
fn linger_left(shutdown: &Shutdown, linger: Duration) -> Duration {
    let left = shutdown
        .grace_period()
        .saturating_sub(shutdown.status().elapsed);
    linger.min(left.max(DEFAULT_HEALTH_LINGER))
}

async fn serve(stream: Async<TcpStream>, slot: Arc<Slot>, endpoint: Arc<Endpoint>) {
    let timeout = endpoint.header_read_timeout;
    let service = hyper::service::service_fn(move |request| {
        let (endpoint, slot) = (endpoint.clone(), slot.clone());
        async move {
            slot.set_busy(true);
            let response = route(request, &endpoint).await;
            slot.set_busy(false);
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(SmolTimer::new())
        .header_read_timeout(timeout)
        .serve_connection(FuturesIo::new(stream), service);
    if let Err(error) = connection.await {
        tracing::debug!(%error, "health connection ended");
    }
}

fn respond(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

fn json(status: StatusCode, value: &Protocol) -> Response<Full<Bytes>> {
    let mut response = respond(status, value.encode());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn status_code(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn route(request: Request<Incoming>, endpoint: &Endpoint) -> Response<Full<Bytes>> {
    let shutdown = &endpoint.shutdown;
    let path = request.uri().path();
    let method = request.method();
    let head_or_get = *method == Method::GET || *method == Method::HEAD;
    let mut response = match path {
        "/health/live" | "/health/ready" | "/health/started" | "/health/status" if !head_or_get => {
            not_allowed("GET, HEAD")
        }
        "/health/live" => respond(status_code(shutdown.is_live()), Bytes::new()),
        "/health/ready" => respond(status_code(shutdown.is_ready()), Bytes::new()),
        "/health/started" => respond(status_code(shutdown.is_started()), Bytes::new()),
        "/health/status" => json(StatusCode::OK, &Protocol::status(&shutdown.status())),
        "/metrics" if endpoint.metrics => {
            if head_or_get {
                let mut response = respond(StatusCode::OK, crate::metrics::render(shutdown));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
                );
                response
            } else {
                not_allowed("GET, HEAD")
            }
        }
        "/shutdown" if endpoint.secret.is_some() => {
            if *method != Method::GET && *method != Method::POST {
                not_allowed("GET, POST")
            } else {
                shutdown_endpoint(&request, endpoint).await
            }
        }
        _ => respond(StatusCode::NOT_FOUND, Bytes::new()),
    };
    if *method == Method::HEAD {
        *response.body_mut() = Full::new(Bytes::new());
    }
    if !shutdown.is_live() {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = respond(StatusCode::METHOD_NOT_ALLOWED, Bytes::new());
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

async fn shutdown_endpoint(
    request: &Request<Incoming>,
    endpoint: &Endpoint,
) -> Response<Full<Bytes>> {
    let shutdown = &endpoint.shutdown;
    let secret = endpoint.secret.as_ref().map_or("", |secret| &secret.0);
    let token = request
        .headers()
        .get(SHUTDOWN_TOKEN_HEADER)
        .map(HeaderValue::as_bytes);
    if !token.is_some_and(|token| constant_time_eq(token, secret.as_bytes())) {
        if let Some(suppressed) = endpoint.refusals.allow() {
            tracing::warn!(
                suppressed,
                "refused a /shutdown request without the right token"
            );
        }
        return respond(StatusCode::FORBIDDEN, Bytes::new());
    }
    let wait = request.uri().query().and_then(|query| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("wait="))
            .and_then(parse_wait)
    });
    let started = shutdown.trigger(Reason::Http);
    tracing::info!(started, "shutdown requested over http");
    let report = match wait {
        None => Some(shutdown.done().await),
        Some(limit) => within(limit, shutdown.done()).await,
    };
    match report {
        Some(report) => json(StatusCode::OK, &Protocol::done(&report)),
        None => json(StatusCode::ACCEPTED, &Protocol::status(&shutdown.status())),
    }
}

/// `250ms`, `10s` or a bare number of seconds.
fn parse_wait(text: &str) -> Option<Duration> {
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    let secs = text.strip_suffix('s').unwrap_or(text);
    secs.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_limits_parse() {
        assert_eq!(parse_wait("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_wait("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_wait("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_wait("-1"), None);
        assert_eq!(parse_wait("soon"), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secre"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
    }
}

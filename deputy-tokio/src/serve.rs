//! One port for HTTP/1 (with upgrades: WebSockets) and cleartext HTTP/2 (h2c with prior
//! knowledge, as gRPC speaks it), each closed the way its protocol allows.
//!
//! - HTTP/2: from the trigger on, each connection gets hyper's two-phase GOAWAY (a GOAWAY
//!   with the last stream id at its maximum, then, after a ping, the real one), so a
//!   multiplexed client opens its next streams elsewhere while the streams it has finish.
//! - HTTP/1: [`DrainLayer`](crate::DrainLayer) answers `Connection: close` from the trigger
//!   on; connections still open when the drain ends are closed once their current response
//!   is out (an idle keep-alive one at once).
//! - The listener accepts until the drain is over (endpoints are still propagating during
//!   the drain delay), then closes.
//!
//! Any [`Listener`] will do: TCP, or a Unix-domain socket (behind a local proxy), bound here
//! or handed over by socket activation (`LISTEN_FDS`: take it with a crate such as
//! `listenfd`, then `TcpListener::from_std` or `UnixListener::from_std`).

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use deputy_core::CancellationToken;
use deputy_core::{Arrival, Shutdown};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// The first bytes of every HTTP/2 connection (RFC 9113, section 3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How long a connection may take to send its first request's headers (HTTP/1) or its
/// preface (HTTP/2): a client that connects and says nothing holds no slot for long.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`serve`] takes connections from: a TCP or a Unix-domain listener.
pub trait Listener: Send + 'static {
    /// A connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static;

    /// The next connection; errors as `accept(2)`'s.
    fn accept(&self) -> impl Future<Output = std::io::Result<Self::Io>> + Send;

    /// The connection's first bytes, left unread (as `recv` with `MSG_PEEK`), once some
    /// have come: how [`serve`] tells HTTP/2 from HTTP/1.
    fn peek<'a>(
        io: &'a Self::Io,
        buf: &'a mut [u8],
    ) -> impl Future<Output = std::io::Result<usize>> + Send + 'a;
}

impl Listener for TcpListener {
    type Io = TcpStream;

    async fn accept(&self) -> std::io::Result<TcpStream> {
        TcpListener::accept(self).await.map(|(stream, _)| stream)
    }

    async fn peek<'a>(io: &'a TcpStream, buf: &'a mut [u8]) -> std::io::Result<usize> {
        io.peek(buf).await
    }
}

impl Listener for UnixListener {
    type Io = UnixStream;

    async fn accept(&self) -> std::io::Result<UnixStream> {
        UnixListener::accept(self).await.map(|(stream, _)| stream)
    }

    async fn peek<'a>(io: &'a UnixStream, buf: &'a mut [u8]) -> std::io::Result<usize> {
        loop {
            io.readable().await?;
            let peeked = io.try_io(tokio::io::Interest::READABLE, || {
                rustix::net::recv(io, &mut *buf, rustix::net::RecvFlags::PEEK)
                    .map(|(read, _)| read)
                    .map_err(std::io::Error::from)
            });
            match peeked {
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                result => return result,
            }
        }
    }
}

/// Serves `service` (an axum `Router`, or any tower service of hyper requests) on
/// `listener` (TCP or Unix-domain: see [`Listener`]) until the shutdown's drain is over,
/// then waits for the connections left (their responses finish; HTTP/1 and HTTP/2 close
/// cleanly). Returns once every connection is closed.
///
/// Each connection is spoken to in HTTP/2 when it opens with the HTTP/2 preface, else in
/// HTTP/1 with upgrades. See the module's items for what each gets at the trigger.
/// Long-lived streams on these connections (WebSockets, event streams, streaming calls)
/// should register with [`Shutdown::connection`] to be told when to move: the drain waits
/// for them, and this server does not cut them.
///
/// It returns once the drain is over and every connection it served has ended: at once if
/// the drain was over before it started, and when the coordinator is dropped before `Done`
/// (whose abandon cancels the tokens it watches). Dropping the future closes the listener
/// and drops every connection at once.
///
/// Run it as a shutdown hook's work, so the stopping phases wait for it:
///
/// ```no_run
/// use deputy_core::{Phase, ShutdownCoordinator};
/// use deputy_tokio::TokioRuntime;
///
/// # #[tokio::main]
/// # async fn main() -> anyhow::Result<()> {
/// let coordinator = ShutdownCoordinator::builder()
///     .phase(Phase::new("stop-accepting"))
///     .build(TokioRuntime)?;
/// let shutdown = coordinator.handle();
/// let app = axum::Router::new()
///     .route("/", axum::routing::get(|| async { "ok" }))
///     .layer(deputy_tokio::DrainLayer::new(shutdown.clone()));
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
/// let server = tokio::spawn(deputy_tokio::serve(listener, shutdown.clone(), app));
/// shutdown.hook("stop-accepting", "http", |_| async move {
///     server.await.map_err(|_| "the server panicked")
/// })?;
/// std::process::exit(coordinator.run().await.exit_code);
/// # }
/// ```
pub async fn serve<L, S, B>(listener: L, shutdown: Shutdown, service: S)
where
    L: Listener,
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    serve_with(listener, shutdown, service, ServeOptions::default()).await;
}

/// What [`serve_with`] does besides [`serve`]: connections recycled by age.
///
/// A connection that never ends pins its client to this pod: after a rollout or a
/// scale-out the new pods get no share of it. With a maximum age, each connection is asked
/// to end once it is that old (give or take the jitter, ±10 % by default, so that the
/// connections opened together do not all end together): HTTP/2 gets GOAWAY (the streams it
/// has finish; it is closed when the grace is over, as gRPC's `max_connection_age_grace`
/// does), HTTP/1 gets `Connection: close` on its next response (one that sends no request
/// within the grace is closed then; a request in flight on HTTP/1 is never cut). The
/// client's next connection goes wherever the load balancer sends it.
///
/// ```
/// use std::time::Duration;
///
/// let options = deputy_tokio::ServeOptions::default()
///     .max_connection_age(Duration::from_secs(300))
///     .max_connection_age_grace(Duration::from_secs(30));
/// # drop(options);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    max_connection_age: Option<Duration>,
    grace: Duration,
    jitter: f64,
    #[cfg(feature = "tls")]
    tls: Option<crate::Tls>,
}

impl Default for ServeOptions {
    /// No maximum age; when one is set, a grace of 10 s and a jitter of ±10 %.
    fn default() -> Self {
        ServeOptions {
            max_connection_age: None,
            grace: Duration::from_secs(10),
            jitter: 0.1,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl ServeOptions {
    /// Asks each connection to end once it is this old (± the jitter).
    pub fn max_connection_age(mut self, age: Duration) -> Self {
        self.max_connection_age = Some(age);
        self
    }

    /// How long a connection asked to end by age may take to finish what it has; then it
    /// is closed. Default 10 s.
    pub fn max_connection_age_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// How far each connection's age may differ from the maximum, as a fraction of it
    /// (0.1: ±10 %, the default; clamped to 0..=0.5).
    pub fn connection_age_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 0.5);
        self
    }

    /// Serves TLS (the `tls` feature): each connection's handshake is made in its own task;
    /// ALPN offers `h2` and `http/1.1`, and the connection's first bytes decide, as on
    /// cleartext. The shutdown is the same as without TLS. A handshake still unfinished when
    /// the drain ends is dropped (the connection closed), as is a connection that has not
    /// finished it and sent its first bytes within 10 s.
    ///
    /// ```no_run
    /// let tls = deputy_tokio::Tls::from_pem_files("tls.crt", "tls.key")?;
    /// let options = deputy_tokio::ServeOptions::default().tls(tls);
    /// # drop(options);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The age of the connection numbered `n`: the maximum, moved by up to ± the jitter.
    fn age_of(&self, n: u64) -> Option<Duration> {
        let age = self.max_connection_age?;
        // SplitMix64 of the connection's number and the process's start: spread, not secret.
        let mut x = n.wrapping_add(seed()).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        let unit = (x >> 11) as f64 / (1u64 << 53) as f64; // 0..1
        Some(age.mul_f64(1.0 + self.jitter * (2.0 * unit - 1.0)))
    }
}

/// A number that differs between runs, for the ages' jitter.
fn seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        now.as_nanos() as u64 ^ u64::from(std::process::id())
    })
}

/// [`serve`], with [`ServeOptions`].
///
/// ```no_run
/// # async fn example(listener: tokio::net::TcpListener, shutdown: deputy_core::Shutdown) {
/// use std::time::Duration;
///
/// let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
/// let options = deputy_tokio::ServeOptions::default().max_connection_age(Duration::from_secs(300));
/// deputy_tokio::serve_with(listener, shutdown, app, options).await;
/// # }
/// ```
pub async fn serve_with<L, S, B>(listener: L, shutdown: Shutdown, service: S, options: ServeOptions)
where
    L: Listener,
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let stopping = shutdown.stopping_token();
    shutdown.watch_arrivals();
    let mut connections = JoinSet::new();
    let mut accepted = 0u64;
    loop {
        tokio::select! {
            stream = crate::accept::riding_out(|| listener.accept()) => {
                shutdown.arrived(Arrival::Connection);
                accepted += 1;
                let age = options.age_of(accepted).map(|age| {
                    crate::ConnectionAge::new(tokio::time::Instant::now() + age)
                });
                let service = TowerToHyperService::new(crate::age::WithAge {
                    inner: service.clone(),
                    age: age.clone(),
                });
                let ends = Ends {
                    draining: shutdown.draining_token(),
                    stopping: stopping.clone(),
                    age,
                    grace: options.grace,
                };
                #[cfg(feature = "tls")]
                if let Some(tls) = &options.tls {
                    let tls = tls.acceptor().clone();
                    connections.spawn(over_tls(stream, tls, service, ends));
                    continue;
                }
                connections.spawn(connection::<L, _, _>(stream, service, ends));
            }
            // Reap as they end, so a long-running server does not keep a handle per
            // connection it ever had.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = stopping.cancelled() => break,
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// An error as hyper takes it.
type BoxError = Box<dyn StdError + Send + Sync>;

/// The services `serve` runs, as one bound for its inner functions (the public ones spell
/// theirs out, for their docs).
trait App<B>:
    tower_service::Service<
        Request<Incoming>,
        Response = Response<B>,
        Future: Send + 'static,
        Error: Into<BoxError>,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B> App<B> for S where
    S: tower_service::Service<
            Request<Incoming>,
            Response = Response<B>,
            Future: Send + 'static,
            Error: Into<BoxError>,
        > + Clone
        + Send
        + 'static
{
}

/// The response bodies it sends.
trait Body: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static {}

impl<B> Body for B where B: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static {}

/// Its connections' streams.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<I> Io for I where I: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

/// What ends a connection: the drain (GOAWAY for HTTP/2), the drain's end, its age.
struct Ends {
    draining: CancellationToken,
    stopping: CancellationToken,
    /// Its age, if connections have a maximum one: in its requests' extensions.
    age: Option<crate::ConnectionAge>,
    /// The grace after the age.
    grace: Duration,
}

impl Ends {
    /// Resolves once the connection is as old as its age (never without one), having told
    /// the streams that watch its age to move.
    async fn aged(&self) {
        match &self.age {
            Some(age) => {
                tokio::time::sleep_until(age.deadline()).await;
                age.reached();
            }
            None => std::future::pending().await,
        }
    }

    /// Once the connection is served: if streams on it still watch its age (a WebSocket
    /// that took it over), waits for the age to tell them, or for the drain's end.
    async fn outlive(&self) {
        if self.age.as_ref().is_some_and(|age| age.still_watched()) {
            tokio::select! {
                () = self.aged() => {}
                () = self.stopping.cancelled() => {}
            }
        }
    }
}

/// Serves `io` in HTTP/2 or HTTP/1, then outlives it for the streams that watch its age.
async fn speak<I: Io, S: App<B>, B: Body>(
    io: I,
    is_http2: bool,
    service: TowerToHyperService<S>,
    ends: Ends,
) {
    let io = TokioIo::new(io);
    if is_http2 {
        http2(io, service, &ends).await;
    } else {
        http1(io, service, &ends).await;
    }
    ends.outlive().await;
}

/// Serves one connection in the protocol it opens with.
async fn connection<L: Listener, S: App<B>, B: Body>(
    stream: L::Io,
    service: TowerToHyperService<S>,
    ends: Ends,
) {
    let first_bytes = tokio::time::timeout(FIRST_BYTES_TIMEOUT, opens_with_preface::<L>(&stream));
    let is_http2 = tokio::select! {
        read = first_bytes => match read {
            Ok(Ok(is_http2)) => is_http2,
            _ => return, // silent, or gone, before its first bytes
        },
        // Still silent when the server stops: nothing of it is in flight.
        () = ends.stopping.cancelled() => return,
    };
    speak(stream, is_http2, service, ends).await;
}

/// Serves one connection over TLS, in the protocol it opens with (as on cleartext: ALPN
/// `h2` is how a client learns it may send the HTTP/2 preface).
#[cfg(feature = "tls")]
async fn over_tls<I: Io, S: App<B>, B: Body>(
    stream: I,
    tls: tokio_rustls::TlsAcceptor,
    service: TowerToHyperService<S>,
    ends: Ends,
) {
    // The handshake and the first bytes after it, as the first bytes on cleartext: a
    // connection that is slow or silent, or still at it when the drain ends, is dropped.
    let opening = async {
        let mut stream = tls.accept(stream).await?;
        let (first, is_http2) = crate::tls::first_bytes(&mut stream).await?;
        std::io::Result::Ok((crate::tls::Prefixed::new(first, stream), is_http2))
    };
    let (stream, is_http2) = tokio::select! {
        opened = tokio::time::timeout(FIRST_BYTES_TIMEOUT, opening) => match opened {
            Ok(Ok(opened)) => opened,
            _ => return, // too slow, failed (rustls sent the alert), or gone
        },
        () = ends.stopping.cancelled() => return,
    };
    // The first bytes decide, as on cleartext; ALPN `h2` is where clients send the preface.
    speak(stream, is_http2, service, ends).await;
}

/// Serves an HTTP/2 connection: GOAWAY at the trigger (after its first response, for one
/// opened during the drain), or at its age (then closed after the grace).
async fn http2<I: Io, S: App<B>, B: Body>(
    io: TokioIo<I>,
    service: TowerToHyperService<S>,
    ends: &Ends,
) {
    // A connection opened during the drain (a client that has not yet seen the endpoint
    // go) is served its first request before its GOAWAY: sent at once, the GOAWAY would
    // reach the client before its request left, and the request would fail.
    let opened_draining = ends.draining.is_cancelled();
    let served = Arc::new(Notify::new());
    let service = FirstResponse {
        inner: service,
        served: served.clone(),
    };
    let draining = ends.draining.clone();
    let goaway = async move {
        draining.cancelled().await;
        if opened_draining {
            served.notified().await;
        }
    };
    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .serve_connection(io, service);
    let close = async {
        tokio::select! {
            () = goaway => {}
            () = ends.stopping.cancelled() => {}
            () = ends.aged() => return Some(ends.grace),
        }
        None
    };
    until_closed(connection, close, |c| c.as_mut().graceful_shutdown()).await;
}

/// Serves an HTTP/1 connection (with upgrades): closed at the drain's end once its response
/// is out; past its age, its next response says `Connection: close`, and one that sends no
/// request within the grace is closed then (a request in flight is never cut).
async fn http1<I: Io, S: App<B>, B: Body>(
    io: TokioIo<I>,
    service: TowerToHyperService<S>,
    ends: &Ends,
) {
    let aged = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let service = CloseWhenAged {
        inner: service,
        aged: aged.clone(),
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(FIRST_BYTES_TIMEOUT)
        .serve_connection(io, service)
        .with_upgrades();
    let close = async {
        tokio::select! {
            () = ends.stopping.cancelled() => {}
            () = ends.aged() => {
                aged.store(true, std::sync::atomic::Ordering::Relaxed);
                tokio::select! {
                    () = tokio::time::sleep(ends.grace) => {}
                    () = ends.stopping.cancelled() => {}
                }
            }
        }
        None
    };
    until_closed(connection, close, |c| c.as_mut().graceful_shutdown()).await;
}

/// An HTTP/1 connection's service that adds `Connection: close` to its responses once the
/// connection is past its age (hyper then closes it after the response).
#[derive(Debug, Clone)]
struct CloseWhenAged<S> {
    inner: S,
    aged: Arc<std::sync::atomic::AtomicBool>,
}

impl<S, R, B> hyper::service::Service<R> for CloseWhenAged<S>
where
    S: hyper::service::Service<R, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = MaybeClose<S::Future>;

    fn call(&self, request: R) -> Self::Future {
        MaybeClose {
            future: self.inner.call(request),
            aged: self.aged.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// A response's future that adds `Connection: close` if its connection is past its age
    /// when the response is ready.
    #[derive(Debug)]
    struct MaybeClose<F> {
        #[pin]
        future: F,
        aged: Arc<std::sync::atomic::AtomicBool>,
    }
}

impl<F, B, E> Future for MaybeClose<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let mut output = std::task::ready!(this.future.poll(cx));
        if let Ok(response) = &mut output {
            if this.aged.load(std::sync::atomic::Ordering::Relaxed) {
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
        }
        Poll::Ready(output)
    }
}

/// A connection's service that says when its first response is ready.
#[derive(Debug, Clone)]
struct FirstResponse<S> {
    inner: S,
    served: Arc<Notify>,
}

impl<S, R> hyper::service::Service<R> for FirstResponse<S>
where
    S: hyper::service::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Served<S::Future>;

    fn call(&self, request: R) -> Self::Future {
        Served {
            future: self.inner.call(request),
            served: Some(self.served.clone()),
        }
    }
}

pin_project_lite::pin_project! {
    /// A response's future that notifies when it is ready.
    #[derive(Debug)]
    struct Served<F> {
        #[pin]
        future: F,
        served: Option<Arc<Notify>>,
    }
}

impl<F: Future> Future for Served<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = std::task::ready!(this.future.poll(cx));
        if let Some(served) = this.served.take() {
            // A permit, kept if the connection is not waiting yet.
            served.notify_one();
        }
        Poll::Ready(output)
    }
}

/// Drives `connection` to its end, asking it to close gracefully once `close` resolves;
/// if `close` gives a grace, the connection is dropped (closed) when it is over.
async fn until_closed<C, E>(
    connection: C,
    close: impl Future<Output = Option<Duration>>,
    graceful_shutdown: impl FnOnce(&mut Pin<&mut C>),
) where
    C: Future<Output = Result<(), E>>,
{
    let mut connection = std::pin::pin!(connection);
    let grace = tokio::select! {
        _ = connection.as_mut() => return,
        grace = close => grace,
    };
    graceful_shutdown(&mut connection);
    match grace {
        Some(grace) => {
            let _ = tokio::time::timeout(grace, connection).await;
        }
        None => {
            let _ = connection.await;
        }
    }
}

/// Whether the connection's first bytes are the HTTP/2 preface, without consuming them.
/// Decided as soon as a byte differs (an HTTP/1 request line differs at its first); while
/// what came so far is a prefix of the preface, it looks again shortly.
async fn opens_with_preface<L: Listener>(stream: &L::Io) -> std::io::Result<bool> {
    let mut first = [0u8; PREFACE.len()];
    loop {
        let read = L::peek(stream, &mut first).await?;
        if read == 0 || first[..read] != PREFACE[..read] {
            return Ok(false);
        }
        if read == PREFACE.len() {
            return Ok(true);
        }
        // Data is there, so `peek` would return at once: wait a little before looking again.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

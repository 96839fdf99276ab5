//! A tower layer that counts every request as in flight until its response body has been sent
//! to its end and, once shutdown has begun, asks HTTP/1 clients to close their keep-alive
//! connections. It notes every request ([`Shutdown::arrived`]), so the report says when the
//! last new one came after the trigger.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use deputy_core::{Arrival, DrainGuard, Shutdown};
use http::header::{CONNECTION, HeaderValue};
use pin_project_lite::pin_project;

/// Wraps a service so that each request holds a [`DrainGuard`] until its response body has
/// been sent to its last byte, or dropped (a streamed download, a chunked report: the drain
/// waits for it, within the drain timeout), and every response sent after the first trigger
/// carries `Connection: close`: kept-alive
/// clients then open their next connection elsewhere (to a pod that is not shutting down),
/// instead of holding this one open to the end. Requests that arrive while draining are
/// served as usual.
///
/// # Examples
///
/// ```
/// use deputy_core::{ManualClock, ShutdownCoordinator};
/// use deputy_tokio::DrainLayer;
/// use tower::{Layer, Service, ServiceExt};
///
/// # futures::executor::block_on(async {
/// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
/// let shutdown = coordinator.handle();
/// let mut service = DrainLayer::new(shutdown.clone()).layer(tower::service_fn(|_req: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new("ok"))
/// }));
///
/// let response = service.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
/// assert!(response.headers().get("connection").is_none());
///
/// shutdown.trigger("deploy");
/// let response = service.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
/// assert_eq!(response.headers()["connection"], "close");
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct DrainLayer {
    shutdown: Shutdown,
}

impl DrainLayer {
    /// A layer for `shutdown`. It reports every request's arrival, so the report's
    /// propagation is measured (see `Shutdown::watch_arrivals`).
    pub fn new(shutdown: Shutdown) -> Self {
        shutdown.watch_arrivals();
        Self { shutdown }
    }
}

impl<S> tower_layer::Layer<S> for DrainLayer {
    type Service = Drain<S>;

    fn layer(&self, inner: S) -> Drain<S> {
        Drain {
            inner,
            shutdown: self.shutdown.clone(),
        }
    }
}

/// The service made by [`DrainLayer`].
#[derive(Debug, Clone)]
pub struct Drain<S> {
    inner: S,
    shutdown: Shutdown,
}

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for Drain<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<DrainBody<ResBody>>;
    type Error = S::Error;
    type Future = DrainFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> DrainFuture<S::Future> {
        // After the trigger, the last of these is this run's propagation lag.
        self.shutdown.arrived(Arrival::Request);
        // HTTP/2 and later have no `Connection` header (RFC 9113, 8.2.2): their GOAWAY is
        // the server's (see `serve`).
        let http1 = request.version() < http::Version::HTTP_2;
        DrainFuture {
            // Named, so that `deputy status` and the report say which requests hold the
            // drain: recorded as they are, never formatted.
            guard: Some(
                self.shutdown
                    .guard_request(request.method().as_str(), request.uri().path()),
            ),
            http1,
            shutdown: self.shutdown.clone(),
            inner: self.inner.call(request),
        }
    }
}

pin_project! {
    /// The response future of [`Drain`].
    #[must_use = "futures do nothing unless awaited"]
    pub struct DrainFuture<F> {
        #[pin]
        inner: F,
        guard: Option<DrainGuard>,
        http1: bool,
        shutdown: Shutdown,
    }
}

impl<F> std::fmt::Debug for DrainFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrainFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for DrainFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<DrainBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = ready!(this.inner.poll(cx));
        // Not a let chain: this crate builds with Rust 1.85 (let chains are 1.88).
        let asks_to_close = *this.http1 && this.shutdown.is_triggered();
        if let (Ok(response), true) = (&mut result, asks_to_close) {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        // The guard goes with the body: the request is in flight until its last byte.
        let guard = this.guard.take();
        Poll::Ready(result.map(|response| response.map(|body| DrainBody { inner: body, guard })))
    }
}

pin_project! {
    /// A response body of [`Drain`]: it holds its request's [`DrainGuard`] until its last
    /// frame has been read, or an error, or until it is dropped (the client went away), so
    /// a streaming response keeps the drain open while it streams.
    pub struct DrainBody<B> {
        #[pin]
        inner: B,
        guard: Option<DrainGuard>,
    }
}

impl<B> std::fmt::Debug for DrainBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrainBody")
            .field("in_flight", &self.guard.is_some())
            .finish_non_exhaustive()
    }
}

impl<B: http_body::Body> http_body::Body for DrainBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        // The end, an error, or the last frame (a server may not ask again once the body
        // says it has ended): the request is over.
        if !matches!(frame, Some(Ok(_))) || this.inner.is_end_stream() {
            this.guard.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

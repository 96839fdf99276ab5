//! The accept loop both servers share.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

use async_io::{Async, Timer};
use futures::stream::{FuturesUnordered, StreamExt};

/// The connections being served, each a boxed future.
pub(crate) type Connections = FuturesUnordered<Pin<Box<dyn Future<Output = ()> + Send>>>;

/// Accepts connections on `listener` and serves each with `serve`, all concurrently inside
/// this one future (nothing is spawned), until `until` resolves. Returns the connections
/// still open then, for the caller to finish or drop.
///
/// A failed accept (out of file descriptors, say) pauses accepting for 50 ms instead of
/// spinning; connections already open are served meanwhile.
pub(crate) async fn serve_until<L, S, F>(
    what: &'static str,
    listener: &Async<L>,
    accept: impl Fn(&L) -> io::Result<S>,
    serve: impl Fn(Async<S>) -> F,
    until: impl Future,
) -> Connections
where
    S: std::os::fd::AsFd,
    F: Future<Output = ()> + Send + 'static,
{
    let mut connections = Connections::new();
    let mut until = pin!(until);
    let mut backoff: Option<Timer> = None;
    poll_fn(|cx| {
        if until.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        loop {
            // Serve: poll the connections that are ready; finished ones leave the set.
            while let Poll::Ready(Some(())) = connections.poll_next_unpin(cx) {}
            if let Some(timer) = &mut backoff {
                if Pin::new(timer).poll(cx).is_pending() {
                    return Poll::Pending;
                }
                backoff = None;
            }
            // Accept: one new connection, then serve again so it gets polled.
            match listener.poll_readable(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => {
                    tracing::warn!(%error, "{what} failed; not accepting any more");
                    return Poll::Pending;
                }
                Poll::Ready(Ok(())) => {}
            }
            match accept(listener.get_ref()).and_then(Async::new) {
                Ok(stream) => connections.push(Box::pin(serve(stream))),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => {
                    tracing::warn!(%error, "{what}: cannot accept a connection");
                    backoff = Some(Timer::after(Duration::from_millis(50)));
                }
            }
        }
    })
    .await;
    connections
}

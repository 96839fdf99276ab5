//! An accept loop that rides out a flood: per-connection failures are skipped, and running
//! out of descriptors pauses accepting (with a back-off) instead of spinning a core.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

const MIN_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Accepts the next connection on `listener`, whatever goes wrong on the way:
///
/// - a connection that failed before it was accepted (reset, aborted) is skipped;
/// - running out of descriptors (EMFILE, ENFILE) or kernel memory (ENOBUFS, ENOMEM), or any
///   other error, pauses accepting: 10 ms, doubling up to 1 s while the errors go on, so a
///   process at its descriptor limit waits for connections to close instead of spinning at
///   full CPU (as a `loop { let Ok(..) = accept().await else { continue } }` does). One line
///   is logged when the pauses begin and one when accepting works again.
///
/// Connections already accepted are not touched: they go on being served, and their
/// closing is what gives descriptors back.
///
/// # Cancel safety
///
/// Cancel safe, as [`TcpListener::accept`]: no connection is lost if it is dropped.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
/// loop {
///     let (stream, _peer) = deputy_tokio::accept(&listener).await;
///     tokio::spawn(async move {
///         drop(stream); // serve it
///     });
/// }
/// # }
/// ```
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    riding_out(|| listener.accept()).await
}

/// [`accept`]'s loop for any listener: `accept` is called until it gives a connection,
/// skipping the errors of one connection and pausing on the others.
pub(crate) async fn riding_out<T, F>(mut accept: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = io::Result<T>>,
{
    let mut pause = MIN_PAUSE;
    let mut paused_since: Option<Instant> = None;
    loop {
        match accept().await {
            Ok(accepted) => {
                if let Some(since) = paused_since {
                    let paused_ms = since.elapsed().as_millis() as u64;
                    tracing::info!(paused_ms, "accepting connections again");
                }
                return accepted;
            }
            Err(error) if is_connection_error(&error) => {}
            Err(error) => {
                if paused_since.is_none() {
                    tracing::warn!(%error, "cannot accept connections; pausing until it passes");
                    paused_since = Some(Instant::now());
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
}

/// An error of one connection, not of the listener: skip it and accept the next.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

//! Telling a WebSocket client to move, on tokio's timer: deputy-core's
//! [`going_away`](deputy_core::websocket::going_away) with a bounded wait. A close frame with
//! code 1001 ("going away") and a reason goes out, then the wait for the client's own close
//! frame (RFC 6455, section 7.1.2), so the client sees a clean close it reconnects from, not
//! an abnormal closure (1006).

use std::time::Duration;

use futures::{Sink, Stream};

pub use deputy_core::websocket::{CLOSE_WAIT, Closed, GOING_AWAY, SERVICE_RESTART};

/// Sends `close` (a close frame with [`GOING_AWAY`] and a reason) on `socket`, then reads
/// and discards what the client still sends until its close frame (for which `is_close` is
/// true), the connection's end, or `wait` (on tokio's timer), whichever is first. It owns
/// the socket and watches no handle or coordinator: it always ends by `wait`'s end. Dropping
/// it drops the socket.
///
/// # Errors
///
/// The socket's error if the close frame cannot be sent.
///
/// # Examples
///
/// With axum's WebSocket, in the connection's task, on the registration's notice:
///
/// ```
/// use axum::extract::ws::{CloseFrame, Message, WebSocket};
/// use deputy_tokio::websocket::{CLOSE_WAIT, GOING_AWAY, going_away};
///
/// async fn serve_socket(mut socket: WebSocket, connection: deputy_core::Connection) {
///     loop {
///         tokio::select! {
///             _ = connection.notice() => break,
///             message = socket.recv() => match message {
///                 Some(Ok(_message)) => {} // served as usual
///                 _ => return,             // the client closed, or left
///             },
///         }
///     }
///     let close = Message::Close(Some(CloseFrame {
///         code: GOING_AWAY,
///         reason: "server restarting; reconnect".into(),
///     }));
///     let closed = going_away(socket, close, |m| matches!(m, Message::Close(_)), CLOSE_WAIT).await;
///     tracing::debug!(?closed, "websocket closed");
/// } // the registration drops here: no longer in flight
/// ```
pub async fn going_away<S, M, E>(
    socket: S,
    close: M,
    is_close: impl Fn(&M) -> bool,
    wait: Duration,
) -> Result<Closed, E>
where
    S: Sink<M, Error = E> + Stream<Item = Result<M, E>> + Unpin,
{
    deputy_core::websocket::going_away(socket, close, is_close, tokio::time::sleep(wait)).await
}

//! Telling a WebSocket client to move: a close frame with code 1001 ("going away") and a
//! reason, then a bounded wait for the client's own close frame (RFC 6455, section 7.1.2),
//! so the client sees a clean close it reconnects from, not an abnormal closure (1006).
//!
//! Generic over the socket: anything that is a `Sink` of messages and a `Stream` of
//! results of messages, as axum's `WebSocket` and tokio-tungstenite's `WebSocketStream`
//! both are. The caller makes the close message (`Message::Close(Some(CloseFrame { code:
//! GOING_AWAY, reason }))` in either crate) and says which incoming message is a close.

use std::time::Duration;

use futures::{Sink, SinkExt, Stream, StreamExt};

/// Close code 1001: the server is going away (restarting, or the pod terminating).
pub const GOING_AWAY: u16 = 1001;
/// Close code 1012: the service is restarting; some clients reconnect sooner on it.
pub const SERVICE_RESTART: u16 = 1012;
/// A sensible bound on the wait for the client's close frame.
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// How the close handshake went, from the server's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The client answered with its close frame: a clean close on both sides.
    Answered,
    /// The connection ended (or failed) before the client's close frame came.
    Gone,
    /// No close frame came within the wait; the caller drops the socket.
    NoAnswer,
}

/// Sends `close` (a close frame with [`GOING_AWAY`] and a reason) on `socket`, then reads
/// and discards what the client still sends until its close frame (for which `is_close` is
/// true), the connection's end, or `wait`, whichever is first.
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
    mut socket: S,
    close: M,
    is_close: impl Fn(&M) -> bool,
    wait: Duration,
) -> Result<Closed, E>
where
    S: Sink<M, Error = E> + Stream<Item = Result<M, E>> + Unpin,
{
    socket.send(close).await?;
    let answer = async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(message) if is_close(&message) => return Closed::Answered,
                Ok(_) => {}
                Err(_) => return Closed::Gone,
            }
        }
        Closed::Gone
    };
    Ok(tokio::time::timeout(wait, answer)
        .await
        .unwrap_or(Closed::NoAnswer))
}

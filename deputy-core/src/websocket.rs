//! Telling a WebSocket client to move, on any runtime: a close frame with code 1001 ("going
//! away") and a reason, then a bounded wait for the client's own close frame (RFC 6455,
//! section 7.1.2), so the client sees a clean close it reconnects from, not an abnormal
//! closure (1006). deputy-tokio and deputy-smol wrap [`going_away`] with their timers.
//!
//! Generic over the socket: anything that is a `Sink` of messages and a `Stream` of results
//! of messages, as axum's `WebSocket`, tokio-tungstenite's and async-tungstenite's
//! `WebSocketStream` are. The caller makes the close message (`Message::Close(Some(CloseFrame
//! { code: GOING_AWAY, reason }))` in those crates) and says which incoming message is a close.

use std::future::Future;
use std::time::Duration;

use futures::{Sink, SinkExt, Stream, StreamExt};

/// Close code 1001: the server is going away (restarting, or the pod terminating).
///
/// ```
/// use deputy_core::websocket::GOING_AWAY;
///
/// // The close frame's payload: the code, big-endian, then the reason (RFC 6455, 5.5.1).
/// let mut payload = GOING_AWAY.to_be_bytes().to_vec();
/// payload.extend_from_slice(b"server restarting");
/// assert_eq!(&payload[..2], &[0x03, 0xe9]);
/// ```
pub const GOING_AWAY: u16 = 1001;
/// Close code 1012: the service is restarting; some clients reconnect sooner on it.
///
/// ```
/// use deputy_core::websocket::{GOING_AWAY, SERVICE_RESTART};
///
/// // Clients that know 1012 may reconnect sooner on it; 1001 is what every client knows.
/// let clients_know_1012 = false;
/// let code = if clients_know_1012 { SERVICE_RESTART } else { GOING_AWAY };
/// assert_eq!(code, 1001);
/// ```
pub const SERVICE_RESTART: u16 = 1012;
/// A sensible bound on the wait for the client's close frame.
///
/// ```
/// use deputy_core::websocket::CLOSE_WAIT;
/// use deputy_core::{ManualClock, runtime::Runtime};
///
/// let clock = ManualClock::new();
/// // The deadline for `going_away`: the client has this long to answer.
/// let deadline = clock.sleep_until(clock.now() + CLOSE_WAIT);
/// # drop(deadline);
/// ```
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// How the close handshake went, from the server's side.
///
/// ```
/// use deputy_core::websocket::Closed;
///
/// // What a close handshake may end as, and what a server logs for it:
/// let said = |closed: Closed| match closed {
///     Closed::Answered => "clean close",
///     Closed::Gone => "the client went first",
///     Closed::NoAnswer => "dropped after the wait",
/// };
/// assert_eq!(said(Closed::Answered), "clean close");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The client answered with its close frame: a clean close on both sides.
    Answered,
    /// The connection ended (or failed) before the client's close frame came.
    Gone,
    /// No close frame came before the deadline; the caller drops the socket.
    NoAnswer,
}

/// Sends `close` on `socket`, then reads and discards what the client still sends until its
/// close frame (for which `is_close` is true), the connection's end, or `deadline`, whichever
/// is first.
///
/// # Errors
///
/// The socket's error if the close frame cannot be sent.
///
/// # Examples
///
/// In a connection's task, on its registration's notice (see deputy-tokio's
/// `websocket::going_away` for the same with axum, and a timer given):
///
/// ```
/// use deputy_core::websocket::{Closed, GOING_AWAY, going_away};
/// use futures::{Sink, Stream};
///
/// /// A text protocol's socket: a close is the message "close <code>".
/// async fn move_on<S, E>(socket: S, deadline: impl Future<Output = ()>) -> Result<Closed, E>
/// where
///     S: Sink<String, Error = E> + Stream<Item = Result<String, E>> + Unpin,
/// {
///     let close = format!("close {GOING_AWAY}");
///     going_away(socket, close, |m| m.starts_with("close"), deadline).await
/// }
/// ```
pub async fn going_away<S, M, E>(
    mut socket: S,
    close: M,
    is_close: impl Fn(&M) -> bool,
    deadline: impl Future<Output = ()>,
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
    let answer = std::pin::pin!(answer);
    let deadline = std::pin::pin!(deadline);
    Ok(match futures::future::select(answer, deadline).await {
        futures::future::Either::Left((closed, _)) => closed,
        futures::future::Either::Right(((), _)) => Closed::NoAnswer,
    })
}

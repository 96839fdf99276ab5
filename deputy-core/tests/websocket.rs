//! `websocket::going_away` against a stand-in socket (a channel each way): the close frame
//! goes out first, messages before the client's close are read and dropped, and each way the
//! handshake can end is told apart.

use std::pin::Pin;
use std::task::{Context, Poll};

use deputy_core::websocket::{Closed, going_away};
use futures::channel::mpsc::{self, SendError, UnboundedReceiver, UnboundedSender};
use futures::executor::block_on;
use futures::{Sink, Stream, StreamExt};

/// What the server sends goes to `sent`; what the client says comes from `said`.
struct Socket {
    sent: UnboundedSender<&'static str>,
    said: UnboundedReceiver<Result<&'static str, SendError>>,
}

impl Sink<&'static str> for Socket {
    type Error = SendError;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        Pin::new(&mut self.sent).poll_ready(cx)
    }
    fn start_send(mut self: Pin<&mut Self>, item: &'static str) -> Result<(), SendError> {
        Pin::new(&mut self.sent).start_send(item)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        Pin::new(&mut self.sent).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        Pin::new(&mut self.sent).poll_close(cx)
    }
}

impl Stream for Socket {
    type Item = Result<&'static str, SendError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.said.poll_next_unpin(cx)
    }
}

/// A socket whose client says `said` (then goes quiet, or hangs up with `hang_up`); the
/// receiver of what the server sent.
fn socket(
    said: &[&'static str],
    hang_up: bool,
) -> (
    Socket,
    UnboundedReceiver<&'static str>,
    UnboundedSender<Result<&'static str, SendError>>,
) {
    let (sent, from_server) = mpsc::unbounded();
    let (client, said_rx) = mpsc::unbounded();
    for message in said {
        client.unbounded_send(Ok(*message)).unwrap();
    }
    if hang_up {
        client.close_channel();
    }
    (
        Socket {
            sent,
            said: said_rx,
        },
        from_server,
        client,
    )
}

const IS_CLOSE: fn(&&str) -> bool = |m| m.starts_with("close");

#[test]
fn the_close_goes_out_and_the_clients_close_answers_it() {
    let (socket, mut from_server, _client) = socket(&["chat", "close 1000"], false);
    let closed = block_on(going_away(
        socket,
        "close 1001",
        IS_CLOSE,
        std::future::pending(),
    ));
    assert_eq!(closed, Ok(Closed::Answered));
    assert_eq!(block_on(from_server.next()), Some("close 1001"));
}

#[test]
fn a_client_that_hangs_up_without_a_close_is_gone() {
    let (socket, _from_server, _client) = socket(&["chat"], true);
    let closed = block_on(going_away(
        socket,
        "close 1001",
        IS_CLOSE,
        std::future::pending(),
    ));
    assert_eq!(closed, Ok(Closed::Gone));
}

#[test]
fn a_silent_client_is_left_at_the_deadline() {
    let (socket, _from_server, _client) = socket(&["chat"], false);
    let closed = block_on(going_away(socket, "close 1001", IS_CLOSE, async {}));
    assert_eq!(closed, Ok(Closed::NoAnswer));
}

#[test]
fn a_close_that_cannot_be_sent_is_the_error() {
    let (socket, from_server, _client) = socket(&[], false);
    drop(from_server);
    let closed = block_on(going_away(
        socket,
        "close 1001",
        IS_CLOSE,
        std::future::pending(),
    ));
    assert!(closed.is_err());
}

//! The waiting loops every future and blocking wait in this crate is built on.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use event_listener::{EventListener, Listener};

/// Polls until `check` yields a value. Between checks it waits on a listener made by
/// `listen`, registered *before* the re-check that follows, so a notification that lands
/// between a failed check and the registration is never lost: the re-check sees its effect.
pub(crate) fn poll_until<T>(
    listener: &mut Option<EventListener>,
    cx: &mut Context<'_>,
    listen: impl Fn() -> EventListener,
    mut check: impl FnMut() -> Option<T>,
) -> Poll<T> {
    loop {
        if let Some(value) = check() {
            *listener = None;
            return Poll::Ready(value);
        }
        match listener {
            None => *listener = Some(listen()),
            Some(waiting) => {
                ready!(Pin::new(waiting).poll(cx));
                *listener = None;
            }
        }
    }
}

/// The blocking twin of [`poll_until`]: parks the thread until `done` holds, with the same
/// register-then-re-check order.
pub(crate) fn block_until(listen: impl Fn() -> EventListener, done: impl Fn() -> bool) {
    while !done() {
        let listener = listen();
        if done() {
            return;
        }
        listener.wait();
    }
}

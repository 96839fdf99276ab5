//! The age of the HTTP connection a request came on, for the long-lived streams on it
//! (WebSockets, event streams, streaming calls): when [`serve_with`](crate::serve_with)
//! recycles a connection by age, the streams registered with [`ConnectionAge::watch`] are
//! told to move ([`Notice::Move`](deputy_core::Notice::Move)) at that moment, as at a
//! shutdown, so they end with their farewell instead of being cut when the connection's
//! grace is over.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use deputy_core::{Connection, Mover};
use http::Request;
use tokio::time::Instant;

/// In each request's extensions when [`serve_with`](crate::serve_with) has a maximum
/// connection age: the age of the connection the request came on.
///
/// An axum handler takes it as `Option<Extension<ConnectionAge>>` (none without a maximum
/// age), and watches its stream's registration, before it answers (for a WebSocket: before
/// it returns the upgrade):
///
/// ```
/// use axum::Extension;
/// use axum::extract::{State, WebSocketUpgrade};
/// use axum::response::Response;
/// use deputy_core::Shutdown;
/// use deputy_tokio::ConnectionAge;
///
/// async fn ws(
///     upgrade: WebSocketUpgrade,
///     State(shutdown): State<Shutdown>,
///     age: Option<Extension<ConnectionAge>>,
/// ) -> Response {
///     let connection = shutdown.connection_named("WS /ws");
///     if let Some(Extension(age)) = age {
///         age.watch(&connection); // told to move when its connection is recycled
///     }
///     upgrade.on_upgrade(move |socket| async move {
///         // select! on socket.recv() and connection.notice(), as at a shutdown
///         # drop((socket, connection));
///     })
/// }
/// # let _ = axum::Router::<Shutdown>::new().route("/ws", axum::routing::get(ws));
/// ```
#[derive(Debug, Clone)]
pub struct ConnectionAge {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// When the connection reaches its age.
    deadline: Instant,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The connection has reached its age: whoever watches now is told at once.
    reached: bool,
    /// The server no longer waits for the age (the connection was served and it stopped):
    /// whoever watches now gets a timer of their own.
    left: bool,
    movers: Vec<Mover>,
}

impl ConnectionAge {
    pub(crate) fn new(deadline: Instant) -> ConnectionAge {
        ConnectionAge {
            inner: Arc::new(Inner {
                deadline,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// When the connection reaches its age (its jitter included).
    pub fn deadline(&self) -> Instant {
        self.inner.deadline
    }

    /// Tells `connection` to move when the HTTP connection this came with reaches its age
    /// (at once if it has). A later shutdown's notices reach it as usual.
    pub fn watch(&self, connection: &Connection) {
        let mover = connection.mover();
        let mut state = self.state();
        if state.reached {
            drop(state);
            mover.move_now();
            return;
        }
        // Those gone are forgotten, so a connection with many short streams keeps few.
        state.movers.retain(|mover| !mover.is_gone());
        state.movers.push(mover);
        if state.left && state.movers.len() == 1 {
            // The server's task for this connection has ended (an upgrade taken over
            // after its response, say): a timer of its own.
            let age = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(age.deadline()).await;
                age.reached();
            });
        }
    }

    /// The connection reached its age: tell every stream watching it to move.
    pub(crate) fn reached(&self) {
        let movers = {
            let mut state = self.state();
            state.reached = true;
            std::mem::take(&mut state.movers)
        };
        for mover in movers {
            mover.move_now();
        }
    }

    /// The server is done with the connection: whether streams watch its age still (an
    /// upgraded one's), so that the server waits for the age on their behalf.
    pub(crate) fn still_watched(&self) -> bool {
        let mut state = self.state();
        state.movers.retain(|mover| !mover.is_gone());
        if state.movers.is_empty() {
            state.left = true;
        }
        !state.movers.is_empty()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// A service that puts the connection's [`ConnectionAge`] in each request's extensions.
#[derive(Debug, Clone)]
pub(crate) struct WithAge<S> {
    pub(crate) inner: S,
    pub(crate) age: Option<ConnectionAge>,
}

impl<S, B> tower_service::Service<Request<B>> for WithAge<S>
where
    S: tower_service::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> S::Future {
        if let Some(age) = &self.age {
            request.extensions_mut().insert(age.clone());
        }
        self.inner.call(request)
    }
}

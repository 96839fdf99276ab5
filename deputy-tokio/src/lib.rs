//! deputy graceful shutdown on tokio: the timer deputy-core's coordinator runs on, and signals.
//!
//! - [`TokioRuntime`]: the [`Runtime`] that drives a
//!   [`ShutdownCoordinator`](deputy_core::ShutdownCoordinator) on tokio's clock.
//! - [`handle_signals`]: SIGTERM / SIGINT (or any set) as triggers, with the second signal
//!   skipping the drain and the third exiting at once.
//!
//! - [`DrainLayer`]: a tower layer that holds a guard per request and answers
//!   `Connection: close` once shutdown has begun.
//! - [`stopping`]: the future to hand to hyper's or axum's graceful shutdown: it resolves when
//!   the drain is over, so the server keeps accepting while endpoints propagate.
//! - [`spawn_tracked`]: `tokio::spawn` for work the drain must wait for.
//! - [`serve`]: HTTP/1 (with WebSocket upgrades) and h2c on one [`Listener`] (TCP or
//!   Unix-domain, bound or handed over by socket activation), GOAWAY to HTTP/2 connections
//!   from the trigger on, the listener open until the drain is over; [`serve_with`] adds
//!   [`ServeOptions`]: connections recycled by age (the long-lived streams on them told to
//!   move at that age through [`ConnectionAge`]), and TLS with ALPN (`Tls`, the `tls`
//!   feature: rustls, certificates read again when their files change).
//! - [`websocket::going_away`]: a 1001 close frame and a bounded wait for the client's.
//! - [`accept`]: an accept loop that pauses when the process is out of descriptors instead
//!   of spinning.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use deputy_core::ShutdownCoordinator;
//! use deputy_tokio::TokioRuntime;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let coordinator = ShutdownCoordinator::builder()
//!     .drain_delay(Duration::from_millis(10))
//!     .build(TokioRuntime)
//!     .unwrap();
//! let shutdown = coordinator.handle();
//! let run = tokio::spawn(coordinator.run());
//! shutdown.trigger("example");
//! let report = run.await.unwrap();
//! assert_eq!(report.exit_code, 0);
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

use std::time::Instant;

mod accept;
mod age;
mod layer;
mod serve;
#[cfg(feature = "tls")]
mod tls;
pub mod websocket;

pub use accept::accept;
pub use age::ConnectionAge;
pub use layer::{Drain, DrainBody, DrainFuture, DrainLayer};
pub use serve::{Listener, ServeOptions, serve, serve_with};
#[cfg(feature = "tls")]
pub use tls::Tls;

pub use deputy_core::runtime::{Runtime, Sleep};

/// deputy-core's [`Runtime`] on tokio's timer (`tokio::time`), so tokio's paused test clock
/// applies too. Needs a tokio runtime with the time driver enabled.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioRuntime;

impl Runtime for TokioRuntime {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }
}

/// The README's quick start, compiled and run as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeQuickStart;

pub use deputy_core::DEFAULT_SIGNALS;

/// deputy-core, re-exported, for the types a server names (`Shutdown`, `Connection`).
pub use deputy_core;

/// Turns signals into shutdown triggers, with the escalation rule of
/// [`Shutdown::on_signal`](deputy_core::Shutdown::on_signal): the first signal triggers, the
/// second skips the drain, the third exits the process at once with `128 + signal` (tokio
/// never restores the default handlers, so without this the second Ctrl-C is swallowed).
///
/// The handlers are installed when this function returns (call it inside a tokio runtime),
/// so a signal that arrives before the returned future is first polled is not lost. Spawn
/// the future for the life of the program. Signals are given by number:
/// [`DEFAULT_SIGNALS`], or with more (`DEFAULT_SIGNALS.into_iter().chain([3])` for a pod
/// whose `stopSignal` is SIGQUIT).
///
/// # Errors
///
/// The I/O error if a handler cannot be installed.
///
/// # Examples
///
/// ```no_run
/// use deputy_core::ShutdownCoordinator;
/// use deputy_tokio::{DEFAULT_SIGNALS, TokioRuntime, handle_signals};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let coordinator = ShutdownCoordinator::builder().build(TokioRuntime).unwrap();
/// tokio::spawn(handle_signals(coordinator.handle(), DEFAULT_SIGNALS).unwrap());
/// let report = coordinator.run().await;
/// std::process::exit(report.exit_code);
/// # }
/// ```
pub fn handle_signals(
    shutdown: deputy_core::Shutdown,
    signals: impl IntoIterator<Item = i32>,
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut streams = Vec::new();
    for number in signals {
        streams.push((number, signal(SignalKind::from_raw(number))?));
    }
    Ok(async move {
        loop {
            let number = std::future::poll_fn(|cx| {
                for (number, stream) in &mut streams {
                    if stream.poll_recv(cx).is_ready() {
                        return std::task::Poll::Ready(*number);
                    }
                }
                std::task::Poll::Pending
            })
            .await;
            if shutdown.on_signal(number).is_final() {
                std::process::exit(128 + number);
            }
        }
    })
}

/// The future to hand to a server's graceful shutdown (axum's `with_graceful_shutdown`,
/// hyper-util's `GracefulShutdown`): it resolves when the drain ends and the stopping phases
/// begin, so the server keeps accepting while load balancers catch up, and closes its
/// listener only once they have.
///
/// It owns what it waits for: it resolves at once if the drain is over already, after
/// `shutdown` is dropped, and when the coordinator is dropped before `Done` (so a server
/// never outlives the coordinator that was to stop it).
///
/// ```
/// # use deputy_core::{ManualClock, ShutdownCoordinator};
/// # use futures::FutureExt;
/// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
/// let shutdown = coordinator.handle();
/// let mut stop_serving = Box::pin(deputy_tokio::stopping(&shutdown));
/// shutdown.trigger("deploy");
/// assert!((&mut stop_serving).now_or_never().is_none()); // still draining: keep serving
/// shutdown.force("skip the drain");
/// assert!(stop_serving.now_or_never().is_some());
/// ```
pub fn stopping(
    shutdown: &deputy_core::Shutdown,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let token = shutdown.stopping_token();
    async move { token.cancelled().await }
}

/// Spawns `future` on tokio, counted as in flight until it completes (or is aborted): the
/// drain waits for it like for a request.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use deputy_core::ShutdownCoordinator;
///
/// let coordinator = ShutdownCoordinator::builder().build(deputy_tokio::TokioRuntime).unwrap();
/// let shutdown = coordinator.handle();
/// let job = deputy_tokio::spawn_tracked(&shutdown, async { 6 * 7 });
/// assert_eq!(shutdown.in_flight(), 1);
/// assert_eq!(job.await.unwrap(), 42);
/// assert_eq!(shutdown.in_flight(), 0);
/// # }
/// ```
pub fn spawn_tracked<F>(
    shutdown: &deputy_core::Shutdown,
    future: F,
) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(shutdown.track(future))
}

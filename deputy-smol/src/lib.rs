//! deputy graceful shutdown on smol and async-io: the timer deputy-core's coordinator runs on.
//!
//! async-io drives its timers from its own reactor thread, so [`AsyncIoRuntime`] works under
//! any executor: smol, `futures::executor`, even tokio. [`handle_signals`] turns SIGTERM /
//! SIGINT (or any set) into triggers, with the second signal skipping the drain and the third
//! exiting at once. [`websocket::going_away`] tells a WebSocket client to move (a 1001 close
//! and a bounded wait for the client's); long-lived connections register with deputy-core's
//! `Shutdown::connection`, which needs no runtime.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use deputy_core::ShutdownCoordinator;
//! use deputy_smol::AsyncIoRuntime;
//!
//! let coordinator = ShutdownCoordinator::builder()
//!     .drain_delay(Duration::from_millis(10))
//!     .build(AsyncIoRuntime)
//!     .unwrap();
//! coordinator.handle().trigger("example");
//! let report = futures::executor::block_on(coordinator.run());
//! assert_eq!(report.exit_code, 0);
//! ```

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

use std::time::Instant;

use async_io::Timer;
pub use deputy_core::runtime::{Runtime, Sleep};

/// deputy-core's [`Runtime`] on async-io's [`Timer`], which works under any executor.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncIoRuntime;

impl Runtime for AsyncIoRuntime {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        let timer = Timer::at(deadline);
        Box::pin(async move {
            timer.await;
        })
    }
}

pub use deputy_core::DEFAULT_SIGNALS;

/// The signals async-signal can handle, to find one by its number.
const SIGNALS: [async_signal::Signal; 29] = {
    use async_signal::Signal::*;
    [
        Hup, Int, Quit, Ill, Trap, Abort, Bus, Fpe, Kill, Usr1, Segv, Usr2, Pipe, Alarm, Term,
        Child, Cont, Stop, Tstp, Ttin, Ttou, Urg, Xcpu, Xfsz, Vtalarm, Prof, Winch, Io, Sys,
    ]
};

fn signal_of(number: i32) -> std::io::Result<async_signal::Signal> {
    SIGNALS
        .into_iter()
        .find(|signal| *signal as i32 == number)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "signal {number} cannot be handled on smol (async-signal has no such signal)"
                ),
            )
        })
}

/// Turns signals into shutdown triggers, with the escalation rule of
/// [`Shutdown::on_signal`](deputy_core::Shutdown::on_signal): the first signal triggers, the
/// second skips the drain, the third exits the process at once with `128 + signal`.
///
/// The handlers are installed when this function returns, so a signal that arrives before
/// the returned future is first polled is not lost (nor does it kill the process). Spawn the
/// future on your executor for the life of the program.
///
/// Signals are given by number, as in deputy-tokio: [`DEFAULT_SIGNALS`], or with more
/// (`DEFAULT_SIGNALS.into_iter().chain([3])` for a pod whose `stopSignal` is SIGQUIT).
///
/// # Errors
///
/// The I/O error if the handlers cannot be installed; `InvalidInput` for a number that is
/// no signal async-signal handles (real-time signals among them).
///
/// # Examples
///
/// ```no_run
/// use deputy_core::ShutdownCoordinator;
/// use deputy_smol::{AsyncIoRuntime, DEFAULT_SIGNALS, handle_signals};
///
/// let coordinator = ShutdownCoordinator::builder().build(AsyncIoRuntime).unwrap();
/// let signals = handle_signals(coordinator.handle(), DEFAULT_SIGNALS).unwrap();
/// smol::spawn(signals).detach();
/// let report = smol::block_on(coordinator.run());
/// std::process::exit(report.exit_code);
/// ```
pub fn handle_signals(
    shutdown: deputy_core::Shutdown,
    signals: impl IntoIterator<Item = i32>,
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use futures::StreamExt;
    let signals = signals
        .into_iter()
        .map(signal_of)
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut stream = async_signal::Signals::new(signals)?;
    Ok(async move {
        while let Some(signal) = stream.next().await {
            let Ok(signal) = signal else { continue };
            let number = signal as i32;
            if shutdown.on_signal(number).is_final() {
                std::process::exit(128 + number);
            }
        }
    })
}

/// Telling a WebSocket client to move, on async-io's timer (async-tungstenite's
/// `WebSocketStream` on smol is a `Sink` and `Stream` of messages, as this wants): a close
/// frame with code 1001 and a reason, then a wait of at most `wait` for the client's own.
pub mod websocket {
    use std::time::Duration;

    use futures::{Sink, Stream};

    pub use deputy_core::websocket::{CLOSE_WAIT, Closed, GOING_AWAY, SERVICE_RESTART};

    /// Sends `close` on `socket`, then reads and discards what the client still sends until
    /// its close frame (for which `is_close` is true), the connection's end, or `wait`.
    ///
    /// # Errors
    ///
    /// The socket's error if the close frame cannot be sent.
    ///
    /// See deputy-core's [`going_away`](deputy_core::websocket::going_away) for an example;
    /// this one takes a duration instead of a deadline future.
    pub async fn going_away<S, M, E>(
        socket: S,
        close: M,
        is_close: impl Fn(&M) -> bool,
        wait: Duration,
    ) -> Result<Closed, E>
    where
        S: Sink<M, Error = E> + Stream<Item = Result<M, E>> + Unpin,
    {
        let deadline = async move {
            async_io::Timer::after(wait).await;
        };
        deputy_core::websocket::going_away(socket, close, is_close, deadline).await
    }
}

//! Runtime-agnostic graceful shutdown: a state machine, cancellation tokens, in-flight
//! tracking and a phased coordinator, with no async runtime in its dependencies.
//!
//! A service that is asked to stop (a Kubernetes pod being deleted, a Ctrl-C) should keep
//! serving while load balancers catch up, turn readiness off, finish the work in flight, close
//! its resources in order and exit before it is killed, saying how it went. deputy-core does
//! that bookkeeping for any runtime; `deputy-tokio` and `deputy-smol` plug in timers and
//! signals, `deputy-ipc` adds the control socket, health endpoints and the `deputy` binary.
//!
//! - [`ShutdownCoordinator`]: the plan (grace period, drain delay and timeout, ordered phases
//!   with their own timeouts), the hooks, and the future that runs it to a [`ShutdownReport`].
//! - [`Shutdown`]: the cheap handle: `trigger`, `state`, readiness, guards, tokens, hooks.
//! - [`Shutdown::vital`] and [`TaskGroup`]: background tasks whose failure, panic or early end
//!   shuts the service down, told to stop in a phase, in groups that can stop on their own.
//! - [`CancellationToken`]: hierarchical; `is_cancelled` is one atomic load.
//! - [`InFlight`] / [`DrainGuard`]: taking and dropping a guard is one atomic operation each.
//! - [`state::Machine`]: the pure state machine `Running -> Draining -> Stopping -> Done`.
//! - [`runtime::Runtime`]: what a runtime must provide (a clock and a timer);
//!   [`ManualClock`] is one on virtual time, for tests.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use deputy_core::{ManualClock, Phase, ShutdownCoordinator, State};
//! use futures::executor::LocalPool;
//! use futures::task::LocalSpawnExt;
//!
//! let clock = ManualClock::new(); // virtual time; use deputy-tokio or deputy-smol for real
//! let coordinator = ShutdownCoordinator::builder()
//!     .grace_period(Duration::from_secs(30))
//!     .drain_delay(Duration::from_secs(5))
//!     .drain_timeout(Duration::from_secs(10))
//!     .phase(Phase::new("flush").timeout(Duration::from_secs(5)))
//!     .build(clock.clone())
//!     .unwrap();
//! coordinator.hook("flush", "buffer", |_ctx| async { Ok::<(), String>(()) }).unwrap();
//!
//! let shutdown = coordinator.handle();
//! shutdown.ready();
//! let request = shutdown.guard(); // a request in flight
//!
//! let mut pool = LocalPool::new();
//! let done = pool.spawner().spawn_local_with_handle(coordinator.run()).unwrap();
//!
//! shutdown.trigger("SIGTERM");
//! pool.run_until_stalled();
//! assert_eq!(shutdown.state(), State::Draining);
//! assert!(!shutdown.is_ready());
//!
//! clock.advance(Duration::from_secs(5)); // the drain delay passes; the request still runs
//! pool.run_until_stalled();
//! assert_eq!(shutdown.state(), State::Draining);
//!
//! drop(request); // the last request ends: the phases run
//! let report = pool.run_until(done);
//! assert_eq!(report.exit_code, 0);
//! ```

#![deny(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod connections;
mod coordinator;
pub mod error;
mod inflight;
mod manual;
mod reason;
pub mod runtime;
pub mod state;
mod sync;
mod token;
mod wait;
pub mod websocket;

pub use connections::{
    Closing, Connection, ConnectionsReport, Mover, Notice, NoticeFuture, UntilNotice,
};
pub use coordinator::{
    Arrival, Builder, DEFAULT_PHASE_TIMEOUT, Done, DrainReport, Escalation, ExitCodes, HookContext,
    HookOutcome, HookOutput, HookReport, MAX_DURATION, Outcome, Phase, PhaseReport, Propagation,
    Shutdown, ShutdownCoordinator, ShutdownReport, Status, TaskGroup, Transition, Transitions,
    TriggerKind, TriggerRecord, VitalTask, phases,
};
pub use error::{BuildError, HookError};
pub use inflight::{DrainGuard, Drained, InFlight, Straggler, Track};
pub use manual::ManualClock;
pub use reason::Reason;
pub use state::{DrainOutcome, Ending, PhaseOutcome, Readiness, State};
pub use token::{CancellationToken, Cancelled, DropGuard};

/// The signals that start a shutdown by default, by number: SIGTERM (15: Kubernetes,
/// systemd, `docker stop`) and SIGINT (2: Ctrl-C). Both adapters' `handle_signals` take
/// numbers, so a pod's `lifecycle.stopSignal` or an image's `STOPSIGNAL` is added the same
/// way on either.
///
/// ```
/// // nginx-style images stop with SIGQUIT (3): drain on it too.
/// let signals: Vec<i32> = deputy_core::DEFAULT_SIGNALS.into_iter().chain([3]).collect();
/// assert_eq!(signals, [15, 2, 3]);
/// ```
pub const DEFAULT_SIGNALS: [i32; 2] = [15, 2];

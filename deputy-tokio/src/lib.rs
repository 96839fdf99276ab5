//! deputy graceful shutdown on tokio: the timer deputy-core's coordinator runs on.
//!
//! Signals, tracked spawning and hyper/axum glue come with the runtime-adapters work; today
//! this crate gives [`TokioRuntime`], the [`Runtime`] that drives a
//! [`ShutdownCoordinator`](deputy_core::ShutdownCoordinator) on tokio's clock.
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

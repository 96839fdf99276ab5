//! deputy graceful shutdown on smol and async-io: the timer deputy-core's coordinator runs on.
//!
//! async-io drives its timers from its own reactor thread, so [`AsyncIoRuntime`] works under
//! any executor: smol, `futures::executor`, even tokio. Signals and spawning come with the
//! runtime-adapters work.
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

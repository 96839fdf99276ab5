//! The future that waits for the report.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use event_listener::EventListener;

use super::report::ShutdownReport;
use super::shared::Shared;
use crate::wait::poll_until;

/// The future returned by [`Shutdown::done`](crate::Shutdown::done): resolves with the report
/// once the shutdown is `Done`.
///
/// It owns what it watches, so it can be stored, spawned or awaited from any number of tasks
/// after its handle is gone. Since dropping the coordinator ends an unfinished shutdown as
/// abandoned, it never waits for a shutdown nobody drives.
///
/// ```
/// use deputy_core::{ManualClock, ShutdownCoordinator};
///
/// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
/// let shutdown = coordinator.handle();
/// let done: deputy_core::Done = shutdown.done();
/// let waiter = std::thread::spawn(move || futures::executor::block_on(done).exit_code);
/// shutdown.trigger("deploy");
/// shutdown.force("skip the drain");
/// futures::executor::block_on(coordinator.run());
/// assert_eq!(waiter.join().unwrap(), 0);
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct Done {
    shared: Arc<Shared>,
    listener: Option<EventListener>,
}

impl Done {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            listener: None,
        }
    }
}

impl Future for Done {
    type Output = Arc<ShutdownReport>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Arc<ShutdownReport>> {
        let Self { shared, listener } = &mut *self;
        poll_until(listener, cx, || shared.listen(), || shared.report())
    }
}

impl fmt::Debug for Done {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Done")
            .field("done", &self.shared.report().is_some())
            .finish_non_exhaustive()
    }
}

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use event_listener::EventListener;
use pin_project_lite::pin_project;

use super::DrainGuard;
use super::counter::HandleRef;
use crate::wait::poll_until;

/// The future returned by [`InFlight::drained`](super::InFlight::drained).
///
/// ```
/// use deputy_core::InFlight;
///
/// let in_flight = InFlight::new();
/// let job = in_flight.guard();
/// let drained: deputy_core::Drained = in_flight.drained();
/// let waiter = std::thread::spawn(move || futures::executor::block_on(drained));
/// drop(job);
/// waiter.join().unwrap(); // resolved once the job was done
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct Drained {
    counter: HandleRef,
    listener: Option<EventListener>,
}

impl Drained {
    pub(super) fn new(counter: HandleRef) -> Self {
        Self {
            counter,
            listener: None,
        }
    }
}

impl Future for Drained {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Self { counter, listener } = &mut *self;
        // Counter invariant 4: `listen` registers before the re-check.
        poll_until(
            listener,
            cx,
            || counter.listen(),
            || (counter.guards() == 0).then_some(()),
        )
    }
}

impl fmt::Debug for Drained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drained")
            .field("in_flight", &self.counter.guards())
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// A future that counts as in flight until it completes or is dropped; made by
    /// [`InFlight::track`](super::InFlight::track).
    ///
    /// ```
    /// use deputy_core::{InFlight, Track};
    ///
    /// let in_flight = InFlight::new();
    /// let job: Track<_> = in_flight.track(async { "done" });
    /// assert_eq!(in_flight.count(), 1); // counted from now, not from the first poll
    /// assert_eq!(futures::executor::block_on(job), "done");
    /// ```
    #[must_use = "futures do nothing unless awaited"]
    pub struct Track<F> {
        #[pin]
        future: F,
        guard: Option<DrainGuard>,
    }
}

impl<F> Track<F> {
    pub(super) fn new(future: F, guard: DrainGuard) -> Self {
        Self {
            future,
            guard: Some(guard),
        }
    }
}

impl<F: Future> Future for Track<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = ready!(this.future.poll(cx));
        // Finished: stop counting now, not when the caller gets round to dropping us.
        this.guard.take();
        Poll::Ready(output)
    }
}

impl<F> fmt::Debug for Track<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Track")
            .field("done", &self.guard.is_none())
            .finish_non_exhaustive()
    }
}

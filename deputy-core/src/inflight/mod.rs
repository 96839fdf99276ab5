//! Counting the work in flight, and waiting for it to finish.

mod counter;
mod future;
mod guard;
mod named;

use std::fmt;
use std::future::Future;

use self::counter::HandleRef;
pub use self::future::{Drained, Track};
pub use self::guard::DrainGuard;
pub use self::named::Straggler;
pub(crate) use self::named::{Name, Registry};
use crate::wait::block_until;

/// Counts work in flight (requests, jobs) so that shutdown can wait for it.
///
/// Take a [`DrainGuard`] when work starts and drop it when the work ends, or wrap a future in
/// [`track`](Self::track). Taking and dropping a guard is one atomic read-modify-write each,
/// with no lock and no allocation; guards own their share of the counter, so they can be moved
/// into spawned tasks. Guards taken while shutdown is draining still count: late requests are
/// served, not dropped.
///
/// Cloning an `InFlight` gives another handle to the same counter.
///
/// # Examples
///
/// ```
/// use deputy_core::InFlight;
///
/// let in_flight = InFlight::new();
/// let request = in_flight.guard();
/// assert_eq!(in_flight.count(), 1);
///
/// let worker = std::thread::spawn(move || {
///     // ... serve the request ...
///     drop(request);
/// });
/// futures::executor::block_on(in_flight.drained()); // resolves once the count is zero
/// worker.join().unwrap();
/// assert_eq!(in_flight.count(), 0);
/// ```
#[derive(Clone)]
pub struct InFlight {
    counter: HandleRef,
}

impl InFlight {
    /// Creates a counter with nothing in flight.
    ///
    /// ```
    /// assert_eq!(deputy_core::InFlight::new().count(), 0);
    /// ```
    pub fn new() -> Self {
        Self {
            counter: HandleRef::new(),
        }
    }

    /// Marks one unit of work as in flight until the returned guard is dropped.
    ///
    /// ```
    /// let in_flight = deputy_core::InFlight::new();
    /// let guard = in_flight.guard();
    /// assert_eq!(in_flight.count(), 1);
    /// drop(guard);
    /// assert_eq!(in_flight.count(), 0);
    /// ```
    #[inline]
    pub fn guard(&self) -> DrainGuard {
        DrainGuard::new(self.counter.guard())
    }

    /// Wraps a future so that it counts as in flight from now until it completes or is dropped.
    /// The guard is taken here, not at the first poll, so a tracked future stored or spawned
    /// later is counted from the start; it releases the count the moment it completes.
    ///
    /// ```
    /// let in_flight = deputy_core::InFlight::new();
    /// let job = in_flight.track(async { 6 * 7 });
    /// assert_eq!(in_flight.count(), 1);
    /// assert_eq!(futures::executor::block_on(job), 42);
    /// assert_eq!(in_flight.count(), 0);
    /// ```
    pub fn track<F: Future>(&self, future: F) -> Track<F> {
        Track::new(future, self.guard())
    }

    /// The number of guards alive right now (for the coordinator's, with the long-lived
    /// connections registered, each of which holds one).
    ///
    /// ```
    /// let in_flight = deputy_core::InFlight::new();
    /// let _a = in_flight.guard();
    /// let _b = in_flight.guard();
    /// assert_eq!(in_flight.count(), 2);
    /// ```
    #[inline]
    pub fn count(&self) -> usize {
        self.counter.guards() as usize
    }

    /// A future that resolves when nothing is in flight. It resolves at once if the count is
    /// already zero; new guards taken afterwards do not un-resolve it. It holds the counter,
    /// so it may outlive this handle (and the coordinator): it resolves when the last guard
    /// goes, whoever holds it.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping it has no effect on the counter.
    ///
    /// ```
    /// let in_flight = deputy_core::InFlight::new();
    /// futures::executor::block_on(in_flight.drained());
    /// ```
    pub fn drained(&self) -> Drained {
        Drained::new(self.counter.clone())
    }

    /// Blocks the current thread until nothing is in flight; the blocking twin of
    /// [`drained`](Self::drained). Never call it from inside an async task.
    ///
    /// ```
    /// let in_flight = deputy_core::InFlight::new();
    /// in_flight.wait_drained_blocking();
    /// ```
    pub fn wait_drained_blocking(&self) {
        // Counter invariant 4: `listen` registers before the re-check.
        block_until(|| self.counter.listen(), || self.counter.guards() == 0);
    }
}

impl Default for InFlight {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlight")
            .field("count", &self.count())
            .finish()
    }
}

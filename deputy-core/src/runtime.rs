//! What the coordinator needs from an async runtime: the time, and a timer.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

/// A timer future returned by [`Runtime::sleep_until`].
///
/// ```
/// use deputy_core::ManualClock;
/// use deputy_core::runtime::{Runtime, Sleep};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let sleep: Sleep = clock.sleep_until(clock.now() + Duration::from_secs(1));
/// clock.advance(Duration::from_secs(1));
/// futures::executor::block_on(sleep); // due: resolves
/// ```
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The runtime services the coordinator uses: a clock and a timer. Nothing else is needed;
/// the coordinator's own future runs hooks concurrently without spawning.
///
/// deputy-tokio and deputy-smol implement it for their runtimes; [`ManualClock`] implements
/// it on virtual time for tests.
///
/// [`ManualClock`]: crate::ManualClock
///
/// # Examples
///
/// A runtime on plain threads (one thread per sleep: fine for a demo, not for production):
///
/// ```
/// use std::time::{Duration, Instant};
/// use deputy_core::runtime::{Runtime, Sleep};
///
/// #[derive(Debug)]
/// struct Threads;
///
/// impl Runtime for Threads {
///     fn now(&self) -> Instant {
///         Instant::now()
///     }
///     fn sleep_until(&self, deadline: Instant) -> Sleep {
///         let (tx, rx) = futures::channel::oneshot::channel::<()>();
///         std::thread::spawn(move || {
///             std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
///             let _ = tx.send(());
///         });
///         Box::pin(async move {
///             let _ = rx.await;
///         })
///     }
/// }
///
/// let start = Instant::now();
/// futures::executor::block_on(Threads.sleep_until(start + Duration::from_millis(5)));
/// assert!(start.elapsed() >= Duration::from_millis(5));
/// ```
pub trait Runtime: Send + Sync + fmt::Debug + 'static {
    /// The current time on this runtime's clock.
    ///
    /// ```
    /// use deputy_core::ManualClock;
    /// use deputy_core::runtime::Runtime;
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let start = clock.now();
    /// clock.advance(Duration::from_secs(3));
    /// assert_eq!(clock.now() - start, Duration::from_secs(3));
    /// ```
    fn now(&self) -> Instant;

    /// A future that resolves at `deadline` (at once if it has passed).
    ///
    /// ```
    /// use deputy_core::ManualClock;
    /// use deputy_core::runtime::Runtime;
    /// use futures::FutureExt;
    ///
    /// let clock = ManualClock::new();
    /// // A deadline that has passed: ready at once.
    /// assert!(clock.sleep_until(clock.now()).now_or_never().is_some());
    /// ```
    fn sleep_until(&self, deadline: Instant) -> Sleep;
}

//! A clock that moves only when told to, for deterministic tests of timing behaviour.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::runtime::{Runtime, Sleep};

/// A [`Runtime`] on virtual time: sleeps resolve when [`advance`](Self::advance) moves the
/// clock past their deadline, never on their own. Every coordinator test in deputy runs on it,
/// so timeouts are exact and no test sleeps.
///
/// Cloning gives another handle to the same clock.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use deputy_core::ManualClock;
/// use deputy_core::runtime::Runtime;
/// use futures::FutureExt;
///
/// let clock = ManualClock::new();
/// let mut sleep = clock.sleep_until(clock.now() + Duration::from_secs(5));
/// assert!((&mut sleep).now_or_never().is_none());
/// clock.advance(Duration::from_secs(4));
/// assert!((&mut sleep).now_or_never().is_none());
/// clock.advance(Duration::from_secs(1));
/// assert!(sleep.now_or_never().is_some());
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    now: Instant,
    sleepers: Slab<Sleeper>,
}

#[derive(Debug)]
struct Sleeper {
    deadline: Instant,
    waker: Option<Waker>,
}

impl ManualClock {
    /// A clock that starts at the real current instant and then moves only on `advance`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::ManualClock;
    /// use deputy_core::runtime::Runtime;
    ///
    /// let clock = ManualClock::new();
    /// let start = clock.now();
    /// std::thread::sleep(Duration::from_millis(5));
    /// assert_eq!(clock.now(), start); // real time does not move it
    /// ```
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                now: Instant::now(),
                sleepers: Slab::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the clock forward by `by` and wakes the sleeps that are due.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use deputy_core::runtime::Runtime;
    /// let clock = deputy_core::ManualClock::new();
    /// let start = clock.now();
    /// clock.advance(Duration::from_millis(1500));
    /// assert_eq!(clock.now() - start, Duration::from_millis(1500));
    /// ```
    pub fn advance(&self, by: Duration) {
        let mut inner = self.lock();
        inner.now += by;
        let now = inner.now;
        let due: Vec<Waker> = inner
            .sleepers
            .iter_mut()
            .filter(|(_, s)| s.deadline <= now)
            .filter_map(|(_, s)| s.waker.take())
            .collect();
        drop(inner);
        due.into_iter().for_each(Waker::wake);
    }

    /// The earliest deadline among the sleeps that are waiting, if any.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use deputy_core::runtime::Runtime;
    /// # use futures::FutureExt;
    /// let clock = deputy_core::ManualClock::new();
    /// assert_eq!(clock.next_deadline(), None);
    /// let deadline = clock.now() + Duration::from_secs(1);
    /// let mut sleep = clock.sleep_until(deadline);
    /// let _ = (&mut sleep).now_or_never();
    /// assert_eq!(clock.next_deadline(), Some(deadline));
    /// ```
    pub fn next_deadline(&self) -> Option<Instant> {
        let inner = self.lock();
        inner
            .sleepers
            .iter()
            .filter(|(_, s)| s.waker.is_some())
            .map(|(_, s)| s.deadline)
            .min()
    }

    /// Moves the clock to the earliest waiting deadline, if there is one; returns whether it
    /// moved.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::ManualClock;
    /// use deputy_core::runtime::Runtime;
    /// use futures::FutureExt;
    ///
    /// let clock = ManualClock::new();
    /// let start = clock.now();
    /// let mut sleep = clock.sleep_until(start + Duration::from_secs(7));
    /// assert!((&mut sleep).now_or_never().is_none()); // polled once: now it waits
    /// assert!(clock.advance_to_next());
    /// assert_eq!(clock.now() - start, Duration::from_secs(7));
    /// assert!(sleep.now_or_never().is_some());
    /// ```
    pub fn advance_to_next(&self) -> bool {
        let Some(deadline) = self.next_deadline() else {
            return false;
        };
        let now = self.now();
        self.advance(deadline.saturating_duration_since(now));
        true
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Runtime for ManualClock {
    fn now(&self) -> Instant {
        self.lock().now
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Box::pin(ManualSleep {
            clock: self.clone(),
            deadline,
            key: None,
        })
    }
}

struct ManualSleep {
    clock: ManualClock,
    deadline: Instant,
    key: Option<usize>,
}

impl Future for ManualSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut inner = this.clock.lock();
        if inner.now >= this.deadline {
            if let Some(key) = this.key.take() {
                inner.sleepers.remove(key);
            }
            return Poll::Ready(());
        }
        let waker = Some(cx.waker().clone());
        match this.key {
            Some(key) => inner.sleepers[key].waker = waker,
            None => {
                this.key = Some(inner.sleepers.insert(Sleeper {
                    deadline: this.deadline,
                    waker,
                }))
            }
        }
        Poll::Pending
    }
}

impl Drop for ManualSleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.clock.lock().sleepers.remove(key);
        }
    }
}

//! Propagation, measured: when the last new connection and the last new request arrived
//! after the first trigger. Endpoints keep sending traffic to a pod for a while after it is
//! told to stop; the last arrival is how long that took this time, the number a user needs
//! to set the drain delay (and what the adaptive drain delay watches).

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::sync::{AtomicBool, AtomicU64, Ordering};

/// What arrived: a connection, or a request on one.
///
/// ```
/// use deputy_core::{ManualClock, ShutdownCoordinator};
///
/// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
/// let shutdown = coordinator.handle();
/// use deputy_core::Arrival;
/// shutdown.watch_arrivals(); // something reports this service's traffic
/// shutdown.trigger("deploy");
/// shutdown.arrived(Arrival::Connection); // an accept, after the trigger
/// assert!(shutdown.status().propagation.last_connection.is_some());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arrival {
    /// A new connection (an accept).
    Connection,
    /// A new request.
    Request,
}

/// When the last new connection and request arrived, counted from the first trigger;
/// `None` for each that has not arrived since. `measured` says whether anything reports
/// arrivals at all (see [`Shutdown::watch_arrivals`](crate::Shutdown::watch_arrivals)):
/// without it, "none came" would be a guess.
///
/// ```
/// use std::time::Duration;
/// use deputy_core::Propagation;
///
/// let mut seen = Propagation::default();
/// assert_eq!(seen.to_string(), "new traffic after the trigger not measured");
/// seen.measured = true;
/// assert_eq!(seen.to_string(), "no new connection or request after the trigger");
/// seen.last_request = Some(Duration::from_millis(1400));
/// assert_eq!(seen.to_string(), "last new request 1.4s after the trigger");
/// seen.last_connection = Some(Duration::from_millis(1200));
/// assert_eq!(
///     seen.to_string(),
///     "last new connection 1.2s, last new request 1.4s after the trigger"
/// );
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Propagation {
    /// The last new connection, after the trigger.
    pub last_connection: Option<Duration>,
    /// The last new request, after the trigger.
    pub last_request: Option<Duration>,
    /// Whether anything reports arrivals (a server, a layer, a supervisor watching its
    /// child's port), or one arrived: only then does "none" mean none came.
    pub measured: bool,
}

impl Propagation {
    /// The later of the two, if either arrived.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::Propagation;
    ///
    /// let mut seen = Propagation::default();
    /// seen.last_connection = Some(Duration::from_millis(1200));
    /// seen.last_request = Some(Duration::from_millis(1400));
    /// assert_eq!(seen.last(), Some(Duration::from_millis(1400))); // what the drain delay must cover
    /// ```
    pub fn last(&self) -> Option<Duration> {
        self.last_connection.max(self.last_request)
    }
}

impl fmt::Display for Propagation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |d: Duration| format!("{:.1}s", d.as_secs_f64());
        match (self.last_connection, self.last_request) {
            (None, None) if !self.measured => {
                f.write_str("new traffic after the trigger not measured")
            }
            (None, None) => f.write_str("no new connection or request after the trigger"),
            (Some(c), None) => write!(f, "last new connection {} after the trigger", secs(c)),
            (None, Some(r)) => write!(f, "last new request {} after the trigger", secs(r)),
            (Some(c), Some(r)) => write!(
                f,
                "last new connection {}, last new request {} after the trigger",
                secs(c),
                secs(r)
            ),
        }
    }
}

/// The recorder: the trigger's instant, once set, and the latest arrival of each kind as
/// nanoseconds after it, plus one (0: none). One atomic load per arrival before the trigger;
/// after it, a clock read and a `fetch_max`.
#[derive(Debug)]
pub(crate) struct Arrivals {
    triggered_at: OnceLock<Instant>,
    last: [AtomicU64; 2],
    /// Something said it reports arrivals.
    watched: AtomicBool,
}

impl Arrivals {
    pub(crate) fn new() -> Arrivals {
        Arrivals {
            triggered_at: OnceLock::new(),
            last: [AtomicU64::new(0), AtomicU64::new(0)],
            watched: AtomicBool::new(false),
        }
    }

    /// Something reports arrivals: "none" now means none came.
    pub(crate) fn watch(&self) {
        // Relaxed: a standalone flag, read on its own.
        self.watched.store(true, Ordering::Relaxed);
    }

    /// The first trigger, at `at`.
    pub(crate) fn triggered(&self, at: Instant) {
        let _ = self.triggered_at.set(at);
    }

    pub(crate) fn arrived(&self, kind: Arrival, now: impl FnOnce() -> Instant) {
        if let Some(t0) = self.triggered_at.get() {
            let after = now().saturating_duration_since(*t0);
            let nanos = u64::try_from(after.as_nanos()).unwrap_or(u64::MAX - 1) + 1;
            // Relaxed: a standalone maximum, read on its own.
            self.last[kind as usize].fetch_max(nanos, Ordering::Relaxed);
        }
    }

    pub(crate) fn get(&self) -> Propagation {
        let read = |kind: Arrival| match self.last[kind as usize].load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos - 1)),
        };
        let (last_connection, last_request) = (read(Arrival::Connection), read(Arrival::Request));
        Propagation {
            last_connection,
            last_request,
            measured: self.watched.load(Ordering::Relaxed)
                || last_connection.is_some()
                || last_request.is_some(),
        }
    }

    /// The instant of the last arrival of either kind, if any came after the trigger.
    pub(crate) fn last_at(&self) -> Option<Instant> {
        let t0 = *self.triggered_at.get()?;
        self.get().last().map(|after| t0 + after)
    }
}

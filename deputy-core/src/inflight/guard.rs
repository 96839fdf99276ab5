use std::fmt;

use super::counter::GuardRef;
use super::named::Registration;

/// Holds one unit of work in flight; made by [`InFlight::guard`](super::InFlight::guard).
///
/// Dropping it ends the work. It owns its share of the counter, so it is `'static` and can be
/// moved into a spawned task or across threads.
///
/// ```
/// let in_flight = deputy_core::InFlight::new();
/// let guard = in_flight.guard();
/// std::thread::spawn(move || drop(guard)).join().unwrap();
/// assert_eq!(in_flight.count(), 0);
/// ```
#[must_use = "the work counts as finished as soon as the guard is dropped"]
pub struct DrainGuard {
    /// A named guard's entry in the list of work in flight (declared first, so dropped
    /// first: the name leaves the list before the count goes down).
    name: Option<Registration>,
    _unit: GuardRef,
}

impl DrainGuard {
    #[inline]
    pub(super) fn new(unit: GuardRef) -> Self {
        Self {
            name: None,
            _unit: unit,
        }
    }

    #[inline]
    pub(crate) fn named(mut self, registration: Registration) -> Self {
        self.name = Some(registration);
        self
    }
}

impl fmt::Debug for DrainGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainGuard").finish_non_exhaustive()
    }
}

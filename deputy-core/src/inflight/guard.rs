use std::fmt;

use super::counter::GuardRef;

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
    _unit: GuardRef,
}

impl DrainGuard {
    pub(super) fn new(unit: GuardRef) -> Self {
        Self { _unit: unit }
    }
}

impl fmt::Debug for DrainGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainGuard").finish_non_exhaustive()
    }
}

use std::borrow::Cow;
use std::time::Duration;

/// The timeout a phase gets unless told otherwise.
pub const DEFAULT_PHASE_TIMEOUT: Duration = Duration::from_secs(3);

/// The phases every coordinator has unless
/// [`without_default_phases`](crate::Builder::without_default_phases) is called, in this
/// order. Libraries add their hooks to these without knowing the application's own phases.
pub mod phases {
    /// Stop accepting new work: close listeners, stop consumers polling.
    pub const STOP_ACCEPTING: &str = "stop-accepting";
    /// Flush what is buffered: producers, batched writers, logs and metrics exporters.
    pub const FLUSH: &str = "flush";
    /// Close what is open: connection pools, files, sessions.
    pub const CLOSE: &str = "close";

    /// All default phases, in order.
    pub const DEFAULTS: [&str; 3] = [STOP_ACCEPTING, FLUSH, CLOSE];
}

/// A named stopping phase with its own timeout. Phases run one after another, in the order the
/// builder lists them; the hooks of one phase run concurrently.
///
/// ```
/// use std::time::Duration;
/// use deputy_core::Phase;
///
/// let phase = Phase::new("flush-kafka").timeout(Duration::from_secs(5));
/// assert_eq!(phase.name(), "flush-kafka");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    name: Cow<'static, str>,
    pub(crate) timeout: Duration,
}

impl Phase {
    /// A phase with the [default timeout](DEFAULT_PHASE_TIMEOUT).
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Self {
            name: name.into(),
            timeout: DEFAULT_PHASE_TIMEOUT,
        }
    }

    /// Sets how long the phase's hooks may run before they are dropped and recorded as
    /// timed out.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The phase's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

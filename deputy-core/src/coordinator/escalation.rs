//! The rule for repeated signals, in one place: the first triggers, the second forces, the
//! third and later abandon. [`Shutdown::escalate`](crate::Shutdown::escalate) applies it; a
//! supervisor (`deputy run`) and the adapters' signal handlers read what it did from here,
//! and say so in the same words.

use std::fmt;

use super::report::TriggerKind;

/// What a call to [`Shutdown::escalate`](crate::Shutdown::escalate) did.
///
/// Its `Display` is the sentence to tell a person who sent the signal.
///
/// ```
/// use deputy_core::Escalation;
///
/// assert_eq!(
///     Escalation::Forced.to_string(),
///     "skipping the rest of the drain; send it again to exit at once"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Escalation {
    /// The first call: shutdown started.
    Triggered,
    /// The second call: the rest of the drain was skipped.
    Forced,
    /// The third or a later call: shutdown was abandoned; a signal handler should exit now.
    Abandoned,
    /// The call changed nothing (shutdown was already further along); `count` is its number.
    Ignored {
        /// Which call this was, from 1.
        count: u32,
    },
}

impl Escalation {
    /// What the `count`th escalation asks for.
    pub(crate) fn request_for(count: u32) -> TriggerKind {
        match count {
            0 | 1 => TriggerKind::Trigger,
            2 => TriggerKind::Force,
            _ => TriggerKind::Abandon,
        }
    }

    /// What the `count`th escalation did, given whether its request changed anything.
    pub(crate) fn of(count: u32, accepted: bool) -> Escalation {
        match (accepted, Self::request_for(count)) {
            (false, _) => Escalation::Ignored { count },
            (true, TriggerKind::Trigger) => Escalation::Triggered,
            (true, TriggerKind::Force) => Escalation::Forced,
            (true, TriggerKind::Abandon) => Escalation::Abandoned,
        }
    }

    /// Whether a signal handler should exit now, with 128 + the signal: the third signal or
    /// a later one, whatever it changed. A person at a terminal can always get out.
    ///
    /// ```
    /// use deputy_core::Escalation;
    ///
    /// assert!(!Escalation::Forced.is_final());
    /// assert!(Escalation::Abandoned.is_final());
    /// assert!(Escalation::Ignored { count: 4 }.is_final());
    /// assert!(!Escalation::Ignored { count: 1 }.is_final());
    /// ```
    pub fn is_final(self) -> bool {
        match self {
            Escalation::Abandoned => true,
            Escalation::Ignored { count } => Self::request_for(count) == TriggerKind::Abandon,
            Escalation::Triggered | Escalation::Forced => false,
        }
    }

    /// Whether a person should be warned (the drain was cut short, or the process exits
    /// now) rather than merely informed.
    ///
    /// ```
    /// use deputy_core::Escalation;
    ///
    /// assert!(!Escalation::Triggered.is_warning());
    /// assert!(Escalation::Forced.is_warning());
    /// ```
    pub fn is_warning(self) -> bool {
        self == Escalation::Forced || self.is_final()
    }
}

impl fmt::Display for Escalation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match *self {
            Escalation::Triggered => "shutting down gracefully; send it again to skip the drain",
            Escalation::Forced => "skipping the rest of the drain; send it again to exit at once",
            Escalation::Abandoned => "exiting at once",
            Escalation::Ignored { .. } if self.is_final() => "exiting at once",
            Escalation::Ignored { count: 1 } => "shutdown is already under way",
            Escalation::Ignored { .. } => {
                "the drain is already over; send it again to exit at once"
            }
        })
    }
}

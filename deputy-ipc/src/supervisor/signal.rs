//! Signals by number, the real-time ones included, as people and container images name
//! them: `TERM`, `SIGTERM`, `15`, `RTMIN+3`, `SIGRTMIN+3`, `37`.

use std::fmt;

/// The first real-time signal as C programs, shells and container runtimes number it
/// (glibc keeps the kernel's 32 and 33 for its threads; bash's `kill -s RTMIN+3`, runc's
/// `STOPSIGNAL SIGRTMIN+3` and systemd all mean 37). Fixed here, so a static musl build of
/// deputy (whose C library starts at 35) means the same signal as the program it runs.
const RTMIN: i32 = 34;
/// The last signal Linux has.
const RTMAX: i32 = 64;

/// A signal deputy can send, forward or be asked to stop with: one of the standard ones
/// (1 to 31) or a real-time one (34, `SIGRTMIN` as shells and runtimes number it, to 64),
/// which nix's `Signal` cannot name.
///
/// ```
/// use deputy_ipc::supervisor::{AnySignal, parse_signal};
///
/// assert_eq!(parse_signal("RTMIN+3"), Ok(AnySignal::from_number(37).unwrap()));
/// assert_eq!(parse_signal("SIGTERM").unwrap().to_string(), "SIGTERM");
/// assert_eq!(AnySignal::from_number(37).unwrap().to_string(), "SIGRTMIN+3");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnySignal(i32);

impl AnySignal {
    /// SIGTERM, the usual stop signal.
    pub const TERM: AnySignal = AnySignal(15);
    /// SIGINT (Ctrl-C).
    pub const INT: AnySignal = AnySignal(2);
    /// SIGKILL.
    pub(crate) const KILL: AnySignal = AnySignal(9);

    /// The signal numbered `number`, if Linux has one (1 to 31, or 34 to 64: 32 and 33
    /// belong to the C library's threads).
    ///
    /// ```
    /// use deputy_ipc::supervisor::AnySignal;
    /// assert!(AnySignal::from_number(15).is_some());
    /// assert!(AnySignal::from_number(33).is_none());
    /// assert!(AnySignal::from_number(65).is_none());
    /// ```
    pub fn from_number(number: i32) -> Option<AnySignal> {
        ((1..32).contains(&number) || (RTMIN..=RTMAX).contains(&number))
            .then_some(AnySignal(number))
    }

    /// Its number.
    ///
    /// ```
    /// assert_eq!(deputy_ipc::supervisor::AnySignal::TERM.number(), 15);
    /// ```
    pub fn number(self) -> i32 {
        self.0
    }

    /// The standard signal, if it is one (`None` for a real-time signal).
    pub(crate) fn standard(self) -> Option<nix::sys::signal::Signal> {
        nix::sys::signal::Signal::try_from(self.0).ok()
    }

    /// Whether a process can catch it (all but SIGKILL and SIGSTOP).
    fn catchable(self) -> bool {
        !matches!(self.0, 9 | 19)
    }
}

/// `SIGTERM`, `SIGRTMIN+3`, `SIGRTMAX`.
impl fmt::Display for AnySignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.standard() {
            Some(signal) => f.write_str(signal.as_str()),
            None if self.0 == RTMAX => f.write_str("SIGRTMAX"),
            None if self.0 == RTMIN => f.write_str("SIGRTMIN"),
            None => write!(f, "SIGRTMIN+{}", self.0 - RTMIN),
        }
    }
}

impl From<nix::sys::signal::Signal> for AnySignal {
    fn from(signal: nix::sys::signal::Signal) -> AnySignal {
        AnySignal(signal as i32)
    }
}

/// Parses a signal as `deputy run --stop-signal` takes it: `TERM`, `SIGTERM`, `term`, `15`,
/// and the real-time ones as `RTMIN+3`, `SIGRTMIN+3`, `RTMAX-2` or `37`.
///
/// # Errors
///
/// A sentence for a person if it names no signal, or one that cannot be caught.
///
/// ```
/// use deputy_ipc::supervisor::parse_signal;
///
/// assert_eq!(parse_signal("quit").unwrap().number(), 3);
/// assert_eq!(parse_signal("SIGRTMIN+3").unwrap().number(), 37);
/// assert_eq!(parse_signal("RTMAX-2").unwrap().number(), 62);
/// assert!(parse_signal("KILL").unwrap_err().contains("cannot be caught"));
/// assert!(parse_signal("RTMIN+31").unwrap_err().contains("not a signal"));
/// ```
pub fn parse_signal(text: &str) -> Result<AnySignal, String> {
    let text = text.trim();
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let signal = if let Ok(number) = name.parse::<i32>() {
        AnySignal::from_number(number)
    } else if let Some(rest) = name.strip_prefix("RTMIN") {
        offset(rest, '+').and_then(|n| AnySignal::from_number(RTMIN + n))
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        offset(rest, '-').and_then(|n| AnySignal::from_number(RTMAX - n))
    } else {
        format!("SIG{name}")
            .parse::<nix::sys::signal::Signal>()
            .ok()
            .map(AnySignal::from)
    };
    match signal {
        Some(signal) if !signal.catchable() => Err(format!(
            "{text} cannot be caught, so it cannot ask for a graceful stop"
        )),
        Some(signal) => Ok(signal),
        None => Err(format!(
            "`{text}` is not a signal (try TERM, INT, QUIT, RTMIN+3 or a number from 1 to 64)"
        )),
    }
}

/// Parses `--stop-signal`: [`parse_signal`], less the signals whose default action is to
/// ignore or continue (SIGCHLD, SIGCONT, SIGURG, SIGWINCH), which would stop no program that
/// does not handle them.
///
/// # Errors
///
/// As [`parse_signal`], and a sentence for such a signal.
///
/// ```
/// use deputy_ipc::supervisor::parse_stop_signal;
///
/// assert_eq!(parse_stop_signal("QUIT").unwrap().number(), 3);
/// assert!(parse_stop_signal("CHLD").unwrap_err().contains("ignored by default"));
/// ```
pub fn parse_stop_signal(text: &str) -> Result<AnySignal, String> {
    parse_stop_signal_checked(text)
}

/// Parses `--trigger-signal`: [`parse_signal`], less the signals deputy has another use
/// for or cannot read: SIGCHLD (it reaps), and SIGPIPE and the signals of a fault (SIGSEGV,
/// SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS), which keep their default action in deputy.
///
/// # Errors
///
/// As [`parse_signal`], and a sentence for such a signal.
///
/// ```
/// use deputy_ipc::supervisor::parse_trigger_signal;
///
/// // A pod's `lifecycle.stopSignal: SIGQUIT`, or an image's `STOPSIGNAL SIGQUIT` (nginx).
/// assert_eq!(parse_trigger_signal("SIGQUIT").unwrap().number(), 3);
/// assert!(parse_trigger_signal("CHLD").unwrap_err().contains("reaps"));
/// assert!(parse_trigger_signal("SEGV").unwrap_err().contains("cannot start"));
/// ```
pub fn parse_trigger_signal(text: &str) -> Result<AnySignal, String> {
    let signal = parse_signal(text)?;
    match signal.number() {
        17 => Err(format!(
            "{signal} tells deputy a child ended (it reaps on it): it cannot start a shutdown"
        )),
        4 | 5 | 7 | 8 | 11 | 13 | 31 => Err(format!(
            "{signal} keeps its default action in deputy (a fault, or a closed pipe): it \
             cannot start a shutdown; try TERM, INT, QUIT, HUP or RTMIN+3"
        )),
        _ => Ok(signal),
    }
}

fn parse_stop_signal_checked(text: &str) -> Result<AnySignal, String> {
    let signal = parse_signal(text)?;
    if matches!(signal.number(), 17 | 18 | 23 | 28) {
        return Err(format!(
            "{signal} is ignored by default (or only continues a process): a program that does \
             not handle it would never stop; try TERM, INT, QUIT or RTMIN+3"
        ));
    }
    Ok(signal)
}

/// The `+3` of `RTMIN+3` (`sign` is `+` after RTMIN, `-` after RTMAX); an empty rest is 0.
fn offset(rest: &str, sign: char) -> Option<i32> {
    if rest.is_empty() {
        return Some(0);
    }
    let digits = rest.strip_prefix(sign)?;
    let n = digits.parse::<i32>().ok()?;
    (0..=RTMAX - RTMIN).contains(&n).then_some(n)
}

/// Sends `signal` to process `pid` or, with `group`, to its process group.
#[allow(unsafe_code)]
pub(crate) fn send(pid: i32, signal: AnySignal, group: bool) -> std::io::Result<()> {
    let pid = rustix::process::Pid::from_raw(pid).ok_or(std::io::ErrorKind::InvalidInput)?;
    // SAFETY: `from_raw_unchecked` is unsafe only because a signal the C library keeps for
    // itself (32, 33) could be sent with it; an `AnySignal` is never one of those.
    let signal = unsafe { rustix::process::Signal::from_raw_unchecked(signal.number()) };
    let sent = if group {
        rustix::process::kill_process_group(pid, signal)
    } else {
        rustix::process::kill_process(pid, signal)
    };
    Ok(sent?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_read_by_name_with_or_without_sig_or_by_number() {
        for text in ["TERM", "SIGTERM", "term", "15", " 15 ", "sigterm"] {
            assert_eq!(parse_signal(text), Ok(AnySignal::TERM), "{text}");
        }
        assert_eq!(parse_signal("quit").unwrap().number(), 3);
        assert_eq!(parse_signal("PWR").unwrap().number(), 30);
        assert!(
            parse_signal("KILL")
                .unwrap_err()
                .contains("cannot be caught")
        );
        assert!(parse_signal("19").unwrap_err().contains("cannot be caught"));
        assert!(parse_signal("NOPE").unwrap_err().contains("not a signal"));
        for refused in [
            "0", "32", "33", "65", "99", "-1", "RTMIN+31", "RTMIN3", "RTMAX+1",
        ] {
            assert!(parse_signal(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn real_time_signals_are_numbered_as_shells_and_runtimes_number_them() {
        for (text, number) in [
            ("RTMIN", 34),
            ("RTMIN+3", 37),
            ("SIGRTMIN+3", 37),
            ("sigrtmin+3", 37),
            ("rtmax", 64),
            ("RTMAX-2", 62),
            ("34", 34),
            ("64", 64),
        ] {
            assert_eq!(
                parse_signal(text).map(AnySignal::number),
                Ok(number),
                "{text}"
            );
        }
    }

    #[test]
    fn names_read_back() {
        for number in (1..32).chain(34..=64) {
            let signal = AnySignal::from_number(number).unwrap();
            if number == 9 || number == 19 {
                continue;
            }
            assert_eq!(parse_signal(&signal.to_string()), Ok(signal), "{signal}");
        }
    }
}

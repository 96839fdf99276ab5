use std::fmt;

/// Why shutdown was triggered.
///
/// ```
/// use deputy_core::Reason;
///
/// assert_eq!(Reason::Signal(15).to_string(), "signal SIGTERM");
/// assert_eq!(Reason::from("deploy").to_string(), "deploy");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// A Unix signal, by number.
    Signal(i32),
    /// A request on the control socket (`deputy terminate`).
    Ipc,
    /// A request to the HTTP `/shutdown` endpoint.
    Http,
    /// A call from the program itself, with a text saying why.
    Programmatic(String),
}

impl Reason {
    /// The conventional name of a signal number on Linux (`SIGTERM` for 15), if it has one.
    ///
    /// ```
    /// assert_eq!(deputy_core::Reason::signal_name(2), Some("SIGINT"));
    /// assert_eq!(deputy_core::Reason::signal_name(99), None);
    /// ```
    pub fn signal_name(signal: i32) -> Option<&'static str> {
        Some(match signal {
            1 => "SIGHUP",
            2 => "SIGINT",
            3 => "SIGQUIT",
            6 => "SIGABRT",
            9 => "SIGKILL",
            10 => "SIGUSR1",
            12 => "SIGUSR2",
            13 => "SIGPIPE",
            14 => "SIGALRM",
            15 => "SIGTERM",
            17 => "SIGCHLD",
            28 => "SIGWINCH",
            _ => return None,
        })
    }
}

impl From<&str> for Reason {
    fn from(text: &str) -> Self {
        Reason::Programmatic(text.to_owned())
    }
}

impl From<String> for Reason {
    fn from(text: String) -> Self {
        Reason::Programmatic(text)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Signal(n) => match Reason::signal_name(*n) {
                Some(name) => write!(f, "signal {name}"),
                None => write!(f, "signal {n}"),
            },
            Reason::Ipc => f.write_str("control socket request"),
            Reason::Http => f.write_str("http shutdown request"),
            Reason::Programmatic(text) => f.write_str(text),
        }
    }
}

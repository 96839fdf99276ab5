use std::fmt;

/// Why the supervisor could not start (once the child runs, what happens to it is in the
/// exit code instead).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunError {
    /// The configuration is unusable (a bad command line, for `deputy run`). Exit code 2.
    Usage(String),
    /// deputy could not set up (signals, the health port) or start the child. Exit code 125,
    /// as docker and podman use it.
    Setup(String),
    /// The command was found but cannot be executed. Exit code 126.
    NotExecutable(String),
    /// The command was not found. Exit code 127.
    NotFound(String),
}

impl RunError {
    /// The exit code that says what went wrong, as shells and container runtimes use them.
    ///
    /// ```
    /// use deputy_ipc::supervisor::RunError;
    ///
    /// assert_eq!(RunError::NotFound("cannot run nope: command not found".into()).exit_code(), 127);
    /// ```
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Usage(_) => 2,
            RunError::Setup(_) => 125,
            RunError::NotExecutable(_) => 126,
            RunError::NotFound(_) => 127,
        }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Usage(message)
            | RunError::Setup(message)
            | RunError::NotExecutable(message)
            | RunError::NotFound(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for RunError {}

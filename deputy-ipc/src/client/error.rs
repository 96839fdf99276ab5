use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::protocol::{ErrorCode, ProtocolError};

/// Why a [`Client`](super::Client) call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// No pid was given and the entrypoint pid file is missing or holds none.
    NoEntrypoint {
        /// The pid file looked for.
        path: PathBuf,
    },
    /// Nothing listens at the control socket's path (no such file, or a stale one).
    NoSocket {
        /// The socket's path.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The service refused this client: the socket belongs to another user, or the server's
    /// credential check said no.
    Refused {
        /// Why, for a person.
        message: String,
    },
    /// The server answered with an error.
    Server {
        /// Why, for a program.
        code: ErrorCode,
        /// Why, for a person.
        message: String,
    },
    /// The deadline set with [`Client::set_deadline`](super::Client::set_deadline) passed.
    TimedOut,
    /// The server closed the connection before the answer was complete.
    Closed,
    /// The server's answer is not one this client understands.
    Protocol(ProtocolError),
    /// Reading or writing the socket failed.
    Io(io::Error),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NoEntrypoint { path } => write!(
                f,
                "no target: {} is missing or holds no pid (give a pid, or set the control directory with {})",
                path.display(),
                crate::IPC_DIR_ENV
            ),
            ClientError::NoSocket { path, source } => {
                write!(
                    f,
                    "no target: cannot connect to {} ({source})",
                    path.display()
                )
            }
            ClientError::Refused { message } => write!(f, "refused: {message}"),
            ClientError::Server { code, message } => write!(f, "{code}: {message}"),
            ClientError::TimedOut => f.write_str("timed out"),
            ClientError::Closed => f.write_str("the connection closed before the answer"),
            ClientError::Protocol(error) => write!(f, "unexpected reply: {error}"),
            ClientError::Io(error) => write!(f, "control socket: {error}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::NoSocket { source, .. } => Some(source),
            ClientError::Protocol(error) => Some(error),
            ClientError::Io(error) => Some(error),
            _ => None,
        }
    }
}

impl From<io::Error> for ClientError {
    fn from(error: io::Error) -> Self {
        ClientError::Io(error)
    }
}

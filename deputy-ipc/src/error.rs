use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why the control socket could not be set up.
#[derive(Debug)]
#[non_exhaustive]
pub enum IpcError {
    /// The control directory does not exist.
    NoDirectory {
        /// The directory.
        path: PathBuf,
    },
    /// The control directory exists but the socket or pid file cannot be made in it.
    Unwritable {
        /// The file that could not be made.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// Something else failed while binding or accepting.
    Io(io::Error),
}

impl fmt::Display for IpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpcError::NoDirectory { path } => write!(
                f,
                "control directory {} does not exist (set {} or create it)",
                path.display(),
                crate::IPC_DIR_ENV
            ),
            IpcError::Unwritable { path, source } => write!(
                f,
                "cannot create {} ({source}); make the directory writable or set {}",
                path.display(),
                crate::IPC_DIR_ENV
            ),
            IpcError::Io(error) => write!(f, "control socket: {error}"),
        }
    }
}

impl std::error::Error for IpcError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IpcError::Unwritable { source, .. } => Some(source),
            IpcError::Io(error) => Some(error),
            IpcError::NoDirectory { .. } => None,
        }
    }
}

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the control socket or the health endpoints could not be set up. Each message
/// names the path or port and carries the system's word for it, so [`source`] is empty
/// (an error chain printed in full says each cause once).
///
/// [`source`]: std::error::Error::source
#[derive(Debug)]
#[non_exhaustive]
pub enum IpcError {
    /// The control directory does not exist.
    NoDirectory {
        /// The directory.
        path: PathBuf,
    },
    /// The control directory's path names something that is not a directory.
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The socket's path is longer than a Unix socket address holds (107 bytes on Linux).
    PathTooLong {
        /// The socket's path.
        path: PathBuf,
    },
    /// The control directory exists but the socket or pid file cannot be made in it.
    Unwritable {
        /// The file that could not be made.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The health endpoints' address cannot be listened on (a port in use, say).
    HealthAddress {
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        source: io::Error,
    },
    /// Something else failed while binding or accepting on the control socket.
    Io(io::Error),
}

impl fmt::Display for IpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env = crate::IPC_DIR_ENV;
        match self {
            IpcError::NoDirectory { path } => write!(
                f,
                "control directory {} does not exist (set {env} or create it)",
                path.display()
            ),
            IpcError::NotADirectory { path } => write!(
                f,
                "control directory {} is not a directory (set {env} to one)",
                path.display()
            ),
            IpcError::PathTooLong { path } => write!(
                f,
                "the control socket's path {} is {} bytes, more than a Unix socket allows \
                 ({MAX_SOCKET_PATH}): set {env} to a shorter directory",
                path.display(),
                path.as_os_str().len()
            ),
            IpcError::Unwritable { path, source } => write!(
                f,
                "cannot create {} ({source}); make the directory writable or set {env}",
                path.display()
            ),
            IpcError::HealthAddress { addr, source } => {
                write!(f, "cannot serve the health endpoints on {addr}: {source}")
            }
            IpcError::Io(error) => write!(f, "control socket: {error}"),
        }
    }
}

/// The longest path a Unix socket address holds on Linux (`sun_path` less its NUL).
pub(crate) const MAX_SOCKET_PATH: usize = 107;

impl std::error::Error for IpcError {}

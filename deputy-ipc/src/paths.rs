//! Where the control files live.

use std::path::{Path, PathBuf};

/// The control directory: `$DEPUTY_IPC_DIR`, else [`DEFAULT_IPC_DIR`](crate::DEFAULT_IPC_DIR).
///
/// ```
/// let dir = deputy_ipc::ipc_dir();
/// if std::env::var_os("DEPUTY_IPC_DIR").is_none() {
///     assert_eq!(dir, std::path::PathBuf::from("/run"));
/// }
/// ```
pub fn ipc_dir() -> PathBuf {
    std::env::var_os(crate::IPC_DIR_ENV)
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from(crate::DEFAULT_IPC_DIR), PathBuf::from)
}

/// The control socket of process `pid` in `dir`: `deputy.<pid>.sock`.
///
/// ```
/// let path = deputy_ipc::socket_path("/run".as_ref(), 42);
/// assert_eq!(path, std::path::PathBuf::from("/run/deputy.42.sock"));
/// ```
pub fn socket_path(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("deputy.{pid}.sock"))
}

/// The entrypoint pid file in `dir`: `deputy-entrypoint.pid`.
///
/// ```
/// let path = deputy_ipc::entrypoint_path("/run".as_ref());
/// assert_eq!(path, std::path::PathBuf::from("/run/deputy-entrypoint.pid"));
/// ```
pub fn entrypoint_path(dir: &Path) -> PathBuf {
    dir.join("deputy-entrypoint.pid")
}

/// Reads the entrypoint pid from `dir`, if the file exists and holds a pid.
pub fn entrypoint_pid(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(entrypoint_path(dir))
        .ok()?
        .trim()
        .parse()
        .ok()
}

//! Where the control files live.

use std::ffi::OsStr;
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
    dir.join(format!("{SOCKET_PREFIX}{pid}{SOCKET_SUFFIX}"))
}

const SOCKET_PREFIX: &str = "deputy.";
const SOCKET_SUFFIX: &str = ".sock";

/// The pid in a control socket's file name, the inverse of [`socket_path`]: `None` for any
/// other name.
///
/// ```
/// use std::ffi::OsStr;
///
/// assert_eq!(deputy_ipc::socket_pid(OsStr::new("deputy.42.sock")), Some(42));
/// assert_eq!(deputy_ipc::socket_pid(OsStr::new("deputy-entrypoint.pid")), None);
/// assert_eq!(deputy_ipc::socket_pid(OsStr::new("deputy.x.sock")), None);
/// ```
pub fn socket_pid(file_name: &OsStr) -> Option<u32> {
    file_name
        .to_str()?
        .strip_prefix(SOCKET_PREFIX)?
        .strip_suffix(SOCKET_SUFFIX)?
        .parse()
        .ok()
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

const JULIA_PREFIX: &str = "graceful-terminator.";
const JULIA_SUFFIX: &str = ".socket";

/// K8sDeputy.jl's socket of process `pid` in `dir`: `graceful-terminator.<pid>.socket`, where
/// a Julia service that calls `graceful_terminator` listens for the line `terminate`.
///
/// ```
/// let path = deputy_ipc::julia_socket_path("/run".as_ref(), 42);
/// assert_eq!(path, std::path::PathBuf::from("/run/graceful-terminator.42.socket"));
/// ```
pub fn julia_socket_path(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("{JULIA_PREFIX}{pid}{JULIA_SUFFIX}"))
}

/// The pid in a K8sDeputy.jl socket's file name, the inverse of [`julia_socket_path`].
///
/// ```
/// use std::ffi::OsStr;
///
/// assert_eq!(deputy_ipc::julia_socket_pid(OsStr::new("graceful-terminator.7.socket")), Some(7));
/// assert_eq!(deputy_ipc::julia_socket_pid(OsStr::new("deputy.7.sock")), None);
/// ```
pub fn julia_socket_pid(file_name: &OsStr) -> Option<u32> {
    file_name
        .to_str()?
        .strip_prefix(JULIA_PREFIX)?
        .strip_suffix(JULIA_SUFFIX)?
        .parse()
        .ok()
}

/// Reads K8sDeputy.jl's entrypoint pid file, `julia-entrypoint.pid` in `dir`, if it exists
/// and holds a pid.
pub fn julia_entrypoint_pid(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join("julia-entrypoint.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// This process's pid, asked of the kernel once (`std::process::id` asks each time; deputy
/// starts its child with `posix_spawn`, never a `fork` that would run on with a copy).
pub(crate) fn own_pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

//! The container's termination message: at `Done`, a few lines on why the last run ended,
//! written where the kubelet reads them, so that `kubectl describe pod` shows them under
//! "Last State" (Kubernetes keeps at most 4,096 bytes of it).
//!
//! The file is `$DEPUTY_TERMINATION_LOG` when set (empty: write none), else
//! `/dev/termination-log` when it exists (the kubelet mounts it at the container's
//! `terminationMessagePath`, that path by default).
//!
//! ```no_run
//! # async fn after(coordinator: deputy_core::ShutdownCoordinator) {
//! let report = coordinator.run().await;
//! deputy_ipc::record_termination(&report);
//! std::process::exit(report.exit_code);
//! # }
//! ```

use std::io;
use std::path::{Path, PathBuf};

use deputy_core::ShutdownReport;

use crate::protocol::truncate;

/// The environment variable naming the termination message file (empty: write none).
pub const TERMINATION_LOG_ENV: &str = "DEPUTY_TERMINATION_LOG";

/// Kubernetes' default `terminationMessagePath`.
pub const DEFAULT_TERMINATION_LOG: &str = "/dev/termination-log";

/// The most of a termination message Kubernetes keeps, in bytes.
pub const MAX_TERMINATION_MESSAGE: usize = 4096;

/// Where the termination message goes, if anywhere: `$DEPUTY_TERMINATION_LOG` (unless empty),
/// else `/dev/termination-log` if it exists.
pub fn termination_log_path() -> Option<PathBuf> {
    match std::env::var_os(TERMINATION_LOG_ENV) {
        Some(path) if path.is_empty() => None,
        Some(path) => Some(path.into()),
        None => {
            let default = PathBuf::from(DEFAULT_TERMINATION_LOG);
            default.exists().then_some(default)
        }
    }
}

/// A service's termination message: its exit code, then the report's
/// [`summary`](ShutdownReport::summary).
///
/// ```
/// # use std::time::Duration;
/// # use deputy_core::{ManualClock, ShutdownCoordinator};
/// let coordinator = ShutdownCoordinator::builder()
///     .drain_delay(Duration::ZERO)
///     .build(ManualClock::new())
///     .unwrap();
/// coordinator.handle().trigger("deploy");
/// let report = futures::executor::block_on(coordinator.run());
/// let message = deputy_ipc::termination_message(report.exit_code, &report);
/// assert!(message.starts_with("exit code 0: shutdown clean in 0.0s (reason: deploy)\n"));
/// ```
pub fn termination_message(exit_code: i32, report: &ShutdownReport) -> String {
    format!("exit code {exit_code}: {}", report.summary())
}

/// Writes `message` (cut to [`MAX_TERMINATION_MESSAGE`] bytes, at a character boundary) to
/// the [`termination_log_path`]; returns where, or `None` when there is nowhere to write.
///
/// # Errors
///
/// The file could not be written (a read-only mount, a missing directory).
pub fn write_termination_message(message: &str) -> io::Result<Option<PathBuf>> {
    let Some(path) = termination_log_path() else {
        return Ok(None);
    };
    write_termination_message_at(&path, message)?;
    Ok(Some(path))
}

/// [`write_termination_message`] to `path`, found already.
pub(crate) fn write_termination_message_at(path: &Path, message: &str) -> io::Result<()> {
    std::fs::write(path, truncate(message, MAX_TERMINATION_MESSAGE))
}

/// Writes the [`termination_message`] of a service that exits with `report.exit_code`; a
/// failure is logged (`tracing`, at warn), since the process is about to exit anyway.
pub fn record_termination(report: &ShutdownReport) {
    let message = termination_message(report.exit_code, report);
    if let Err(error) = write_termination_message(&message) {
        tracing::warn!(%error, "cannot write the termination message");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_is_cut_at_a_character_boundary() {
        assert_eq!(truncate("short", 4096), "short");
        let long = "é".repeat(3000); // 6,000 bytes
        let cut = truncate(&long, MAX_TERMINATION_MESSAGE);
        assert_eq!(cut.len(), 4096);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(truncate("aé", 2), "a");
    }
}

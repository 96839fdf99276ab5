//! The container's termination message (`/dev/termination-log`): where it goes, settled
//! before the child starts, and what `deputy run` writes there at the end.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use deputy_core::Shutdown;

use super::child::Child;
use super::say_warn;

/// What the way out needs, settled before the child starts, so that the way from the stop
/// signal to exit has less to do: stdout's buffer (std sets it up when first asked for it,
/// an allocation that musl may map; else `exit_now`'s flush would), and where the
/// termination message goes (the kubelet mounts /dev/termination-log before the container
/// starts) with that file's state now.
pub(super) fn settle_the_way_out() -> (Option<PathBuf>, FileState) {
    drop(std::io::stdout());
    let path = crate::termination_log_path();
    let state = path.as_deref().and_then(termination_file_state);
    (path, state)
}

/// The termination message file's identity: when it was changed, its size and inode. A
/// child that writes its own message changes it; compared as a whole, not by time alone,
/// since file times come from a coarse clock that can lag this one by milliseconds.
pub(super) type FileState = Option<(Option<SystemTime>, u64, u64)>;

fn termination_file_state(path: &Path) -> FileState {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok(), meta.len(), meta.ino()))
}

/// The container's termination message at `path` (see [`crate::record_termination`]): how
/// the child ended and deputy's exit code, the shutdown's summary, then what the child wrote
/// there itself during this run (a service that uses deputy), if anything.
pub(super) fn record_termination(
    path: &Path,
    child: &Child,
    shutdown: &Shutdown,
    exit: i32,
    before: FileState,
) {
    let ending = child
        .ending()
        .unwrap_or_else(|| format!("process {} was not reaped", child.pid()));
    let mut message = format!("{ending}; deputy run exits with code {exit}\n");
    if let Some(report) = shutdown.report() {
        message.push_str(&report.summary());
    }
    if termination_file_state(path) != before
        && let Ok(own) = std::fs::read_to_string(path)
        && !own.trim().is_empty()
    {
        message.push_str("the child's own message:\n");
        message.push_str(&own);
    }
    if let Err(error) = crate::termination::write_termination_message_at(path, &message) {
        say_warn!(
            "cannot write the termination message to {}: {error}",
            path.display()
        );
    }
}

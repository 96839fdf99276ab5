//! How the child is to be stopped, settled from the configuration before it starts: the
//! stop signal, its own way (a command, a URL), where its control socket would be, and the
//! time limits.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use super::local_url::LocalUrl;
use super::signal::AnySignal;

/// How to stop the child.
#[derive(Debug)]
pub(crate) struct StopPlan {
    /// The stop signal, when the child has no control socket (or its own way failed).
    pub(crate) signal: AnySignal,
    /// Whether signals go to the child's process group.
    pub(crate) group: bool,
    /// Where the child's control socket would be.
    pub(crate) ipc_dir: PathBuf,
    /// After the child exits: SIGTERM to its leftovers, this long, then SIGKILL.
    pub(crate) cleanup_timeout: Duration,
    /// The child's own way to be asked, before any socket or signal.
    pub(crate) way: Option<StopWay>,
    /// SIGKILL if the child has not exited this long after it was asked (unless it asked
    /// for more); without it, only the grace period bounds the stop.
    pub(crate) timeout: Option<Duration>,
}

/// The child's own way to be asked to stop.
#[derive(Debug)]
pub(crate) enum StopWay {
    /// Run this program (`nginx -s quit`); exit 0 means asked.
    Command(Vec<OsString>),
    /// POST to this URL of the child's; 2xx means asked.
    Url(LocalUrl),
}

//! The open-files limit: raised to what the system allows, as Go programs do since Go 1.19.

use std::io;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// What [`raise_nofile_limit`] did: the soft limit on open files before and after (`None`:
/// unlimited). The hard limit is `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct NofileLimit {
    /// The soft limit before the call.
    pub before: Option<u64>,
    /// The soft limit now: the hard limit.
    pub after: Option<u64>,
}

/// Raises this process's soft limit on open files (RLIMIT_NOFILE) to its hard limit, so that
/// a flood of connections exhausts the system's patience before the process's descriptors.
/// Many container runtimes and systemd services start programs with a soft limit of 1,024
/// and a much higher hard limit; Go has raised it this way at start-up since Go 1.19.
///
/// Call it once at start-up. Children inherit the raised limit: to give a child the
/// original, spawn it first, or set `before` back in it (as `deputy run` does: it raises its
/// own limit only after it has started its child, unless told otherwise).
///
/// # Errors
///
/// What `setrlimit` says (it cannot fail for lack of permission: a soft limit may always be
/// raised up to the hard one).
///
/// ```
/// let limit = deputy_ipc::raise_nofile_limit().unwrap();
/// assert_eq!(rlimit_now(), limit.after);
/// # fn rlimit_now() -> Option<u64> {
/// #     rustix::process::getrlimit(rustix::process::Resource::Nofile).current
/// # }
/// ```
pub fn raise_nofile_limit() -> io::Result<NofileLimit> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return Ok(NofileLimit {
            before: limit.current,
            after: limit.current,
        });
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, raised)?;
    tracing::debug!(
        before = limit.current,
        after = limit.maximum,
        "raised the soft limit on open files to the hard limit"
    );
    Ok(NofileLimit {
        before: limit.current,
        after: limit.maximum,
    })
}

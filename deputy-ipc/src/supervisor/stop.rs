//! Stopping the child: its own way (`--stop-command`, `--stop-url`), over a control socket
//! (deputy's, or K8sDeputy.jl's), or with the stop signal; then waiting for it to exit,
//! within `--stop-timeout` (extended by the child's `EXTEND_TIMEOUT_USEC`) if one is set.

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures::future::{Either, select};
use hyper::Method;
use nix::sys::signal::Signal;

use nix::unistd::Pid;

use super::child::{Child, Exit};
use super::local_url::LocalUrl;
use super::stop_plan::StopWay;
use super::{say, say_warn};
use crate::client::{Client, ClientError};
use crate::procs;
use crate::timeout::{until, within};

/// How long `--stop-command` may run, and `--stop-url` may take to answer, before deputy
/// falls back to the stop signal.
pub(super) const STOP_WAY_TIMEOUT: Duration = Duration::from_secs(10);

/// Asks the child to stop, and waits for it to exit (within `--stop-timeout`, if set):
/// its own way if one is given; else over its control socket if it has one, else over
/// those of its descendants that have one (a shell that runs the service without
/// `exec`, as K8sDeputy.jl's docs advise for Julia); else with the stop signal.
pub(crate) async fn stop(child: &Child) {
    if child.exited.is_cancelled() {
        return;
    }
    let asked_at = Instant::now();
    // The ways that talk to the child are boxed, each where it is taken: inline, their
    // futures (an HTTP client's) would make the stop hook's future tens of KiB, which
    // musl's allocator maps and unmaps on the way from the signal to exit.
    let asked = match &child.plan.way {
        Some(StopWay::Command(command)) => Box::pin(run_stop_command(child, command)).await,
        Some(StopWay::Url(url)) => Box::pin(call_stop_url(url)).await,
        None => ask_over_sockets(child).await,
    };
    if !asked && !child.exited.is_cancelled() {
        child.forward(child.plan.signal);
        let whom = if child.plan.group {
            "process group"
        } else {
            "process"
        };
        say!("sent {} to {whom} {}", child.plan.signal, child.pid);
    }
    wait_for_exit(child, asked_at).await;
}

/// The child asks to be given until `deadline` to stop (systemd's `EXTEND_TIMEOUT_USEC`):
/// `--stop-timeout` ends no earlier than that. The grace period still bounds it all.
pub(crate) fn extend_stop(child: &Child, deadline: Instant) {
    let mut extended = child.extended.lock().unwrap_or_else(|e| e.into_inner());
    *extended = Some(extended.map_or(deadline, |before| before.max(deadline)));
}

/// Waits for the child to exit; with `--stop-timeout`, SIGKILL to its group and every
/// descendant once that has passed since `asked_at` (and any extension too).
async fn wait_for_exit(child: &Child, asked_at: Instant) {
    let Some(timeout) = child.plan.timeout else {
        return child.exited.cancelled().await;
    };
    let mut deadline = asked_at + timeout;
    while until(deadline, child.exited.cancelled()).await.is_none() {
        let extended = *child.extended.lock().unwrap_or_else(|e| e.into_inner());
        match extended {
            Some(later) if later > Instant::now() => deadline = later,
            _ => {
                say_warn!(
                    "process {} did not exit within {} of being asked to stop: sending \
                     SIGKILL",
                    child.pid,
                    humantime::format_duration(Instant::now() - asked_at)
                );
                return child.kill_all_and_wait().await;
            }
        }
    }
}

/// `--stop-command`: runs it and waits (at most [`STOP_WAY_TIMEOUT`]) for it to exit;
/// whether it exited 0. The child exiting first counts as asked.
async fn run_stop_command(child: &Child, command: &[OsString]) -> bool {
    let shown = shown(command);
    let child_pid: OsString = child.pid.as_raw().to_string().into();
    let env = [("DEPUTY_CHILD_PID".into(), child_pid)];
    let pid = match super::child::spawn(command, (&env, &[])) {
        Ok(pid) => pid,
        Err(error) => {
            say_warn!("--stop-command failed: {error}");
            return false;
        }
    };
    // Registered before the next await: the signal loop, which reaps, runs on this
    // thread, so the command cannot be reaped before this.
    let (done, exit) = oneshot::channel();
    *child.helper.lock().unwrap_or_else(|e| e.into_inner()) = Some((pid, done));
    let exited = std::pin::pin!(child.exited.cancelled());
    let finished = select(exit, exited);
    match within(STOP_WAY_TIMEOUT, finished).await {
        Some(Either::Left((Ok(Exit::Code(0)), _))) => {
            say!("ran `{shown}` to stop process {}", child.pid);
            true
        }
        Some(Either::Left((Ok(exit), _))) => {
            say_warn!("`{shown}` failed ({})", describe(exit));
            false
        }
        Some(Either::Left((Err(_), _))) => false,
        Some(Either::Right(_)) => true,
        None => {
            say_warn!(
                "`{shown}` still running after {}: killing it",
                humantime::format_duration(STOP_WAY_TIMEOUT)
            );
            let _ = nix::sys::signal::killpg(pid, Signal::SIGKILL);
            false
        }
    }
}

/// `--stop-url`: POST, bounded to [`STOP_WAY_TIMEOUT`]; whether it answered 2xx.
async fn call_stop_url(url: &LocalUrl) -> bool {
    match within(STOP_WAY_TIMEOUT, url.request(Method::POST)).await {
        Some(Ok(status)) if status.is_success() => {
            say!("POST {} answered {status}", url.as_str());
            true
        }
        Some(Ok(status)) => {
            say_warn!("POST {} answered {status}", url.as_str());
            false
        }
        Some(Err(error)) => {
            say_warn!("POST {} failed: {error}", url.as_str());
            false
        }
        None => {
            say_warn!(
                "POST {} had no answer within {}",
                url.as_str(),
                humantime::format_duration(STOP_WAY_TIMEOUT)
            );
            false
        }
    }
}

/// deputy's control socket, the child's or its descendants', then K8sDeputy.jl's; whether
/// one took the request.
async fn ask_over_sockets(child: &Child) -> bool {
    // One listing of the control directory says which sockets there are: most children
    // have none, and then stopping them costs this one system call.
    let sockets = Sockets::list(&child.plan.ipc_dir);
    let own = child.pid.as_raw() as u32;
    let mut asked =
        sockets.deputy.contains(&own) && Box::pin(ask_over_socket(child, child.pid)).await;
    if !asked {
        for pid in sockets.descendants(&sockets.deputy, own) {
            asked |= Box::pin(ask_over_socket(child, pid)).await;
        }
    }
    // A Julia service with K8sDeputy.jl's `graceful_terminator` (on SIGTERM, Julia
    // prints a stack trace and dies): its own socket, the child's or a descendant's.
    if !asked {
        asked = sockets.julia.contains(&own) && Box::pin(ask_julia(child, child.pid)).await;
    }
    if !asked {
        for pid in sockets.descendants(&sockets.julia, own) {
            asked |= Box::pin(ask_julia(child, pid)).await;
        }
    }
    asked
}

/// Writes `terminate` to `pid`'s K8sDeputy.jl socket; whether it could.
async fn ask_julia(child: &Child, pid: Pid) -> bool {
    match crate::client::terminate_julia(&child.plan.ipc_dir, pid.as_raw() as u32).await {
        Ok(()) => {
            say!("asked process {pid} to terminate over its K8sDeputy.jl socket");
            true
        }
        Err(ClientError::NoSocket { .. }) => false,
        Err(error) => {
            say_warn!("the K8sDeputy.jl socket of process {pid} failed: {error}");
            false
        }
    }
}

/// Asks `pid` to terminate over its control socket; whether it accepted.
async fn ask_over_socket(child: &Child, pid: Pid) -> bool {
    match ask_to_terminate(&child.plan.ipc_dir, pid).await {
        Ok(_) => {
            say!("asked process {pid} to shut down over its control socket");
            true
        }
        // Most children have none.
        Err(ClientError::NoSocket { .. }) => false,
        Err(error) => {
            say_warn!("the control socket of process {pid} failed: {error}");
            false
        }
    }
}

/// The command as a person would type it, quoted as a shell would need.
fn shown(command: &[OsString]) -> String {
    shell_words::join(command.iter().map(|arg| arg.to_string_lossy()))
}

fn describe(exit: Exit) -> String {
    match exit {
        Exit::Code(code) => format!("exit code {code}"),
        Exit::Signal(signal) => format!("killed by {signal}"),
    }
}

/// The sockets in the control directory, by the pid in their names: deputy's
/// (`deputy.<pid>.sock`) and K8sDeputy.jl's (`graceful-terminator.<pid>.socket`).
#[derive(Debug, Default)]
struct Sockets {
    deputy: Vec<u32>,
    julia: Vec<u32>,
}

impl Sockets {
    /// One listing of `dir` (nothing if it cannot be read). Read with `getdents64` into a
    /// buffer on the stack: four system calls, where `read_dir` also maps and unmaps a
    /// buffer (this is on the way from the stop signal to exit).
    fn list(dir: &Path) -> Sockets {
        use rustix::fs::{Mode, OFlags, RawDir};
        use std::mem::MaybeUninit;
        use std::os::unix::ffi::OsStrExt as _;
        let mut sockets = Sockets::default();
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let Ok(fd) = rustix::fs::open(dir, flags, Mode::empty()) else {
            return sockets;
        };
        let mut buffer = [MaybeUninit::<u8>::uninit(); 4096];
        let mut entries = RawDir::new(fd, &mut buffer);
        while let Some(Ok(entry)) = entries.next() {
            let name = std::ffi::OsStr::from_bytes(entry.file_name().to_bytes());
            if let Some(pid) = crate::socket_pid(name) {
                sockets.deputy.push(pid);
            } else if let Some(pid) = crate::julia_socket_pid(name) {
                sockets.julia.push(pid);
            }
        }
        sockets
    }

    /// Those of `pids` whose processes descend from deputy, but for `child` (tried on its
    /// own) and deputy itself: a walk up each one's parents, no scan of /proc, which holds
    /// hundreds of processes outside a container.
    fn descendants(&self, pids: &[u32], child: u32) -> Vec<Pid> {
        let tried = [child, crate::own_pid()];
        pids.iter()
            .filter(|pid| !tried.contains(pid) && procs::is_descendant(**pid))
            .map(|&pid| Pid::from_raw(pid as i32))
            .collect()
    }
}

/// Asks process `pid` to terminate over its control socket in `dir`, without waiting for
/// it to finish; the exchange is bounded to 2 s. Most children have no socket: connecting
/// says so after one `stat`, before any timer is set (a timer wakes async-io's reactor
/// thread, which costs more than the rest of this on the path from signal to exit).
async fn ask_to_terminate(dir: &Path, pid: Pid) -> Result<bool, ClientError> {
    let mut client = Client::connect(dir, pid.as_raw() as u32).await?;
    within(
        Duration::from_secs(2),
        client.ask_to_terminate(Some("deputy run")),
    )
    .await
    .unwrap_or(Err(ClientError::TimedOut))
}

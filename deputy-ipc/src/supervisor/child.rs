//! The supervised child: starting it, stopping it, reaping it, and cleaning up what it
//! leaves behind.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use deputy_core::{CancellationToken, Reason, Shutdown};
use nix::errno::Errno;
use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawnp};
use nix::sys::signal::{SigSet, Signal, kill, killpg};
use nix::unistd::Pid;

use futures::channel::oneshot;

use super::signal::{self, AnySignal};
use super::stop_plan::StopPlan;
use super::{RunError, say, say_error, say_warn};
use crate::procs;
use crate::timeout::within;

/// The one phase of the supervisor's shutdown.
pub(crate) const PHASE: &str = "stop-child";

/// How long to wait for processes to disappear after SIGKILL before giving up on them (a
/// process in uninterruptible sleep cannot die until its I/O returns).
const AFTER_KILL: Duration = Duration::from_secs(5);

/// How a process ended.
#[derive(Debug, Clone, Copy)]
pub(super) enum Exit {
    Code(i32),
    Signal(AnySignal),
}

/// The child, from spawn until it and every descendant are gone.
#[derive(Debug)]
pub(crate) struct Child {
    pub(super) pid: Pid,
    pub(super) plan: StopPlan,
    /// Whether the child's group was given the terminal's foreground.
    terminal: bool,
    exit: OnceLock<Exit>,
    /// Cancelled when the child has been reaped.
    pub(super) exited: CancellationToken,
    /// A process deputy started to help stop the child (`--stop-command`), and where its
    /// exit goes once reaped.
    pub(super) helper: Mutex<Option<(Pid, oneshot::Sender<Exit>)>>,
    /// Until when the child asked to be given to stop (systemd's `EXTEND_TIMEOUT_USEC`).
    pub(super) extended: Mutex<Option<Instant>>,
    /// Cancelled when, the child reaped, deputy has no children left: every descendant is
    /// gone (each one's chain of parents passes through a child of deputy's).
    gone: CancellationToken,
}

impl Child {
    /// Starts `command` (see [`spawn`]) as the supervised child.
    pub(crate) fn spawn(
        command: &[OsString],
        env: (&[(OsString, OsString)], &[OsString]),
        plan: StopPlan,
    ) -> Result<Child, RunError> {
        let pid = spawn(command, env)?;
        let terminal = give_terminal(pid);
        Ok(Child {
            pid,
            plan,
            terminal,
            exit: OnceLock::new(),
            exited: CancellationToken::new(),
            helper: Mutex::new(None),
            extended: Mutex::new(None),
            gone: CancellationToken::new(),
        })
    }

    /// The child's pid (also its process group's id).
    pub(crate) fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// The exit code deputy passes on: the child's, or 128 + the signal that killed it.
    pub(crate) fn exit_code(&self) -> Option<i32> {
        self.exit.get().map(|exit| match *exit {
            Exit::Code(code) => code,
            Exit::Signal(signal) => 128 + signal.number(),
        })
    }

    /// How the child ended, for a person: "process 7 exited with code 3", "process 7 was
    /// killed by SIGKILL"; `None` while it runs.
    pub(crate) fn ending(&self) -> Option<String> {
        self.exit.get().map(|exit| match *exit {
            Exit::Code(code) => format!("process {} exited with code {code}", self.pid),
            Exit::Signal(signal) => {
                format!("process {} was killed by {signal}", self.pid)
            }
        })
    }

    /// Whether the child and all its descendants are gone.
    pub(crate) fn is_done(&self) -> bool {
        self.gone.is_cancelled()
    }

    /// Sends `signal` to the child, or with `--group` to its process group; nothing once it
    /// has been reaped (its pid may belong to another process by then).
    pub(crate) fn forward(&self, signal: AnySignal) {
        if self.exited.is_cancelled() {
            return;
        }
        let _ = signal::send(self.pid.as_raw(), signal, self.plan.group);
    }

    /// After the child exited: SIGTERM to every descendant left, `--cleanup-timeout`, SIGKILL
    /// to those still there; returns when all are gone.
    pub(crate) async fn clean_up(&self) {
        self.exited.cancelled().await;
        if self.gone.is_cancelled() {
            return;
        }
        match self.signal_leftovers(Signal::SIGTERM) {
            Leftovers::Listed(0) => {} // only zombies, on their way to being reaped
            Leftovers::Listed(count) => say_warn!(
                "{} left behind by process {}: sending SIGTERM",
                processes(count),
                self.pid
            ),
            Leftovers::Group => say_warn!(
                "process {} left processes behind (/proc is another PID namespace's): \
                 SIGTERM to its process group",
                self.pid
            ),
        }
        if within(self.plan.cleanup_timeout, self.gone.cancelled())
            .await
            .is_none()
        {
            let still = match self.signal_leftovers(Signal::SIGKILL) {
                Leftovers::Listed(count) => processes(count),
                Leftovers::Group => "processes".to_owned(),
            };
            say_warn!(
                "{still} still running after {}: sending SIGKILL",
                humantime::format_duration(self.plan.cleanup_timeout)
            );
        }
        self.gone.cancelled().await;
    }

    /// Sends `signal` to what the child left behind: its live descendants as /proc lists them
    /// or, where /proc cannot tell (it belongs to another PID namespace), the child's process
    /// group (which cannot have been reused while a member of it lives).
    fn signal_leftovers(&self, signal: Signal) -> Leftovers {
        match procs::descendants() {
            Some(left) => {
                signal_all(&left, signal);
                Leftovers::Listed(left.len())
            }
            None => {
                let _ = killpg(self.pid, signal);
                Leftovers::Group
            }
        }
    }

    /// SIGKILL to the child's process group and every descendant; returns at once (the
    /// signal loop, which calls it, is what reaps them).
    pub(crate) fn kill_all(&self) {
        if !self.exited.is_cancelled() {
            let _ = killpg(self.pid, Signal::SIGKILL);
        }
        let _ = self.signal_leftovers(Signal::SIGKILL);
    }

    /// [`kill_all`](Self::kill_all), then waits (a bounded time) for all to be reaped.
    pub(crate) async fn kill_all_and_wait(&self) {
        self.kill_all();
        if within(AFTER_KILL, self.gone.cancelled()).await.is_none() {
            say_error!(
                "processes still there {} after SIGKILL; exiting anyway",
                humantime::format_duration(AFTER_KILL)
            );
        }
    }

    /// Reaps every child that has exited (the main one and any orphan handed to deputy);
    /// called on SIGCHLD. When the main child exits by itself (before shutdown, or during the
    /// drain delay), shutdown goes on at once: there is nothing left to drain.
    pub(crate) fn reap(&self, shutdown: &Shutdown) {
        use rustix::process::{WaitOptions, wait};
        loop {
            // rustix's raw statuses, not nix's: nix turns a child killed by a real-time
            // signal into an error, after the child was reaped, and its exit would be lost.
            // `wait`: any child (`waitpid(-1)`), the orphans handed to deputy included.
            let (pid, status) = match wait(WaitOptions::NOHANG | WaitOptions::UNTRACED) {
                Ok(Some((pid, status))) => (Pid::from_raw(pid.as_raw_nonzero().get()), status),
                Ok(None) => return,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::CHILD) => {
                    if self.exited.is_cancelled() {
                        self.gone.cancel();
                    }
                    return;
                }
                Err(error) => {
                    say_error!("cannot reap children: {error}");
                    return;
                }
            };
            let exit = if let Some(code) = status.exit_status() {
                Exit::Code(code)
            } else if let Some(number) = status.terminating_signal() {
                Exit::Signal(AnySignal::from_number(number).unwrap_or(AnySignal::KILL))
            } else {
                let stopped_on_terminal = matches!(status.stopping_signal(), Some(21 | 22));
                if pid == self.pid && self.terminal && stopped_on_terminal {
                    // It touched the terminal (SIGTTIN, SIGTTOU) before it had the
                    // foreground: give it again (harmless if it has it) and let it go on.
                    let _ = give_terminal_again(pid);
                    let _ = killpg(pid, Signal::SIGCONT);
                }
                continue;
            };
            if pid == self.pid {
                self.exited_with(exit, shutdown);
            } else {
                let mut helper = self.helper.lock().unwrap_or_else(|e| e.into_inner());
                if helper.as_ref().is_some_and(|(helper, _)| *helper == pid)
                    && let Some((_, done)) = helper.take()
                {
                    let _ = done.send(exit);
                }
            }
        }
    }

    fn exited_with(&self, exit: Exit, shutdown: &Shutdown) {
        let _ = self.exit.set(exit);
        let triggered = shutdown.is_triggered();
        let when = if triggered {
            format!(
                ", {:.1}s into shutdown",
                shutdown.status().elapsed.as_secs_f64()
            )
        } else {
            String::new()
        };
        if !matches!(exit, Exit::Code(0)) || triggered {
            say!("{}{when}", self.ending().unwrap_or_default());
        }
        self.exited.cancel();
        // Whether shutdown had started or not, the rest of the drain delay is moot now.
        let reason = Reason::from(format!("process {} exited", self.pid));
        if !triggered {
            shutdown.trigger(reason.clone());
        }
        shutdown.force(reason);
    }
}

/// Starts `command` in its own process group, with an empty signal mask, every signal at its
/// default disposition (ignored ones included: an ignore survives exec), deputy's stdio, and
/// deputy's environment without the `withheld` variables, with `extra_env` on top.
pub(super) fn spawn(
    command: &[OsString],
    (extra_env, withheld): (&[(OsString, OsString)], &[OsString]),
) -> Result<Pid, RunError> {
    let program = command[0].to_string_lossy().into_owned();
    let args = command
        .iter()
        .map(|arg| CString::new(arg.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| RunError::Usage("the command holds a NUL byte".to_owned()))?;
    let env = std::env::vars_os()
        .filter(|(key, _)| {
            !withheld.contains(key) && !extra_env.iter().any(|(extra, _)| extra == key)
        })
        .chain(extra_env.iter().cloned())
        .filter_map(|(key, value)| {
            let mut pair = key.into_vec();
            pair.push(b'=');
            pair.extend_from_slice(value.as_bytes());
            CString::new(pair).ok()
        })
        .collect::<Vec<_>>();
    let setup = |error: Errno| RunError::Setup(format!("cannot start {program}: {error}"));
    let mut attr = PosixSpawnAttr::init().map_err(setup)?;
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETPGROUP
            | PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK
            | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
    )
    .map_err(setup)?;
    attr.set_pgroup(Pid::from_raw(0)).map_err(setup)?;
    attr.set_sigmask(&SigSet::empty()).map_err(setup)?;
    attr.set_sigdefault(&every_signal()).map_err(setup)?;
    let actions = PosixSpawnFileActions::init().map_err(setup)?;
    posix_spawnp(&args[0], &actions, &attr, &args, &env).map_err(|error| match error {
        Errno::ENOENT => RunError::NotFound(format!("cannot run {program}: command not found")),
        Errno::EACCES | Errno::ENOEXEC | Errno::EISDIR | Errno::EPERM => {
            RunError::NotExecutable(format!("cannot run {program}: {}", error.desc()))
        }
        error => setup(error),
    })
}

/// With a terminal on stdin whose foreground is deputy's process group (a person at a
/// terminal, `docker run -it`), hands the foreground to the child's group, as tini does: in a
/// background group, a child that reads the terminal would be stopped (SIGTTIN) for good.
/// Ctrl-C then reaches the child directly. Returns whether it did.
fn give_terminal(pid: Pid) -> bool {
    let stdin = std::io::stdin();
    std::io::IsTerminal::is_terminal(&stdin)
        && nix::unistd::tcgetpgrp(&stdin).is_ok_and(|group| group == nix::unistd::getpgrp())
        && give_terminal_again(pid).is_ok()
}

fn give_terminal_again(pid: Pid) -> nix::Result<()> {
    nix::unistd::tcsetpgrp(std::io::stdin(), pid)
}

/// Every signal, the two that glibc keeps for itself (32 and 33) included: its sigfillset
/// leaves them out, and posix_spawn sets a signal that is handled in the parent and missing
/// from this set to *ignored* in the child (an ignore survives exec), where fork and exec
/// would leave it at the default. With all of them here the child starts with none ignored.
#[allow(unsafe_code)]
fn every_signal() -> SigSet {
    let mut raw = std::mem::MaybeUninit::<nix::libc::sigset_t>::uninit();
    // SAFETY: sigset_t is a plain array of integers, one bit per signal, so any bit pattern
    // is a valid value, and the write initialises all of it.
    let raw = unsafe {
        raw.as_mut_ptr().write_bytes(0xff, 1);
        raw.assume_init()
    };
    // SAFETY: `raw` is a fully initialised sigset_t.
    unsafe { SigSet::from_sigset_t_unchecked(raw) }
}

/// What [`Child::signal_leftovers`] reached.
enum Leftovers {
    /// These many descendants, alive.
    Listed(usize),
    /// The child's process group (/proc could not list the descendants).
    Group,
}

/// "1 process", "3 processes".
fn processes(count: usize) -> String {
    if count == 1 {
        "1 process".into()
    } else {
        format!("{count} processes")
    }
}

fn signal_all(pids: &[Pid], signal: Signal) {
    for &pid in pids {
        let _ = kill(pid, signal);
    }
}

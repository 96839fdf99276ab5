//! systemd's notify protocol (`deputy run --notify`, sd_notify(3)): the child (or a
//! descendant) sends datagrams of `KEY=VALUE` lines to the socket named in `NOTIFY_SOCKET`.
//!
//! | message | what deputy does |
//! |---|---|
//! | `READY=1` | readiness on (it is off until then); starts the watchdog |
//! | `RELOADING=1` | readiness off until the next `READY=1` |
//! | `STOPPING=1` | readiness off, said once |
//! | `STATUS=text` | shown by `deputy status` and `/health/status` |
//! | `WATCHDOG=1` | feeds the watchdog (`--watchdog`, given to the child as `WATCHDOG_USEC`) |
//! | `WATCHDOG=trigger` | liveness off at once |
//! | `WATCHDOG_USEC=n` | a new watchdog timeout, from now |
//! | `EXTEND_TIMEOUT_USEC=n` | `--stop-timeout` extended to n µs from now, within `--grace` |
//!
//! Other messages (`MAINPID=`, `ERRNO=`, `FDSTORE=1`: deputy keeps no descriptors) are
//! ignored. Each datagram's sender is checked with SO_PASSCRED: only the child and its
//! descendants are heard (systemd's `NotifyAccess=all`, within the child's tree).

use std::ffi::OsString;
use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_io::Async;
use deputy_core::Shutdown;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, UnixAddr, UnixCredentials, recvmsg, setsockopt, sockopt,
};

use super::child::Child;
use super::{say, say_warn};
use crate::procs;
use crate::timeout::until;

/// Room for one datagram: systemd takes messages of up to a pipe buffer; longer ones (a
/// STATUS= essay) are cut at the last whole line.
const MAX_MESSAGE: usize = 8 * 1024;

/// The notify socket, bound before the child starts (its path goes into the child's
/// environment); removed when dropped.
#[derive(Debug)]
pub(super) struct NotifySocket {
    socket: Async<UnixDatagram>,
    path: PathBuf,
    /// `--watchdog`: given to the child as `WATCHDOG_USEC`.
    watchdog: Option<Duration>,
}

impl NotifySocket {
    /// Binds `deputy.<pid>.notify` in `dir` (a stale one of the same name is replaced).
    pub(super) fn bind(dir: &Path, watchdog: Option<Duration>) -> io::Result<NotifySocket> {
        let path = dir.join(format!("deputy.{}.notify", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path)?;
        setsockopt(&socket, sockopt::PassCred, &true)?;
        Ok(NotifySocket {
            socket: Async::new(socket)?,
            path,
            watchdog,
        })
    }

    /// What the child gets in its environment: `NOTIFY_SOCKET`, and `WATCHDOG_USEC` with
    /// `--watchdog`.
    pub(super) fn env(&self) -> Vec<(OsString, OsString)> {
        let mut env = vec![("NOTIFY_SOCKET".into(), self.path.clone().into_os_string())];
        if let Some(watchdog) = self.watchdog {
            env.push((
                "WATCHDOG_USEC".into(),
                watchdog.as_micros().to_string().into(),
            ));
        }
        env
    }

    /// Reads messages and acts on them until the socket fails (said, then returns).
    pub(super) async fn serve(&self, shutdown: &Shutdown, child: &Child, grace: Duration) {
        let mut heard = Heard::new(self.watchdog, grace);
        let mut buffer = vec![0; MAX_MESSAGE];
        loop {
            let message = match heard.watchdog_deadline() {
                Some(deadline) => until(deadline, self.receive(&mut buffer)).await,
                None => Some(self.receive(&mut buffer).await),
            };
            match message {
                None => heard.starved(shutdown, child),
                Some(Ok(Some((sender, length)))) => {
                    if heard.accepts(sender, child) {
                        for line in String::from_utf8_lossy(&buffer[..length]).lines() {
                            heard.handle(line, shutdown, child);
                        }
                    }
                }
                Some(Ok(None)) => {}
                Some(Err(error)) => {
                    say_warn!("cannot read the notify socket any more: {error}");
                    return;
                }
            }
        }
    }

    /// One datagram: its sender's pid and its length; `None` if it came without credentials
    /// (it cannot be checked, so it is dropped). Descriptors sent with it are closed.
    async fn receive(&self, buffer: &mut [u8]) -> io::Result<Option<(u32, usize)>> {
        self.socket
            .read_with(|socket| {
                let mut space = nix::cmsg_space!(UnixCredentials, [RawFd; 64]);
                let mut iov = [IoSliceMut::new(buffer)];
                let message = recvmsg::<UnixAddr>(
                    socket.as_raw_fd(),
                    &mut iov,
                    Some(&mut space),
                    MsgFlags::MSG_CMSG_CLOEXEC,
                )?;
                let mut sender = None;
                for control in message.cmsgs().into_iter().flatten() {
                    match control {
                        ControlMessageOwned::ScmCredentials(credentials) => {
                            sender = u32::try_from(credentials.pid()).ok();
                        }
                        ControlMessageOwned::ScmRights(fds) => close_all(&fds),
                        _ => {}
                    }
                }
                Ok(sender.map(|pid| (pid, message.bytes)))
            })
            .await
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[allow(unsafe_code)]
fn close_all(fds: &[RawFd]) {
    for &fd in fds {
        // SAFETY: the kernel just installed `fd` in this process for this message; nothing
        // else knows it, so this is its only owner.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}

/// What the child said so far.
#[derive(Debug)]
struct Heard {
    ready: bool,
    stopping: bool,
    /// The watchdog timeout, and when it was last fed (`None`: not started yet).
    watchdog: Option<Duration>,
    fed: Option<Instant>,
    /// Liveness is off: the watchdog ran out or was triggered.
    starved: bool,
    /// Whether an extension of the stop was said already.
    extension_said: bool,
    /// Whether a message from outside the child's tree was said already.
    stranger_said: bool,
    grace: Duration,
}

impl Heard {
    fn new(watchdog: Option<Duration>, grace: Duration) -> Heard {
        Heard {
            ready: false,
            stopping: false,
            watchdog,
            fed: None,
            starved: false,
            extension_said: false,
            stranger_said: false,
            grace,
        }
    }

    /// When the watchdog runs out, if it is running.
    fn watchdog_deadline(&self) -> Option<Instant> {
        match (self.watchdog, self.fed, self.starved) {
            (Some(timeout), Some(fed), false) => Some(fed + timeout),
            _ => None,
        }
    }

    /// Whether `sender` is the child or one of its descendants (when /proc can tell).
    fn accepts(&mut self, sender: u32, child: &Child) -> bool {
        let ours =
            sender == child.pid() as u32 || procs::is_descendant(sender) || !procs::proc_is_ours();
        if !ours && !self.stranger_said {
            say_warn!("ignoring notify messages from process {sender}, which deputy did not start");
            self.stranger_said = true;
        }
        ours
    }

    fn handle(&mut self, line: &str, shutdown: &Shutdown, child: &Child) {
        let Some((key, value)) = line.split_once('=') else {
            return;
        };
        let pid = child.pid();
        match (key, value) {
            ("READY", "1") => {
                if !self.ready && !shutdown.is_triggered() {
                    shutdown.ready();
                    say!("ready: process {pid} sent READY=1");
                }
                self.ready = true;
                self.fed.get_or_insert_with(Instant::now);
            }
            ("RELOADING", "1") if self.ready => {
                shutdown.not_ready();
                self.ready = false;
                say!("not ready: process {pid} is reloading (RELOADING=1)");
            }
            ("STOPPING", "1") if !self.stopping => {
                shutdown.not_ready();
                self.stopping = true;
                say!("process {pid} is stopping (STOPPING=1): readiness off");
            }
            ("STATUS", text) => shutdown.set_message(text),
            ("WATCHDOG", "1") => self.feed(shutdown, pid),
            ("WATCHDOG", "trigger") => {
                shutdown.not_live();
                self.starved = true;
                say_warn!("process {pid} sent WATCHDOG=trigger: liveness off");
            }
            ("WATCHDOG_USEC", micros) => {
                if let Ok(micros) = micros.parse::<u64>() {
                    self.watchdog = (micros > 0).then(|| Duration::from_micros(micros));
                    self.feed(shutdown, pid);
                }
            }
            ("EXTEND_TIMEOUT_USEC", micros) => {
                if let Ok(micros) = micros.parse::<u64>() {
                    self.extend(Duration::from_micros(micros), shutdown, child);
                }
            }
            _ => {}
        }
    }

    fn feed(&mut self, shutdown: &Shutdown, pid: i32) {
        self.fed = Some(Instant::now());
        if self.starved {
            self.starved = false;
            shutdown.live();
            say!("liveness on: process {pid} feeds its watchdog again");
        }
    }

    fn starved(&mut self, shutdown: &Shutdown, child: &Child) {
        self.starved = true;
        shutdown.not_live();
        say_warn!(
            "process {} sent no WATCHDOG=1 for {}: liveness off",
            child.pid(),
            humantime::format_duration(self.watchdog.unwrap_or_default())
        );
    }

    /// The child asks for `more` time to stop, from now: granted up to the end of the grace
    /// period, which nothing extends.
    fn extend(&mut self, more: Duration, shutdown: &Shutdown, child: &Child) {
        super::stop::extend_stop(child, Instant::now() + more);
        if self.extension_said {
            return;
        }
        self.extension_said = true;
        let left = self.grace.saturating_sub(shutdown.status().elapsed);
        let more_text = humantime::format_duration(more);
        if shutdown.is_triggered() && more > left {
            say_warn!(
                "process {} asked for {more_text} more to stop (EXTEND_TIMEOUT_USEC), past the \
                 grace period: it gets {:.1}s",
                child.pid(),
                left.as_secs_f64()
            );
        } else {
            say!(
                "process {} asked for {more_text} more to stop (EXTEND_TIMEOUT_USEC)",
                child.pid()
            );
        }
    }
}
